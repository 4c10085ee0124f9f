"""Resumable rollouts: a run that is killed restarts from its last checkpoint, and a finished run
is never redone. Used by `mfray simulate` and by the Ray sweep's actors.

The output folder's layout is mfray.sim.store's: a finished run waits in the work area
(`<out>/in_progress/<run>.parquet`) until `publish` moves it into the dataset. While a run is in
progress the work area holds
  <run>.ckpt.json        rollout state after the last checkpointed step
  <run>.ckpt.parts/      the records up to that step, one Parquet part per checkpoint
  <run>.lock             locked (flock) by the one process working on the run
A checkpoint appends the records of the steps since the last one as a new part, then writes the
state (each atomically); the state names how many records it covers, so a crash between the two
writes cannot pair a state with the wrong records (the extra part is deleted on resume). Records
go to disk as steps finish and are never held whole: memory stays flat however long the run,
and the finished file is the parts joined row group by row group. Every file records the run's
identity (mfray.sim.identity): a finished run is skipped only when it was made under the same
identity and event content; otherwise the run is refused (IdentityMismatch) unless `overwrite`
asks for it to be redone.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, replace
from pathlib import Path

from mfray.files import atomic_write, remove_lock, run_lock
from mfray.llm.base import LLM
from mfray.sim.config import RolloutConfig
from mfray.sim.driver import advance
from mfray.sim.identity import RunIdentity, differing_parts, event_digest, same_run
from mfray.sim.rollout import EventRollout, RolloutStats
from mfray.sim.store import DATASET_DIR, RunFiles, publish_and_locate, published_runs, work_dir, work_runs
from mfray.sim.trajectory import (
    CKPT_RECORDS_SUFFIX, CKPT_STATE_SUFFIX, FINAL_SUFFIX, LOCK_SUFFIX, OLD_CKPT_RECORDS_SUFFIX, append_part, join_parts,
    part_files, remove_parts, run_meta,
)
from mfray.types import Event, StepRecord


class IdentityMismatch(RuntimeError):
    """Output for this run exists but was made under another identity or event content."""


def run_metadata(identity: RunIdentity, event: Event, method: str, seed: int, complete: bool) -> dict:
    """What a run's files record about it (Parquet metadata, checkpoint state)."""
    return {"identity": identity.digest, "parts": identity.parts, "event_id": event.event_id,
            "event_digest": event_digest(event), "method": method, "seed": seed, "complete": complete}


def check_identity(found: dict | None, want: dict, path: Path) -> None:
    """Raise IdentityMismatch unless `found` (a file's run metadata) was made like `want`."""
    if same_run(found, want):
        return
    if found is None:
        what = "records no identity (written before mfray recorded one)"
    elif found.get("identity") != want["identity"]:
        diff = differing_parts(found.get("parts") or {}, want["parts"])
        what = f"was made under another config (differs in: {', '.join(diff) or 'identity digest'})"
    else:
        what = "was made from another version of the event's data"
    raise IdentityMismatch(f"{path.name} {what}; refusing to mix runs in {path.parent}: "
                           "write to a new folder (--out) or pass --overwrite (--set overwrite=true) to redo it")


# How old a view of the dataset a run's start may use (mfray.sim.store.published_runs).
VIEW_MAX_AGE_S = 5.0


def finished_run(out_dir: str | Path, files: RunFiles, meta: dict) -> Path | None:
    """Where the run is already finished like `meta` (identity, event content): its part file in
    the dataset or its finished file in the work area; None when it is not."""
    if files.final.exists() and same_run(run_meta(files.final), meta):
        return files.final
    found = published_runs(out_dir, VIEW_MAX_AGE_S).get(files.final.name[: -len(FINAL_SUFFIX)])
    return found.part if found is not None and same_run(found.meta, meta) else None


def _check_done_differently(out_dir: str | Path, files: RunFiles, meta: dict) -> None:
    """Raise IdentityMismatch when the run is finished, published or not, under another identity."""
    if files.final.exists():
        check_identity(run_meta(files.final), meta, files.final)
    found = published_runs(out_dir, VIEW_MAX_AGE_S).get(files.final.name[: -len(FINAL_SUFFIX)])
    if found is not None:
        check_identity(found.meta, meta, found.part)


