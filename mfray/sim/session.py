"""One live simulation of one event, driven by hand: step it one step at a time or N steps,
intervene (insert posts, set the exogenous signal) between steps, read the trajectory so far,
snapshot it, resume it, or fork a what-if from any step already simulated. Pure Python, no Ray:
the Ray event actor (mfray.ray.event_actor) and a simulation endpoint wrap it.

    session = LiveSession(event, llm, RolloutConfig(method="mf"), seed=0)
    await session.step()                                   # records of the step just simulated
    await session.intervene(["Officials say the photo is fake."])
    await session.run(3)                                   # three more steps (None: to the end)
    what_if = LiveSession(event, llm, state=session.snapshot(step=1))   # the run as it stood then

Calls are served one at a time (an asyncio lock), so an intervention always lands between steps.
Every sample is keyed by its step and seed, so a fork replayed without a change repeats the
original exactly, and a fork with a change differs from the step of the change on.
"""

from __future__ import annotations

import asyncio
import dataclasses

from pydantic import ValidationError

from mfray.llm.base import LLM
from mfray.sim.config import RolloutConfig
from mfray.sim.driver import advance
from mfray.sim.rollout import EventRollout
from mfray.types import Event, StepRecord


def load_event(source: Event | str, event_id: str | None = None) -> Event:
    """`source` itself, or the event of the file `source` (`event_id` picks one of several)."""
    if isinstance(source, Event):
        return source
    from mfray.data import load_file

    result = load_file(source)
    if result.problems:
        raise ValueError(f"{source}: " + "; ".join(str(p) for p in result.problems))
    events = [e for e in result.events if event_id in (None, e.event_id)]
    if len(events) != 1:
        have = ", ".join(e.event_id for e in result.events)
        want = f"event {event_id!r}" if event_id else "one event (pass event_id)"
        raise ValueError(f"{source}: need {want}; the file has {len(result.events)}: {have}")
    return events[0]


