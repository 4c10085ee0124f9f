"""A simulation output folder: finished runs in one partitioned Parquet dataset, runs in progress
beside it. Used by `mfray simulate`, the Ray sweep's actors and evaluation.

    <out>/trajectories/method=<method>/part-<token>.parquet   the dataset (complete runs only)
    <out>/in_progress/<run>.lock | .ckpt.json | .ckpt.parts/  a run being worked on or killed
    <out>/in_progress/<run>.parquet                          a finished run not yet published

One file per run stops scaling at thousands of runs (file counts, small reads), so finished runs
are published together: `publish` moves every finished run of the work area into one new part
file per method, written atomically, and only then deletes the run files; a crash in between
leaves runs that the next `publish` finds already in the dataset and just clears. The dataset
never holds a run twice or a run in part: the folder's publish lock serialises publishers, and a
run is published only while its run lock is held.

Each part file holds whole runs, one after another, and says which in its footer (`mfray.runs`:
per run its name, row count and run metadata: identity, event digest, method, seed). The rows
carry their own method column as well, so pyarrow (`pyarrow.dataset.dataset(root,
partitioning="hive")`) and Ray Data (`ray.data.read_parquet(root)`) read the folder as one table.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from mfray.files import RunBusy, atomic_write, remove_lock, run_lock, safe_name
from mfray.sim.identity import same_run
from mfray.sim.trajectory import (
    CKPT_RECORDS_SUFFIX, CKPT_STATE_SUFFIX, FINAL_SUFFIX, LOCK_SUFFIX, OLD_CKPT_RECORDS_SUFFIX, SCHEMA, batches,
    run_meta, run_name, table_to_records,
)
from mfray.types import StepRecord

DATASET_DIR = "trajectories"
WORK_DIR = "in_progress"
PARTS_KEY = "mfray.runs"
_PUBLISH_LOCK = ".publish.lock"
ROW_GROUP = 4096  # rows a part file's row groups hold (the last one of a part fewer)


def dataset_root(out_dir: str | Path) -> Path:
    """The dataset of finished runs in an output folder."""
    return Path(out_dir) / DATASET_DIR


def work_dir(out_dir: str | Path) -> Path:
    """Where runs in progress (and finished runs not yet published) live."""
    return Path(out_dir) / WORK_DIR


@dataclass(frozen=True)
class RunFiles:
    """The work-area paths of one (event, method, seed) run."""

    final: Path  # the finished run, until `publish` moves it into the dataset
    state: Path
    records: Path
    lock: Path

    @property
    def old_records(self) -> Path:
        """Where earlier versions kept a checkpoint's records in one file (deleted on sight)."""
        return Path(f"{str(self.records)[: -len(CKPT_RECORDS_SUFFIX)]}{OLD_CKPT_RECORDS_SUFFIX}")

    @classmethod
    def of(cls, out_dir: str | Path, event_id: str, method: str, seed: int) -> "RunFiles":
        stem = work_dir(out_dir) / run_name(event_id, method, seed)
        # Suffixes appended to the stem, never Path.with_suffix: an encoded id may hold dots.
        return cls(Path(f"{stem}{FINAL_SUFFIX}"), Path(f"{stem}{CKPT_STATE_SUFFIX}"), Path(f"{stem}{CKPT_RECORDS_SUFFIX}"),
                   Path(f"{stem}{LOCK_SUFFIX}"))


@dataclass(frozen=True)
class PublishedRun:
    """One complete run in the dataset: rows `offset`..`offset + rows - 1` of `part`."""

    name: str
    meta: dict
    part: Path
    offset: int
    rows: int

    @property
    def method(self) -> str:
        return self.meta["method"]


# One copy of each identity's parts tree (the full config, a few KiB) for all the runs made
# under it: a view of a dataset of many runs would otherwise hold one per run.
_PARTS: dict[str, dict] = {}


def part_runs(part: Path) -> list[PublishedRun]:
    """The runs a part file holds, from its footer."""
    entries = json.loads((pq.read_schema(part).metadata or {})[PARTS_KEY.encode()])
    out, offset = [], 0
    for entry in entries:
        meta = {k: v for k, v in entry.items() if k not in ("run", "rows")}
        if isinstance(meta.get("parts"), dict) and isinstance(meta.get("identity"), str):
            meta["parts"] = _PARTS.setdefault(meta["identity"], meta["parts"])
        out.append(PublishedRun(entry["run"], meta, part, offset, entry["rows"]))
        offset += entry["rows"]
    return out