def load_checkpoint(event: Event, cfg: RolloutConfig, seed: int, files: RunFiles, want: dict,
                    overwrite: bool) -> tuple[EventRollout, int]:
    """A rollout and how many records its parts already hold: from the checkpoint when there is
    a usable one, else fresh (any parts left without a state are cleared). A checkpoint of
    another identity is refused, or discarded under `overwrite`."""
    if files.state.exists():
        state = json.loads(files.state.read_text(encoding="utf-8"))
        try:
            check_identity(state.get("run"), want, files.state)
        except IdentityMismatch:
            if not overwrite:
                raise
        else:
            n_records = state["n_records"]
            try:
                part_files(files.records, n_records)  # drops parts written after the state
            except ValueError:  # parts lost or from an older layout: start the run again
                pass
            else:
                return EventRollout.from_state(event, cfg, seed, state["rollout"]), n_records
    _drop_checkpoint(files)
    return EventRollout(event, cfg, seed), 0


def checkpointed_records(files: RunFiles, want: dict) -> int:
    """How many records a usable checkpoint of the run holds (0 without one, or with one made
    under another identity): where a resumed run's progress starts."""
    try:
        state = json.loads(files.state.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return int(state.get("n_records", 0)) if same_run(state.get("run"), want) else 0


def save_checkpoint(rollout: EventRollout, first: int, records: list[StepRecord], files: RunFiles, meta: dict) -> None:
    """Append `records` (the run's records `first`.. onward) as a part, then the state that
    counts them."""
    if records:
        append_part(files.records, first, records)
    state = json.dumps({"n_records": first + len(records), "rollout": rollout.state_dict(), "run": meta})
    atomic_write(files.state, lambda tmp: tmp.write_text(state, encoding="utf-8"))


async def run_resumable(
    event: Event, llm: LLM, cfg: RolloutConfig, seed: int, out_dir: str | Path, identity: RunIdentity,
    every: int = 4, on_step=None, overwrite: bool = False,
) -> tuple[Path, RolloutStats | None]:
    """Run (or finish) one rollout under its run lock, checkpointing every `every` steps; returns
    where the finished run lies (its file in the work area until `publish` moves it, or its
    part file once published) and the stats (None when it was already complete). Idempotent.
    Holds only the records since the last checkpoint.

    Raises RunBusy when another process works on the same run, IdentityMismatch when the
    folder holds this run made under another `identity` or event content (unless `overwrite`:
    then the run is redone and its files replaced)."""
    files = RunFiles.of(out_dir, event.event_id, cfg.method, seed)
    meta = run_metadata(identity, event, cfg.method, seed, complete=False)
    with run_lock(files.lock):
        done = finished_run(out_dir, files, meta)
        if done is not None:
            _drop_checkpoint(files)  # a crash after finishing may have left these behind
            if done != files.final:
                remove_lock(files.lock)
            return done, None
        if not overwrite:
            _check_done_differently(out_dir, files, meta)  # raises: made differently
        rollout, saved = load_checkpoint(event, cfg, seed, files, meta, overwrite)
        pending: list[StepRecord] = []  # finished since the last checkpoint
        steps = 0

        def step_done(finished: list[StepRecord]) -> None:
            nonlocal steps, saved, pending
            pending.extend(finished)
            steps += 1
            if steps % every == 0 and rollout.at_step_boundary and not rollout.done:
                save_checkpoint(rollout, saved, pending, files, meta)
                saved, pending = saved + len(pending), []
            if on_step is not None:
                on_step(finished)

        await advance(rollout, llm, None, step_done, keep=False)
        if pending:
            append_part(files.records, saved, pending)
        join_parts(part_files(files.records, saved + len(pending)), files.final, {**meta, "complete": True})
        _drop_checkpoint(files)
    return files.final, rollout.stats


def refuse_mixing(out_dir: str | Path, identities: dict[str, RunIdentity]) -> None:
    """Raise IdentityMismatch, naming up to five files and what differs, when `out_dir` holds a
    finished run or a checkpoint of a method in `identities` made under another identity (or
    with none recorded). Checked before a sweep or `mfray simulate` starts; each run checks
    again, with the event's content, when it starts (run_resumable)."""
    folder = Path(out_dir)
    if not folder.is_dir():
        return
    refuse_legacy(folder)
    work = work_dir(folder)
    found = [(Path(run.name), run.meta) for run in published_runs(folder).values()]
    found += [(p, run_meta(p)) for p in work_runs(folder)[0]]
    found += [(p, _state_meta(p)) for p in sorted(work.glob(f"*{CKPT_STATE_SUFFIX}")) if not p.name.startswith(".")]
    lines = []
    for path, meta in sorted(found, key=lambda f: f[0].name):
        want = identities.get(meta["method"] if meta else _method_of(path.name))
        if want is None or (meta is not None and meta.get("identity") == want.digest):
            continue
        diff = "no identity recorded" if meta is None else ", ".join(differing_parts(meta.get("parts") or {}, want.parts))
        lines.append(f"  {path.name} ({diff or 'identity digest'})")
    if lines:
        more = f"\n  ... and {len(lines) - 5} more" if len(lines) > 5 else ""
        raise IdentityMismatch(
            f"{folder} holds {len(lines)} run files made under another config than this one; refusing to mix them:\n"
            + "\n".join(lines[:5]) + more
            + "\nwrite to a new folder (--out / --set out=...), or pass --overwrite (--set overwrite=true) to redo those runs"
        )


def refuse_legacy(folder: str | Path) -> None:
    """Raise IdentityMismatch when `folder` holds trajectories in the one-file-per-run layout of
    mfray before the dataset (`<event>__<method>__s<seed>.parquet` beside sweep logs)."""
    old = sorted(p.name for p in Path(folder).glob("*__*__s*.parquet") if not p.name.startswith("."))
    if old:
        raise IdentityMismatch(
            f"{folder} holds {len(old)} trajectories in the one-file-per-run layout of earlier mfray versions "
            f"(e.g. {old[0]}); runs now go to {DATASET_DIR}/ as a Parquet dataset: write to a new folder, "
            "or rerun the simulation into one")


def _state_meta(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("run")
    except (OSError, ValueError):
        return None


def _method_of(name: str) -> str | None:
    """The method part of a run file's name (`<event>__<method>__s<seed><suffix>`)."""
    for suffix in (CKPT_STATE_SUFFIX, CKPT_RECORDS_SUFFIX, OLD_CKPT_RECORDS_SUFFIX, LOCK_SUFFIX, ".parquet"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    parts = name.rsplit("__", 2)
    return parts[1] if len(parts) == 3 else None


def _drop_checkpoint(files: RunFiles) -> None:
    """Once the run's finished file exists, its checkpoint is no longer needed. The lock stays
    until `publish` has moved the run into the dataset."""
    files.state.unlink(missing_ok=True)
    remove_parts(files.records)
    files.old_records.unlink(missing_ok=True)


@dataclass
class EventResult:
    """The outcome of one event's rollout: where it went and its stats (None when it was
    already complete), or the error that stopped it."""

    event_id: str
    path: Path | None = None
    stats: RolloutStats | None = None
    error: str | None = None


async def run_events(
    events: list[Event], llm: LLM, cfg: RolloutConfig, seed: int, out_dir: str | Path, identity: RunIdentity,
    concurrency: int = 8, every: int = 4, on_step=None, overwrite: bool = False,
) -> list[EventResult]:
    """Simulate many events resumably, up to `concurrency` in flight, so a batching backend
    sees requests of several events at once, then publish the finished runs into the dataset
    (mfray.sim.store; each result's path is then its part file). One event's error is recorded,
    never fatal."""
    gate = asyncio.Semaphore(concurrency)

    async def one(event: Event) -> EventResult:
        async with gate:
            try:
                path, stats = await run_resumable(event, llm, cfg, seed, out_dir, identity, every, on_step, overwrite)
            except Exception as err:  # noqa: BLE001 - reported per event, the sweep goes on
                return EventResult(event.event_id, error=f"{type(err).__name__}: {err}")
            return EventResult(event.event_id, path, stats)

    results = list(await asyncio.gather(*(one(e) for e in events)))
    paths = await asyncio.to_thread(publish_and_locate, out_dir, [r.path for r in results])
    return [replace(r, path=p) for r, p in zip(results, paths)]
