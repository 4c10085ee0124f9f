"""Resumable rollouts on disk: a run that is killed restarts from its last checkpoint, and a
finished run is never redone. Used by `mfray simulate` and by the Ray sweep's actors.

Files for one (event, method, seed) under the output folder:
  <name>.parquet          the finished trajectory (written atomically, last)
  <name>.ckpt.json        rollout state after the last checkpointed step
  <name>.ckpt.parquet     the records up to that step
The checkpoint pair is written records first, state second (each atomically), and the state
names how many records it covers, so a crash between the two writes cannot pair a state with
the wrong records.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

from mfray.llm.base import LLM
from mfray.sim.config import RolloutConfig
from mfray.sim.driver import drive
from mfray.sim.rollout import EventRollout, RolloutStats
from mfray.sim.trajectory import read_trajectory, trajectory_path, write_trajectory
from mfray.types import Event, StepRecord


def _paths(final: Path) -> tuple[Path, Path]:
    stem = final.with_suffix("")
    return stem.with_suffix(".ckpt.json"), stem.with_suffix(".ckpt.parquet")


def load_checkpoint(event: Event, cfg: RolloutConfig, seed: int, final: Path) -> tuple[EventRollout, list[StepRecord]]:
    """A rollout and its records so far: from the checkpoint when there is a usable one, else fresh."""
    state_path, records_path = _paths(final)
    if state_path.exists() and records_path.exists():
        state = json.loads(state_path.read_text(encoding="utf-8"))
        records = read_trajectory(records_path)
        if len(records) >= state["n_records"]:
            return EventRollout.from_state(event, cfg, seed, state["rollout"]), records[: state["n_records"]]
    return EventRollout(event, cfg, seed), []


def save_checkpoint(rollout: EventRollout, records: list[StepRecord], final: Path) -> None:
    state_path, records_path = _paths(final)
    write_trajectory(records, records_path)
    tmp = state_path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"n_records": len(records), "rollout": rollout.state_dict()}), encoding="utf-8")
    tmp.replace(state_path)


async def run_resumable(
    event: Event, llm: LLM, cfg: RolloutConfig, seed: int, out_dir: str | Path, every: int = 4, on_step=None
) -> tuple[Path, RolloutStats | None]:
    """Run (or finish) one rollout, checkpointing every `every` steps; returns the trajectory's
    path and the stats (None when it was already complete). Idempotent."""
    final = trajectory_path(out_dir, event.event_id, cfg.method, seed)
    if final.exists():
        return final, None
    rollout, records = load_checkpoint(event, cfg, seed, final)
    steps = 0

    def step_done(finished: list[StepRecord]) -> None:
        nonlocal steps
        records.extend(finished)
        steps += 1
        if steps % every == 0 and rollout.at_step_boundary and not rollout.done:
            save_checkpoint(rollout, records, final)
        if on_step is not None:
            on_step(finished)

    await drive(rollout, llm, step_done)
    write_trajectory(records, final)
    for path in _paths(final):
        path.unlink(missing_ok=True)
    return final, rollout.stats


@dataclass
class EventResult:
    """The outcome of one event's rollout: where it went and its stats (None when it was
    already complete), or the error that stopped it."""

    event_id: str
    path: Path | None = None
    stats: RolloutStats | None = None
    error: str | None = None


async def run_events(
    events: list[Event], llm: LLM, cfg: RolloutConfig, seed: int, out_dir: str | Path,
    concurrency: int = 8, every: int = 4, on_step=None,
) -> list[EventResult]:
    """Simulate many events resumably, up to `concurrency` in flight, so a batching backend
    sees requests of several events at once. One event's error is recorded, never fatal."""
    gate = asyncio.Semaphore(concurrency)

    async def one(event: Event) -> EventResult:
        async with gate:
            try:
                path, stats = await run_resumable(event, llm, cfg, seed, out_dir, every, on_step)
            except Exception as err:  # noqa: BLE001 - reported per event, the sweep goes on
                return EventResult(event.event_id, error=f"{type(err).__name__}: {err}")
            return EventResult(event.event_id, path, stats)

    return list(await asyncio.gather(*(one(e) for e in events)))
