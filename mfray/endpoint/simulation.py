"""One simulation of the endpoint: a live session (mfray.sim.session.LiveSession, or a Ray event
actor with the same methods) driven step by step in the background, and the stream of what each
step did: its posts beside the real ones, the mean field, and per dimension the share of each
label among the real and the simulated posts of the step (through the annotator).

Statuses: paused (waiting for resume), running, done (the horizon reached), cancelled, failed,
interrupted (its server stopped without ending it).
Interventions and signals are applied by the session between steps, so they may be sent while it
runs: they land on the next step that starts after them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

from mfray.eval.annotate import Annotation, AnnotationItem, Annotator
from mfray.eval.evaluate import EvalRange, evaluated, trajectory_metrics
from mfray.eval.labels import DIMENSIONS
from mfray.eval.metrics import label_shares
from mfray.http_common import logged_failure
from mfray.types import StepRecord

# "interrupted": live when its server died (found so after a restart): ended, readable, forkable.
TERMINAL = ("done", "cancelled", "failed", "interrupted")
KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle stream
SAVE_EVERY_S = 10.0  # a running simulation is also saved this often (besides every status change)


class Session(Protocol):
    """What a simulation drives: LiveSession's async methods (a Ray actor wrapper has them too)."""

    async def step(self) -> list[StepRecord]: ...
    async def info(self) -> dict: ...
    async def intervene(self, posts: list[str], agents: list[int] | None = None, step: int | None = None) -> dict: ...
    async def set_signal(self, text: str, step: int | None = None) -> dict: ...
    async def state_dict(self) -> dict: ...
    async def snapshot_at(self, step: int | None = None) -> dict: ...


def step_payloads(records: list[StepRecord], labels: list[tuple[dict | None, dict | None]]) -> list[dict]:
    """One stream message per step of `records` (in order): its posts, mean field and signal, and
    per dimension the label shares of the real and of the simulated posts (None where the step
    has no labelled post on that side, e.g. warm-up steps have no simulated posts)."""
    steps: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        steps.setdefault(r.step, []).append(i)
    out = []
    for step, rows in steps.items():
        shares = {}
        for dim, label_set in DIMENSIONS.items():
            real = [labels[i][0].get(dim) for i in rows if labels[i][0] is not None]
            sim = [labels[i][1].get(dim) for i in rows if labels[i][1] is not None]
            shares[dim] = {side: (label_shares(values, label_set).round(4).tolist() if any(v is not None for v in values) else None)
                           for side, values in (("real", real), ("sim", sim))}
        first = records[rows[0]]
        out.append({
            "type": "step", "step": step, "mean_field": first.mean_field, "signal": first.signal, "shares": shares,
            "posts": [{"agent": records[i].agent_index, "real": records[i].real_text, "sim": records[i].simulated_text,
                       "warmup": records[i].warmup, "intervention": records[i].intervention, "failed": records[i].failed}
                      for i in rows],
        })
    return out


async def label_records(records: list[StepRecord], annotator: Annotator) -> list[tuple[dict | None, dict | None]]:
    """(real labels, simulated labels) of each record; None where there is no text to label
    (past the recorded agents, warm-up or failed generations)."""
    items: list[AnnotationItem] = []
    where: list[tuple[int | None, int | None]] = []
    for r in records:
        pair = []
        for text in (r.real_text, None if r.warmup or r.failed else r.simulated_text):
            pair.append(None if text is None else len(items))
            if text is not None:
                items.append(AnnotationItem(text, r.topic, r.language))
        where.append((pair[0], pair[1]))
    out = await annotator.annotate(items) if items else []
    return [(None if a is None else out[a].labels, None if b is None else out[b].labels) for a, b in where]


def summary_of(meta: dict) -> dict:
    """What a listing shows of a simulation's meta (also for one not in memory)."""
    keys = ("id", "event_id", "origin", "parent", "method", "seed", "status", "created", "horizon", "error",
            "steps_done", "records")
    out = {k: meta.get(k) for k in keys}
    out["origin"] = {k: v for k, v in meta["origin"].items() if k != "file"}  # the server's own file name stays inside
    return out


