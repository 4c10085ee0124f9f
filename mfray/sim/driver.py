"""Async drivers that feed rollouts to an LLM: `advance` (the one loop), one event, a forecast, a
counterfactual pair. (Many events, resumable on disk: mfray.sim.checkpoint.run_events; a live
session stepped by hand: mfray.sim.session.)"""

from __future__ import annotations

import asyncio
from typing import Callable

from mfray.llm.base import LLM
from mfray.sim.config import Intervention, RolloutConfig
from mfray.sim.rollout import EventRollout
from mfray.types import Event, StepRecord


async def advance(rollout: EventRollout, llm: LLM, steps: int | None = None,
                  on_step: Callable[[list[StepRecord]], None] | None = None, keep: bool = True) -> list[StepRecord]:
    """Run `steps` more steps of a rollout (None: to the end), feeding its requests to `llm`, and
    return their records (none when not `keep`: a long run streams them through `on_step`).
    `on_step` receives the records as each step finishes (for streaming, progress and
    checkpoints). The one loop every driver uses: a whole run, a resumable run, a live session
    stepped by hand."""
    records: list[StepRecord] = []

    def take() -> None:
        finished = rollout.drain()
        if finished:
            if keep:
                records.extend(finished)
            if on_step is not None:
                on_step(finished)

    while not rollout.done and (steps is None or steps > 0):
        start = rollout.step
        while rollout.step == start or not rollout.at_step_boundary:
            request = rollout.next_request()
            if request is None:  # finished (steps that needed no model completed in there)
                take()
                return records
            rollout.submit(await llm.generate(request.prompts, request.sampling, adapter=request.adapter))
            take()
        steps = None if steps is None else steps - 1
    take()
    return records


async def drive(rollout: EventRollout, llm: LLM, on_step: Callable[[list[StepRecord]], None] | None = None) -> list[StepRecord]:
    """Run a rollout to the end (`advance` with no step limit)."""
    return await advance(rollout, llm, None, on_step)


async def run_event(event: Event, llm: LLM, cfg: RolloutConfig, seed: int = 0, on_step=None) -> list[StepRecord]:
    """Simulate one event from the start."""
    return await drive(EventRollout(event, cfg, seed), llm, on_step)


async def forecast(event: Event, llm: LLM, cfg: RolloutConfig, start_agent: int, seed: int = 0, on_step=None) -> list[StepRecord]:
    """Warm up with the real actions of agents 0..start_agent-1, then simulate forward. An
    intervention planned in cfg on an agent before start_agent is refused (ValueError): that
    agent now acts with its real action."""
    return await run_event(event, llm, cfg.model_copy(update={"sim_start": start_agent}), seed, on_step)


async def counterfactual(
    event: Event, llm: LLM, cfg: RolloutConfig, interventions: list[Intervention], seed: int = 0
) -> tuple[list[StepRecord], list[StepRecord]]:
    """The same seed without and with the interventions: (baseline, intervened). Steps before
    the first intervention are identical in both, since every sample is keyed by its step.
    `interventions` are added to cfg's and checked with them (model_copy re-validates, against
    RolloutConfig's rule: only generated agents, each once); a ValueError names every one that
    breaks it."""
    treated = cfg.model_copy(update={"interventions": list(cfg.interventions) + list(interventions)})
    baseline, intervened = await asyncio.gather(run_event(event, llm, cfg, seed), run_event(event, llm, treated, seed))
    return baseline, intervened
