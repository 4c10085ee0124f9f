"""Merge the generate calls of many concurrent rollouts into few backend calls.

A sweep actor drives dozens of event rollouts on one event loop; each step of each rollout asks
for its own batch of prompts. Sent one by one, every batch pays a full backend round trip (a Serve
handle call costs more than the stand-in's whole answer). `CoalescingLLM` holds the calls made
in one turn of the event loop, merges those with equal sampling settings (seed aside) and
adapter into one call that carries each prompt's own seed, and hands every caller its share of
the answer. Since every backend samples a prompt from its own seed alone, whatever else shares
its batch, each rollout gets exactly what it would have got alone.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Sequence

from mfray.llm.base import LLM, Generation, Prompt, SamplingParams, prompt_seeds


class CoalescingLLM:
    """LLM protocol over `llm`, merging concurrent generate calls (at most `max_prompts` prompts
    per merged call). A failed merged call raises its exception in every caller it served.
    `calls` / `merged_calls` count the calls received and those sent on."""

    def __init__(self, llm: LLM, max_prompts: int = 1024) -> None:
        if max_prompts < 1:
            raise ValueError(f"max_prompts must be >= 1, got {max_prompts}")
        self.llm, self.max_prompts = llm, max_prompts
        self.calls = self.merged_calls = 0
        self._pending: dict[tuple, list[tuple[list[Prompt], list[int | None], asyncio.Future]]] = {}
        self._tasks: set[asyncio.Task] = set()  # merged calls in flight (kept from garbage collection)

    async def generate(
        self,
        prompts: list[Prompt],
        sampling: SamplingParams,
        adapter: str | None = None,
        seeds: Sequence[int | None] | None = None,
    ) -> list[Generation]:
        """This call's generations, from a merged call made at the end of the loop's turn."""
        seeds = prompt_seeds(len(prompts), sampling, seeds)  # raises here, for this caller only
        self.calls += 1
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self._flush)
        future = loop.create_future()
        self._pending.setdefault((replace(sampling, seed=None), adapter), []).append((list(prompts), seeds, future))
        return await future

    async def score(self, prompts: list[Prompt], completions: list[str], adapter: str | None = None) -> list[list[float]]:
        return await self.llm.score(prompts, completions, adapter)

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        for (sampling, adapter), waiting in pending.items():
            group: list = []
            for item in waiting:
                if group and sum(len(p) for p, _, _ in group) + len(item[0]) > self.max_prompts:
                    self._send(sampling, adapter, group)
                    group = []
                group.append(item)
            self._send(sampling, adapter, group)

    def _send(self, sampling: SamplingParams, adapter: str | None, group: list) -> None:
        task = asyncio.ensure_future(self._merged(sampling, adapter, group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _merged(self, sampling: SamplingParams, adapter: str | None, group: list) -> None:
        self.merged_calls += 1
        prompts = [p for ps, _, _ in group for p in ps]
        seeds = [s for _, ss, _ in group for s in ss]
        try:
            gens = await self.llm.generate(prompts, sampling, adapter, seeds)
        except BaseException as err:  # handed to every caller this call served (cancellation too)
            for _, _, future in group:
                if not future.done():
                    future.set_exception(err)
            if not isinstance(err, Exception):
                raise
            return
        start = 0
        for ps, _, future in group:
            if not future.done():  # a caller cancelled meanwhile
                future.set_result(gens[start : start + len(ps)])
            start += len(ps)