# Footers already read, by part path and (size, mtime): parts are immutable once published,
# except when `publish` rewrites one to drop a run redone under --overwrite (a new stamp).
_FOOTERS: dict[Path, tuple[tuple[int, int], list[PublishedRun]]] = {}


# The last view of each dataset in this process: root -> (when, runs). `publish` drops it.
_VIEWS: dict[Path, tuple[float, dict[str, "PublishedRun"]]] = {}


def published_runs(out_dir: str | Path, max_age_s: float = 0.0) -> dict[str, PublishedRun]:
    """Every run in the dataset by run name (mfray.sim.trajectory.run_name). Lists and stats the
    part files, reading only the footers of parts not seen before; with `max_age_s`, this
    process's last view is reused while younger than that (a sweep asks once per run, and the
    listing grows with the dataset). A stale view only misses runs other processes published
    meanwhile: such a run is redone, and `publish` keeps its first copy."""
    root = dataset_root(out_dir)
    seen = _VIEWS.get(root)
    if max_age_s > 0 and seen is not None and time.monotonic() - seen[0] <= max_age_s:
        return seen[1]
    found: dict[str, PublishedRun] = {}
    for part in _part_files(root):
        try:
            stat = part.stat()
        except FileNotFoundError:  # replaced by a publisher since the listing
            continue
        stamp = (stat.st_size, stat.st_mtime_ns)
        cached = _FOOTERS.get(part)
        if cached is None or cached[0] != stamp:
            cached = (stamp, part_runs(part))
            _FOOTERS[part] = cached
        for run in cached[1]:
            found[run.name] = run
    _VIEWS[root] = (time.monotonic(), found)
    return found


def _part_files(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for d in root.iterdir() if d.is_dir() and d.name.startswith("method=")
                  for p in d.glob("part-*.parquet"))


def work_runs(out_dir: str | Path) -> tuple[list[Path], list[str]]:
    """(finished but unpublished run files, names of runs in progress: a checkpoint or a lock but
    no finished file) in the work area. Checkpoint records are never finished runs."""
    folder = work_dir(out_dir)
    if not folder.is_dir():
        return [], []
    finished = sorted(p for p in folder.glob(f"*{FINAL_SUFFIX}")
                      if not p.name.endswith(OLD_CKPT_RECORDS_SUFFIX) and not p.name.startswith("."))
    names = {p.name[: -len(FINAL_SUFFIX)] for p in finished}
    pending = set()
    for suffix in (CKPT_STATE_SUFFIX, CKPT_RECORDS_SUFFIX, OLD_CKPT_RECORDS_SUFFIX, LOCK_SUFFIX):
        pending |= {p.name[: -len(suffix)] for p in folder.glob(f"*{suffix}") if not p.name.startswith(".")}
    return finished, sorted(pending - names)


def read_runs(runs: Iterable[PublishedRun]) -> Iterator[tuple[PublishedRun, list[StepRecord]]]:
    """Each run with its records, reading every part file once (runs grouped by part, in the
    order given within a part)."""
    by_part: dict[Path, list[PublishedRun]] = {}
    for run in runs:
        by_part.setdefault(run.part, []).append(run)
    for part, group in by_part.items():
        table = pq.read_table(part, schema=SCHEMA)
        for run in group:
            yield run, table_to_records(table.slice(run.offset, run.rows))


