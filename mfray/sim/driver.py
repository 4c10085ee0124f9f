"""Async drivers that feed rollouts to an LLM: one event, a forecast, a counterfactual pair.
(Many events, resumable on disk: mfray.sim.checkpoint.run_events.)"""

from __future__ import annotations

import asyncio
from typing import Callable

from mfray.llm.base import LLM
from mfray.sim.config import Intervention, RolloutConfig
from mfray.sim.rollout import EventRollout
from mfray.types import Event, StepRecord


async def drive(rollout: EventRollout, llm: LLM, on_step: Callable[[list[StepRecord]], None] | None = None) -> list[StepRecord]:
    """Run a rollout to the end. `on_step` receives each finished step's records as they come
    (for streaming and progress); the full list is also returned."""
    records: list[StepRecord] = []
    while (request := rollout.next_request()) is not None:
        generations = await llm.generate(request.prompts, request.sampling, adapter=request.adapter)
        rollout.submit(generations)
        finished = rollout.drain()
        if finished:
            records.extend(finished)
            if on_step is not None:
                on_step(finished)
    tail = rollout.drain()  # steps that needed no model after the last request
    records.extend(tail)
    if tail and on_step is not None:
        on_step(tail)
    return records


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
