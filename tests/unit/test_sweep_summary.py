"""A sweep's summary survives a crashed driver and merges reruns; a grid with one event id in
two files is refused before anything runs (no Ray needed for either)."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from mfray.ray.summary import CSV_NAME, LOG_NAME, SummaryStore, merge_rows
from mfray.ray.sweep import SUMMARY_COLUMNS, SweepConfig, check_grid


def row(event, status, seed=0, **kw):
    return {"file": f"{event}.json", "event_id": event, "method": "mf", "seed": seed, "status": status, **kw}


def test_merge_keeps_the_latest_attempt_but_never_lets_a_skip_hide_the_run_that_made_it():
    rows = [row("A", "error", error="boom"), row("B", "done", actions=16), row("A", "done", actions=16),
            row("B", "skipped"), row("C", "skipped"), row("A", "done", seed=1)]
    merged = merge_rows(rows)
    assert [(r["event_id"], r["seed"], r["status"]) for r in merged] == [
        ("A", 0, "done"), ("B", 0, "done"), ("C", 0, "skipped"), ("A", 1, "done")]
    assert merged[1]["actions"] == 16


def test_rows_are_on_disk_as_soon_as_added_and_a_rerun_merges_with_them(tmp_path):
    first = SummaryStore(tmp_path, SUMMARY_COLUMNS)
    first.add([row("A", "done", actions=16, seconds=float("nan")), row("B", "error", error="x")])
    # The driver "crashes" here: no CSV was written, yet nothing is lost.
    again = SummaryStore(tmp_path, SUMMARY_COLUMNS)
    assert [(r["event_id"], r["status"]) for r in again.rows] == [("A", "done"), ("B", "error")]
    assert again.rows[0]["seconds"] is None and again.rows[0]["finished_at"]
    again.add([row("A", "skipped"), row("B", "done", actions=16)])
    frame = pd.read_csv(again.write_csv())
    assert list(frame.columns) == [*SUMMARY_COLUMNS, "finished_at"]
    assert frame[["event_id", "status", "actions"]].values.tolist() == [["A", "done", 16], ["B", "done", 16]]
    assert len((tmp_path / LOG_NAME).read_text().splitlines()) == 4


def test_a_torn_log_line_is_skipped_and_counted_and_an_old_csv_is_kept(tmp_path):
    (tmp_path / LOG_NAME).write_text(json.dumps(row("A", "done")) + "\n" + '{"file": "B.js', encoding="utf-8")
    store = SummaryStore(tmp_path, SUMMARY_COLUMNS)
    assert store.torn_lines == 1 and [r["event_id"] for r in store.rows] == ["A"]
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    pd.DataFrame([row("Z", "done", actions=8)], columns=list(SUMMARY_COLUMNS)).to_csv(legacy / CSV_NAME, index=False)
    assert [(r["event_id"], r["actions"]) for r in SummaryStore(legacy, SUMMARY_COLUMNS).rows] == [("Z", 8)]


def test_grid_with_one_event_id_in_two_files_is_refused_naming_both(data_dir, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for sub in ("a", "b"):
        shutil.copy(data_dir / "twitter_rumdect/E102.json", tmp_path / sub / "E102.json")
    files = [str(tmp_path / "a/E102.json"), str(tmp_path / "b/E102.json")]
    cfg = SweepConfig(events=files, out=str(tmp_path / "out"), llm="local")
    with pytest.raises(ValueError, match=r"'E102' is in both .*a/E102\.json and .*b/E102\.json"):
        check_grid(cfg, files)
    check_grid(cfg, files[:1])  # one copy: fine