class LiveSession:
    """A rollout of `event` (an Event or an event file; `event_id` picks one of a file's) on `llm`.
    `cfg`: a RolloutConfig or its dict; `state`: a dict from state_dict() or snapshot() to resume
    from (then `cfg` and `seed` come from it)."""

    def __init__(self, event: Event | str, llm: LLM, cfg: RolloutConfig | dict | None = None, seed: int = 0,
                 event_id: str | None = None, state: dict | None = None):
        self.event = load_event(event, event_id)
        self.llm = llm
        if state is not None:
            if state.get("event_id") != self.event.event_id:
                raise ValueError(f"state is of event {state.get('event_id')!r}, not {self.event.event_id!r}")
            cfg = RolloutConfig.model_validate(state["config"])
            self.rollout = EventRollout.from_state(self.event, cfg, state["seed"], state["rollout"])
            self.records = [StepRecord(**r) for r in state["records"]]
            # A state_dict() carries the start of every step the session reached, so a resumed
            # session can still fork from any of them (a snapshot carries only its own).
            self._starts = {int(step): start for step, start in state.get("starts", {}).items()}
        else:
            cfg = cfg if isinstance(cfg, RolloutConfig) else RolloutConfig.model_validate(cfg or {})
            self.rollout = EventRollout(self.event, cfg, seed)
            self.records = []
            # The session as it stood at the start of each step reached: what snapshot(step) returns.
            self._starts: dict[int, dict] = {}
        self._keep_start()
        self._lock = asyncio.Lock()

    @property
    def cfg(self) -> RolloutConfig:
        return self.rollout.cfg

    async def info(self) -> dict:
        """Where the event stands: the next step to simulate, of how many, and the plan."""
        steps = -(-self.cfg.horizon // self.cfg.agents_per_step)
        return {"event_id": self.event.event_id, "method": self.cfg.method, "seed": self.rollout.seed,
                "step": self.rollout.step, "steps": steps, "done": self.rollout.done, "records": len(self.records),
                "interventions": [iv.model_dump() for iv in self.cfg.interventions],
                "signals": [s.model_dump() for s in self.cfg.signals]}

    async def step(self) -> list[StepRecord]:
        """Simulate the next step and return its records (none once done). Warm-up steps of a
        method without a mean field need no model and complete together with the next step."""
        async with self._lock:
            return await self._advance(1)

    async def run(self, steps: int | None = None) -> list[StepRecord]:
        """Simulate `steps` more steps (None: to the end); returns their records."""
        if steps is not None and steps < 0:
            raise ValueError(f"steps must be >= 0 (or None for all), got {steps}")
        async with self._lock:
            return await self._advance(steps)

    async def intervene(self, posts: list[str], agents: list[int] | None = None, step: int | None = None) -> dict:
        """Insert `posts` as the actions of agents `agents` (offsets within the step; default
        the first len(posts)) at `step` (default: the next step to simulate). Returns info().
        Refused (ValueError, the plan unchanged) for a step already simulated, and by
        RolloutConfig's rule (mfray.sim.config.intervention_problems): an agent the rollout does
        not generate (warm-up, past the horizon) or one another intervention already names."""
        async with self._lock:
            at = self._future_step(step, "intervene")
            planned = [iv.model_dump() for iv in self.cfg.interventions]
            self._replan("intervene", interventions=[*planned, {"step": at, "posts": list(posts), "agents": agents}])
        return await self.info()

    async def set_signal(self, text: str, step: int | None = None) -> dict:
        """Show `text` as the exogenous signal in every prompt from `step` (default: the next step
        to simulate) until a later signal; replaces a signal planned for that same step."""
        async with self._lock:
            at = self._future_step(step, "set_signal")
            kept = [s.model_dump() for s in self.cfg.signals if s.step != at]
            self._replan("set_signal", signals=sorted([*kept, {"step": at, "text": text}], key=lambda s: s["step"]))
        return await self.info()

    async def trajectory(self) -> list[StepRecord]:
        """Every record simulated so far, in order."""
        return list(self.records)

    async def state_dict(self) -> dict:
        """A JSON-able snapshot of the session now (config with its interventions and signals,
        rollout state, records, and the start of every step reached) that LiveSession(...,
        state=...) resumes from; the resumed session can fork from any of those steps."""
        async with self._lock:
            return {**self.snapshot(), "starts": {str(step): start for step, start in self._starts.items()}}

    async def snapshot_at(self, step: int | None = None) -> dict:
        """snapshot(step), taken between steps (it waits for a step under way to finish)."""
        async with self._lock:
            return self.snapshot(step)

    def snapshot(self, step: int | None = None) -> dict:
        """The session as it stood at the start of `step` (default: now), as state_dict() gives
        it: resume it as a fork (LiveSession(event, llm, state=...)) and change its future.
        Raises ValueError for a step not reached, or one a resumed session started after."""
        if step is None:
            step = self.rollout.step
        if step not in self._starts:
            raise ValueError(f"no snapshot at step {step}: this session holds the starts of steps {sorted(self._starts)} "
                             "(steps not reached yet, before a resume, or warm-up steps that ran together have none)")
        start = self._starts[step]
        return {**start, "records": [dataclasses.asdict(r) for r in self.records[: start["n_records"]]]}

    # ---- helpers ------------------------------------------------------------------------------
    def _keep_start(self) -> None:
        # The config in force belongs to the snapshot: an intervention planned later must not
        # leak into a fork taken from before it (and the rollout's fingerprint follows the config).
        self._starts[self.rollout.step] = {
            "event_id": self.event.event_id, "seed": self.rollout.seed, "config": self.cfg.model_dump(mode="json"),
            "rollout": self.rollout.state_dict(), "n_records": len(self.records)}

    def _future_step(self, step: int | None, what: str) -> int:
        if step is None:
            return self.rollout.step
        if step < self.rollout.step:
            raise ValueError(f"{what} at step {step}: steps up to {self.rollout.step - 1} are already simulated; "
                             f"use step >= {self.rollout.step} (or omit it for the next step)")
        return step

    def _replan(self, what: str, **changes: list[dict]) -> None:
        # Validated as a whole (interventions on generated agents only, each once; increasing
        # signal steps), so a live plan meets the rules a config file does. Interventions and signals
        # are read when a step begins, and the lock guarantees none is under way, so the rollout
        # takes the new plan from its next step on; its state fingerprint follows the config.
        try:
            cfg = RolloutConfig.model_validate({**self.cfg.model_dump(), **changes})
        except ValidationError as err:  # a plain ValueError crosses process boundaries intact
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else e["msg"] for e in err.errors())
            raise ValueError(f"{what}: {problems}") from None
        self.rollout.cfg = cfg
        self._keep_start()  # the start of this step now plans the change

    async def _advance(self, steps: int | None) -> list[StepRecord]:
        def finished(records: list[StepRecord]) -> None:
            self.records += records
            if self.rollout.at_step_boundary:
                self._keep_start()

        return await advance(self.rollout, self.llm, steps, finished)