class Simulation:
    """A simulation: its session (None once it ended), records, labels and stream messages.
    `origin` says where its event came from (stored id or upload); `parent` is {id, step} of the
    simulation it was forked from, or None."""

    def __init__(self, sim_id: str, session: Session | None, annotator: Annotator, meta: dict,
                 records: list[StepRecord] | None = None, labels: list | None = None) -> None:
        self.id = sim_id
        self.session = session
        self.annotator = annotator
        self.meta = meta  # id, event_id, origin, parent, method, seed, config, created; status kept here too
        self.records: list[StepRecord] = list(records or [])
        self.labels: list[tuple[dict | None, dict | None]] = list(labels or [])
        self.messages: list[dict] = [*step_payloads(self.records, self.labels), self._status_message()]
        self.on_change: Any = None  # async callback(simulation) after a status change (the host persists)
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._steps_left: int | None = None
        self._pause = False
        self.final_state: dict | None = None  # set when it ends: LiveSession.state_dict()
        self._saved = time.monotonic()

    @property
    def status(self) -> str:
        return self.meta["status"]

    @property
    def live(self) -> bool:
        """Holds a session (and a live slot): paused or running."""
        return self.status not in TERMINAL and self.session is not None

    def summary(self) -> dict:
        """The simulation as GET /api/simulations lists it (its meta brought up to date)."""
        self.meta["steps_done"] = self.records[-1].step + 1 if self.records else 0
        self.meta["records"] = len(self.records)
        return summary_of(self.meta)

    async def info(self) -> dict:
        """summary() plus the session's plan (next step, steps in all, interventions, signals)."""
        plan = await self.session.info() if self.live else {}
        return {**self.summary(), **{k: plan[k] for k in ("step", "steps", "interventions", "signals") if k in plan}}

    # ---- control ------------------------------------------------------------------------------
    def start(self, steps: int | None = None) -> None:
        """Run `steps` more steps (None: to the end) in the background, then pause."""
        self._need_live("resume")
        self._steps_left, self._pause = steps, False
        if self._task is None or self._task.done():
            self._set_status("running")
            self._task = asyncio.create_task(self._drive(), name=f"simulation-{self.id}")

    def pause(self) -> None:
        """Pause after the step under way (at once if none is)."""
        self._need_live("pause")
        self._pause = True

    async def cancel(self) -> None:
        """Stop now (a step under way is abandoned) and end the simulation."""
        if self.status in TERMINAL:
            raise Conflict(f"simulation {self.id} already ended ({self.status})")
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._end("cancelled")

    async def intervene(self, posts: list[str], agents: list[int] | None, step: int | None) -> dict:
        """Plan posts for agents of a coming step (the session's rules; BadRequest names the problem)."""
        self._need_live("intervene")
        try:
            return await self.session.intervene(posts, agents, step)
        except ValueError as err:
            raise BadRequest(str(err)) from None

    async def set_signal(self, text: str, step: int | None) -> dict:
        """Plan the exogenous signal from a coming step (BadRequest names the problem)."""
        self._need_live("set a signal")
        try:
            return await self.session.set_signal(text, step)
        except ValueError as err:
            raise BadRequest(str(err)) from None

    def metrics(self) -> list[dict]:
        """Per dimension, the simulated posts against the real ones so far (mfray.eval metrics over
        the simulated agents that have a real post), as in `mfray evaluate`."""
        cfg = self.meta["config"]
        chosen = {id(r) for r in evaluated(self.records, EvalRange(cfg["sim_start"], cfg["horizon"]))}
        keep = [i for i, r in enumerate(self.records) if id(r) in chosen]
        real = [Annotation(self.labels[i][0] or {}) for i in keep]
        sim = [None if self.labels[i][1] is None else Annotation(self.labels[i][1]) for i in keep]
        return trajectory_metrics([self.records[i].step for i in keep], real, sim)

    async def stream(self, since: int = 0) -> AsyncIterator[dict | None]:
        """Every message from index `since` (steps, and status changes), then each new one as it
        comes, until the simulation ends; None now and then while nothing happens (a keep-alive
        for the caller to send)."""
        i = since
        while True:
            while i < len(self.messages):
                yield self.messages[i]
                i += 1
            if self.status in TERMINAL:
                return
            wake = self._wake
            try:
                await asyncio.wait_for(wake.wait(), KEEPALIVE_S)
            except asyncio.TimeoutError:
                yield None

    # ---- helpers ------------------------------------------------------------------------------
    def _need_live(self, what: str) -> None:
        if not self.live:
            raise Conflict(f"cannot {what}: simulation {self.id} has ended ({self.status}); fork it to go on")

    def _notify(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    def _status_message(self) -> dict:
        return {"type": "status", "status": self.status, "error": self.meta.get("error")}

    def _set_status(self, status: str) -> None:
        self.meta["status"] = status
        self.messages.append(self._status_message())
        self._notify()

    async def _drive(self) -> None:
        try:
            while not self._pause and self._steps_left != 0:
                records = await self.session.step()
                if records:
                    labels = await label_records(records, self.annotator)
                    self.records += records
                    self.labels += labels
                    self.messages += step_payloads(records, labels)
                    self._notify()
                    if time.monotonic() - self._saved >= SAVE_EVERY_S:  # a crash loses at most this much
                        await self._changed()
                if self._steps_left is not None:
                    self._steps_left -= 1
                if (await self.session.info())["done"]:
                    await self._end("done")
                    return
            self._task = None
            self._set_status("paused")
            await self._changed()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the message names an error id; the cause goes to the log only
            if self.status in TERMINAL:  # cancelled meanwhile: its session is gone, that is no failure
                return
            self.meta["error"] = logged_failure("the simulation failed", exc)
            await self._end("failed")

    async def _end(self, status: str) -> None:
        if self.status in TERMINAL:  # ended once already (a cancel racing the drive loop's own end)
            return
        self.meta["ended"] = time.time()
        try:  # what a fork of the ended simulation starts from (every step's start, the records)
            self.final_state = await self.session.state_dict()
        except Exception as exc:  # e.g. a failed remote session: no forks then, the records are kept
            logged_failure(f"simulation {self.id}: no final state to fork from", exc)
            self.final_state = None
        self._set_status(status)
        await self._changed()

    async def _changed(self) -> None:
        self._saved = time.monotonic()
        if self.on_change is not None:
            await self.on_change(self)


class Conflict(RuntimeError):
    """A request that the simulation's status does not allow (409)."""


class BadRequest(ValueError):
    """A request the rules refuse (a plan for a past step, an agent the session does not
    generate, a step not reached), with what to change: 422."""
