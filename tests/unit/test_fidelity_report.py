"""benchmarks/fidelity_report.py's own parts: the mean-field lines read from realism.csv and the
section replaced between its markers (the evaluation and findings it calls are tested elsewhere)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("fidelity_report", REPO / "benchmarks/fidelity_report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)


def test_mean_field_lines_from_realism_csv(tmp_path):
    columns = ["method", "mean_fields", "mf_updates", "mf_unchanged_share", "mf_meta_share", "mf_meta_example"]
    with (tmp_path / "realism.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerow({"method": "mf", "mean_fields": 4, "mf_updates": 10, "mf_unchanged_share": 0.7,
                         "mf_meta_share": 0.25, "mf_meta_example": "phrase: This summary"})
        writer.writerow({"method": "state", "mean_fields": 0, "mf_updates": 0, "mf_unchanged_share": "nan",
                         "mf_meta_share": "nan", "mf_meta_example": ""})
    # state has no mean field: one line, for mf; 0.7 -> 70.0%, 0.25 -> 25.0%.
    assert report.mean_field_lines(tmp_path) == [
        "- mf: 4 distinct mean-field texts; 70.0% of 10 updates returned the previous text verbatim; 25.0% of the "
        "texts copy the prompt's worked examples or meta-text (e.g. phrase: This summary)."]
    assert report.mean_field_lines(tmp_path / "missing")[0].startswith("(no realism.csv in ")


def test_replace_section_between_markers(tmp_path):
    bench = tmp_path / "BENCHMARKS.md"
    bench.write_text("# Benchmarks\n\nbefore\n", encoding="utf-8")
    report.replace_section(bench, f"{report.BEGIN}\nfirst\n{report.END}\n")
    report.replace_section(bench, f"{report.BEGIN}\nsecond\n{report.END}\n")
    text = bench.read_text(encoding="utf-8")
    # Appended once, then replaced in place: the old body is gone and the text before it kept.
    assert text == f"# Benchmarks\n\nbefore\n\n{report.BEGIN}\nsecond\n{report.END}\n"
