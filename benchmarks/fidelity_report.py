"""The fidelity study's report, one command from the sweep's outputs to BENCHMARKS.md "Fidelity".

    .venv/bin/python benchmarks/fidelity_report.py                 # evaluate, then write the section
    .venv/bin/python benchmarks/fidelity_report.py --skip-evaluate # rewrite it from the last evaluation

1. `mfray evaluate` over the study's runs (jobs/configs/simulate_sweep_fidelity.yaml writes them to
   benchmarks/results/fidelity_study/runs): the simulated agents 48..143 of every run, under the
   default annotator, with the discriminator, the noise floor and the annotator's measured agreement
   (summary.md); the full output goes to runs/fidelity_study_eval (232 trajectory plots).
2. The paper's findings, each from a paired bootstrap interval over events (mfray.eval.findings),
   and what the mean fields carry (realism.csv: unchanged updates, copied worked examples).
3. BENCHMARKS.md's section between the fidelity markers is replaced: the study as run (events,
   methods, seeds, runs finished, compute time and tokens from the sweep's log), the findings,
   the forecasting and intervention results (benchmarks/forecast_intervention.py), summary.md's
   tables, the radar charts and the attitude trajectories of three events (copied to
   benchmarks/results/fidelity_study/).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BEGIN, END = "<!-- fidelity:begin (benchmarks/fidelity_report.py writes this section) -->", "<!-- fidelity:end -->"
MODEL = "the default model, SmolLM2-135M-Instruct (CPU)"
FLOATS = ("kl", "wasserstein", "dtw", "macro_f1", "micro_f1")


def evaluate(runs: Path, out: Path, start: int, end: int) -> None:
    subprocess.run([str(REPO / ".venv/bin/mfray"), "evaluate", "--trajectories", str(runs), "--out", str(out),
                    "--eval-start", str(start), "--eval-end", str(end), "--no-nll"], cwd=REPO, check=True)


def metric_rows(path: Path) -> list[dict]:
    """metrics_raw.csv with the metric columns as floats (an empty cell is NaN)."""
    with path.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        for key in FLOATS:
            row[key] = float(row[key]) if row.get(key) not in (None, "") else math.nan
    return rows


def compute_lines(log: Path) -> list[str]:
    """Per method: runs finished, simulated actions, seconds and tokens summed over every attempt
    the sweep logged (sweep_log.jsonl: a resumed run's attempts each count their own part; an
    attempt killed before its batch reported is not in the log)."""
    if not log.is_file():
        return [f"(no sweep log at {log}: compute not recorded)"]
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
    per: dict[str, dict[str, float]] = {}
    for r in rows:
        if r.get("status") == "skipped":
            continue
        cell = per.setdefault(r["method"], {"runs": 0, "actions": 0, "seconds": 0.0, "prompt": 0, "completion": 0})
        cell["runs"] += r.get("status") == "done"
        for key, col in (("actions", "actions"), ("seconds", "seconds"), ("prompt", "prompt_tokens"), ("completion", "completion_tokens")):
            value = r.get(col)
            cell[key] += float(value) if value not in (None, "") and value == value else 0.0
    lines = ["| method | runs finished | actions simulated | run-seconds (summed over runs in flight) | prompt tokens | generated tokens |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {m} | {c['runs']} | {c['actions']:.0f} | {c['seconds']:.0f} | {c['prompt']:.0f} | {c['completion']:.0f} |"
              for m, c in sorted(per.items())]
    return lines


def applications_lines(results: Path, benchmarks: Path) -> list[str]:
    """Forecasting and intervention (benchmarks/forecast_intervention.py's results.json and plots),
    or the command that makes them."""
    path = results / "results.json"
    if not path.is_file():
        return ["Not run yet: `.venv/bin/python benchmarks/forecast_intervention.py`."]
    result = json.loads(path.read_text(encoding="utf-8"))
    rel = os.path.relpath(results, benchmarks.parent)
    lines = [f"From `{result['command'].strip()}`.", ""]
    if "forecast" in result:
        lines += ["| event | method | start agent | agents forecast | attitude KL | belief KL |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['event_id']} | {r['method']} | {r['start']} | {r['agents']} | {r['attitude_kl']:.4f} | {r['belief_kl']:.4f} |"
                  for r in result["forecast"]["table"]]
        lines += ["", f"![forecasts]({rel}/forecast.png)", ""]
    if "intervention" in result:
        lines += ["| method | intervention | doubt share per 16 generated agents | counter share |", "|---|---|---|---|"]
        lines += [f"| {method} | {name} | {' '.join(f'{v:.2f}' for v in arm['doubt'])} | "
                  f"{' '.join(f'{v:.2f}' for v in arm['counter'])} |"
                  for method, arms in result["intervention"].items() for name, arm in arms.items()]
        lines += ["", f"![intervention]({rel}/intervention.png)", ""]
    return lines


def mean_field_lines(eval_dir: Path) -> list[str]:
    """What the methods' mean fields carry, from the evaluation's realism.csv (mfray.eval.realism):
    distinct texts, updates that returned the previous text verbatim, texts copying the prompt's
    worked examples or meta-text. A mean field that never moves is a fixed prompt, whatever the
    metrics then say about "MF-LLM"."""
    path = eval_dir / "realism.csv"
    if not path.is_file():
        return [f"(no realism.csv in {eval_dir}: mean fields not checked)"]
    with path.open(encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("mean_fields") not in (None, "", "0")]
    if not rows:
        return ["No evaluated method has a mean field."]
    from mfray.eval.report import format_share

    def pct(value: str) -> str:  # a CSV cell: a float, "nan" or empty
        return format_share(float(value) if value else math.nan)

    return [f"- {r['method']}: {r['mean_fields']} distinct mean-field texts; {pct(r['mf_unchanged_share'])} of "
            f"{r['mf_updates']} updates returned the previous text verbatim; {pct(r['mf_meta_share'])} of the texts "
            f"copy the prompt's worked examples or meta-text"
            + (f" (e.g. {r['mf_meta_example']})" if r["mf_meta_example"] else "") + "."
            for r in rows]


def section(rows: list[dict], eval_dir: Path, runs: Path, figures: Path, benchmarks: Path) -> str:
    from mfray.eval.findings import findings, findings_markdown

    events = sorted({r["event_id"] for r in rows})
    methods = sorted({r["method"] for r in rows})
    seeds = sorted({r["seed"] for r in rows})
    figures.mkdir(parents=True, exist_ok=True)
    shown = []
    for name in ("radar_kl.png", "radar_macro_f1.png"):
        if (eval_dir / name).is_file():
            shutil.copy(eval_dir / name, figures / name)
            shown.append(name)
    for event in events[:3]:
        plot = eval_dir / "plots" / f"{event}__attitude.png"
        if plot.is_file():
            shutil.copy(plot, figures / plot.name)
            shown.append(plot.name)
    summary = (eval_dir / "summary.md").read_text(encoding="utf-8").replace("\n## ", "\n#### ").replace("\n### ", "\n##### ")
    rel = os.path.relpath(figures, benchmarks.parent)  # image links work from the Markdown file
    parts = [
        BEGIN,
        "## Fidelity: the paper's headline over many unseen events",
        "",
        "Generated by `.venv/bin/python benchmarks/fidelity_report.py` from the runs of "
        "`jobs/configs/simulate_sweep_fidelity.yaml` (do not edit by hand; rerun the command).",
        "",
        f"The sweep's events: 24 Twitter events drawn by `benchmarks/study_events.py` (no hand labels, no adapter "
        f"training, no MF-MDP use) and the five Weibo test events; {MODEL}. Evaluated here (events with complete "
        f"runs): {len(events)} events ({', '.join(events)}), methods {', '.join(methods)}, "
        f"seeds {', '.join(map(str, seeds))}; a comparison uses the events where both of its methods have runs.",
        "",
        "### Compute (from the sweep's log)",
        "",
        *compute_lines(runs / "sweep_log.jsonl"),
        "",
        "### Which of the paper's findings hold here",
        "",
        findings_markdown(findings(rows), MODEL),
        "### What the mean field carries",
        "",
        *mean_field_lines(eval_dir),
        "",
        "### Forecasting and an intervention",
        "",
        *applications_lines(REPO / "benchmarks/results/forecast_intervention", benchmarks),
        "",
        "### Figures",
        "",
        *[f"![{name}]({rel}/{name})" for name in shown],
        "",
        "### The evaluation (summary.md of `mfray evaluate`)",
        "",
        summary,
        END,
    ]
    return "\n".join(parts) + "\n"


def replace_section(benchmarks: Path, text: str) -> None:
    """Put `text` between the markers, or append it (with them) when the file has none yet."""
    body = benchmarks.read_text(encoding="utf-8")
    if BEGIN in body and END in body:
        head, rest = body.split(BEGIN, 1)
        body = head + text.rstrip("\n") + rest.split(END, 1)[1]
    else:
        body = body.rstrip("\n") + "\n\n" + text
    benchmarks.write_text(body, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=Path, default=REPO / "benchmarks/results/fidelity_study/runs")
    ap.add_argument("--eval-out", type=Path, default=REPO / "runs/fidelity_study_eval")
    ap.add_argument("--figures", type=Path, default=REPO / "benchmarks/results/fidelity_study")
    ap.add_argument("--benchmarks", type=Path, default=REPO / "BENCHMARKS.md")
    ap.add_argument("--eval-start", type=int, default=48)
    ap.add_argument("--eval-end", type=int, default=144)
    ap.add_argument("--skip-evaluate", action="store_true", help="reuse the last evaluation under --eval-out")
    args = ap.parse_args()
    if not args.skip_evaluate:
        evaluate(args.runs, args.eval_out, args.eval_start, args.eval_end)
    rows = metric_rows(args.eval_out / "metrics_raw.csv")
    replace_section(args.benchmarks, section(rows, args.eval_out, args.runs, args.figures, args.benchmarks))
    print(f"wrote the Fidelity section of {args.benchmarks} ({len(rows)} metric rows)")


if __name__ == "__main__":
    main()
