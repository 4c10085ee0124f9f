"""A sweep's summary on disk, kept as batches finish so a crashed driver loses nothing.

`sweep_log.jsonl` gets every summary row appended (flushed and fsynced) the moment its batch
returns to the driver; `sweep_summary.csv` is the merged view, rewritten atomically at every
progress line and at the end. Both survive reruns: a rerun appends to the log, and the view
merges all attempts, one row per (file, event_id, method, seed).
"""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from mfray.files import atomic_write

LOG_NAME = "sweep_log.jsonl"
CSV_NAME = "sweep_summary.csv"


def merge_rows(rows: list[dict]) -> list[dict]:
    """One row per (file, event_id, method, seed), in first-seen order: the latest attempt,
    except that a "skipped" row (the run was already finished) never replaces an earlier row,
    whose counts and timings describe the attempt that made the trajectory."""
    merged: dict[tuple, dict] = {}
    for row in rows:
        key = (row.get("file"), row.get("event_id") or "", row.get("method"), row.get("seed"))
        if row.get("status") == "skipped" and key in merged:
            continue
        merged[key] = row
    return list(merged.values())


class SummaryStore:
    """Append-only log plus merged CSV of a sweep's summary rows under `out`."""

    def __init__(self, out: str | Path, columns: tuple[str, ...]) -> None:
        self.dir = Path(out)
        self.columns = (*columns, "finished_at")
        self.torn_lines = 0  # unreadable log lines (a crash mid-append), reported by the driver
        self.rows = self._read_log()

    def add(self, rows: list[dict]) -> None:
        """Stamp `rows` with the time and append them to the log, durably, before returning."""
        if not rows:
            return
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        clean = [{**{k: _plain(row.get(k)) for k in self.columns}, "finished_at": now} for row in rows]
        self.dir.mkdir(parents=True, exist_ok=True)
        with open(self.dir / LOG_NAME, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in clean))
            f.flush()
            os.fsync(f.fileno())
        self.rows += clean

    def write_csv(self) -> Path:
        """Rewrite the merged view (atomically) and return its path."""
        frame = pd.DataFrame(merge_rows(self.rows), columns=list(self.columns))
        return atomic_write(self.dir / CSV_NAME, lambda tmp: frame.to_csv(tmp, index=False))

    def _read_log(self) -> list[dict]:
        path = self.dir / LOG_NAME
        if not path.exists():
            legacy = self.dir / CSV_NAME  # a sweep from before the log: its rows are kept
            if legacy.exists():
                return [{k: _plain(v) for k, v in row.items()} for row in pd.read_csv(legacy).to_dict("records")]
            return []
        rows = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                self.torn_lines += 1
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                self.torn_lines += 1
        return rows


def _plain(value):
    """JSON-able scalars: NaN/NA (pandas' missing values) become None, numpy numbers Python ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    return value.item() if hasattr(value, "item") else value
