"""One Ray actor per live event, for interactive use: start from an event, step it one step at a
time or N steps, intervene (insert posts, set the exogenous signal) between steps, read the
trajectory so far, and save/restore its state.

    actor = EventActor.remote("../shared/data/twitter_rumdect/E102.json", {"method": "mf"}, seed=0,
                              backend={"llm": "serve"})
    ray.get(actor.step.remote())                      # records of the step just simulated
    ray.get(actor.intervene.remote(["Officials say the photo is fake."]))
    ray.get(actor.set_signal.remote("Police statement: no one was hurt."))
    ray.get(actor.run.remote(3))                      # three more steps (None: to the end)
    saved = ray.get(actor.state_dict.remote())        # JSON-able; EventActor.remote(..., state=saved)

Calls are served one at a time (an asyncio lock), so an intervention always lands between steps.
The rollout itself is mfray.sim.rollout.EventRollout; this actor only drives it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Literal

import ray
from pydantic import Field, ValidationError

from mfray.config import EndpointConfig, ModelConfig, StrictModel
from mfray.sim.config import RolloutConfig
from mfray.sim.rollout import EventRollout
from mfray.types import Event, StepRecord


class BackendConfig(StrictModel):
    """Which LLM the actor drives its event with (see mfray.ray.sweep.build_backend)."""

    llm: Literal["serve", "local", "endpoint"] = "serve"
    model: ModelConfig = ModelConfig()
    endpoint: EndpointConfig | None = None
    serve_app: str = Field("mfray-llm", min_length=1)


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


class LiveEvent:
    """The event actor's body (EventActor = ray.remote(LiveEvent)). `cfg`: a RolloutConfig or its
    dict; `backend`: a BackendConfig or its dict; `state`: a dict from state_dict() to resume
    (then `cfg` and `seed` come from it)."""

    def __init__(self, event: Event | str, cfg: RolloutConfig | dict | None = None, seed: int = 0,
                 backend: BackendConfig | dict | None = None, event_id: str | None = None, state: dict | None = None):
        from mfray.ray.sweep import build_backend

        self.event = load_event(event, event_id)
        backend = BackendConfig.model_validate(backend or {}) if not isinstance(backend, BackendConfig) else backend
        self.llm = build_backend(backend.llm, backend.model, backend.endpoint, backend.serve_app)
        if state is not None:
            if state.get("event_id") != self.event.event_id:
                raise ValueError(f"state is of event {state.get('event_id')!r}, not {self.event.event_id!r}")
            cfg = RolloutConfig.model_validate(state["config"])
            self.rollout = EventRollout.from_state(self.event, cfg, state["seed"], state["rollout"])
            self.records = [StepRecord(**r) for r in state["records"]]
        else:
            cfg = cfg if isinstance(cfg, RolloutConfig) else RolloutConfig.model_validate(cfg or {})
            self.rollout = EventRollout(self.event, cfg, seed)
            self.records = []
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
        """A JSON-able snapshot (config with its interventions and signals, rollout state,
        records) that EventActor.remote(event, state=...) resumes from."""
        async with self._lock:
            return {"event_id": self.event.event_id, "seed": self.rollout.seed, "config": self.cfg.model_dump(mode="json"),
                    "rollout": self.rollout.state_dict(), "records": [dataclasses.asdict(r) for r in self.records]}

    # ---- helpers ------------------------------------------------------------------------------
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
        except ValidationError as err:  # a plain ValueError crosses Ray intact; pydantic's does not
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" if e["loc"] else e["msg"] for e in err.errors())
            raise ValueError(f"{what}: {problems}") from None
        self.rollout.cfg = cfg

    async def _advance(self, steps: int | None) -> list[StepRecord]:
        rollout, new = self.rollout, []
        while (steps is None or steps > 0) and not rollout.done:
            start = rollout.step
            while not rollout.done and (rollout.step == start or not rollout.at_step_boundary):
                request = rollout.next_request()
                if request is None:
                    break
                rollout.submit(await self.llm.generate(request.prompts, request.sampling, adapter=request.adapter))
            new += rollout.drain()
            steps = None if steps is None else steps - 1
        self.records += new
        return new


EventActor = ray.remote(num_cpus=0.1)(LiveEvent)