def publish(out_dir: str | Path) -> dict[str, Path]:
    """Move every finished run of the work area into the dataset: one new part file per method,
    written atomically, then the run files removed. A run already in the dataset under the same
    identity is only cleared from the work area; one there under another identity (redone with
    overwrite) is dropped from its old part. Runs whose lock another process holds are left for
    a later call. Returns {run name: part path} of the runs now in the dataset."""
    work = work_dir(out_dir)
    if not work.is_dir():
        return {}
    landed: dict[str, Path] = {}
    with run_lock(work / _PUBLISH_LOCK, wait=True), ExitStack() as held:
        published = published_runs(out_dir)
        new: dict[str, list[_Source]] = {}  # method -> runs
        clear: list[tuple[Path, Path]] = []  # (finished file, its lock) to remove once published
        for path in work_runs(out_dir)[0]:
            name = path.name[: -len(FINAL_SUFFIX)]
            lock = path.with_name(f"{name}{LOCK_SUFFIX}")
            try:
                held.enter_context(run_lock(lock))
            except RunBusy:
                continue
            if not path.exists():  # published by another process between our listing and our lock
                remove_lock(lock)
                continue
            meta = run_meta(path)
            if meta is None:  # the sim's own writer always records it: a stray file, left alone
                continue
            old = published.get(name)
            if old is not None and same_run(old.meta, meta):
                landed[name] = old.part
            else:
                new.setdefault(meta["method"], []).append(_Source(name, meta, path, 0, pq.ParquetFile(path).metadata.num_rows))
            clear.append((path, lock))
        # A redone run leaves its old part first: a crash before its new part is written leaves
        # it out of the dataset but still in the work area, for the next publish (never twice).
        redone = {run.name for runs in new.values() for run in runs if run.name in published}
        for part in sorted({published[name].part for name in redone}):
            _drop_runs(part, redone)
        for method, runs in sorted(new.items()):
            part = _write_part(_new_part(out_dir, method), runs)
            landed.update({run.name: part for run in runs})
        for path, lock in clear:
            path.unlink(missing_ok=True)
            remove_lock(lock)
        _VIEWS.pop(dataset_root(out_dir), None)
    return landed


def publish_and_locate(out_dir: str | Path, paths: list[Path | None]) -> list[Path | None]:
    """`publish`, then where each of `paths` (a run's finished file or part, or None) lives now:
    its part file once published (by this call or by another process's), else as given."""
    publish(out_dir)
    index = published_runs(out_dir)

    def where(path: Path | None) -> Path | None:
        if path is None or not path.name.endswith(FINAL_SUFFIX):
            return path
        run = index.get(path.name[: -len(FINAL_SUFFIX)])
        return run.part if run is not None else path

    return [where(p) for p in paths]


@dataclass(frozen=True)
class _Source:
    """A run to write into a part: its name, run metadata, and rows offset..offset+rows-1 of `path`."""

    name: str
    meta: dict
    path: Path
    offset: int
    rows: int


def _write_part(path: Path, runs: list[_Source]) -> Path:
    """Write `runs` one after another to `path`, atomically, with the footer that part_runs
    reads; streamed a few thousand rows at a time, so a run of any length fits in memory."""
    entries = [{"run": run.name, "rows": run.rows, **run.meta} for run in runs]
    schema = SCHEMA.with_metadata({PARTS_KEY: json.dumps(entries, sort_keys=True, ensure_ascii=False)})

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema) as writer:
            held: list[pa.Table] = []  # short runs share a row group: thousands of runs, not of groups
            for run in runs:
                for table in batches(run.path, run.offset, run.rows, ROW_GROUP):
                    held.append(table)
                    if sum(t.num_rows for t in held) >= ROW_GROUP:
                        writer.write_table(pa.concat_tables(held))
                        held = []
            if held or not runs:
                writer.write_table(pa.concat_tables(held) if held else SCHEMA.empty_table())

    return atomic_write(path, write)


def _new_part(out_dir: str | Path, method: str) -> Path:
    # Methods are identifiers (mfray.sim.config.Method), kept as they are so the partition value
    # reads back as the method; anything else is encoded like an event id.
    folder = method if method.isidentifier() else safe_name(method)
    return dataset_root(out_dir) / f"method={folder}" / f"part-{os.getpid()}-{secrets.token_hex(6)}.parquet"


def _drop_runs(part: Path, names: set[str]) -> None:
    """Rewrite `part` without the runs in `names` (removed when none is left)."""
    keep = [r for r in part_runs(part) if r.name not in names]
    if not keep:
        part.unlink(missing_ok=True)
        return
    _write_part(part, [_Source(r.name, r.meta, part, r.offset, r.rows) for r in keep])
