"""The engine side of serving: a dynamic batcher that merges concurrent requests into few
`llm.generate` calls, and `BatchedLLM`, the LLM protocol in front of it with the request checks
(adapter served, prompt length, queue bound). The OpenAI-compatible HTTP app (mfray.llm.server)
and the Ray Serve deployment's handle methods (mfray.ray.serve_llm) both call a BatchedLLM, so
requests from every source meet in the same batches; the engine is kept apart from the server,
as serving engines keep theirs apart from their OpenAI-compatible front ends.

Errors a caller can act on: UnknownModel (HTTP 404), PromptTooLong (400), Overloaded (429 with
Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from dataclasses import dataclass, replace
from typing import AsyncIterator, Callable, Sequence

from mfray.llm.base import LLM, Generation, Prompt, SamplingParams, prompt_seeds

log = logging.getLogger(__name__)


# -- errors a caller can act on -----------------------------------------------------------------


class UnknownModel(LookupError):
    """A request named a model or adapter this server does not serve (HTTP 404)."""


class PromptTooLong(ValueError):
    """A prompt is longer than the server's `max_prompt_tokens` (HTTP 400)."""


class Overloaded(RuntimeError):
    """Too many prompts already wait for the engine (HTTP 429 with Retry-After): back off and
    retry after `retry_after_s` seconds, or add replicas."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message, retry_after_s)  # both in args: survives pickling across processes
        self.message = message
        self.retry_after_s = retry_after_s

    def __str__(self) -> str:
        return self.message


# -- dynamic batching -------------------------------------------------------------------------


@dataclass
class _Item:
    prompt: Prompt
    sampling: SamplingParams
    adapter: str | None
    future: asyncio.Future


def plan_batches(items: list[_Item], max_batch: int) -> list[tuple[SamplingParams, str | None, list[_Item]]]:
    """Group queued requests into generate calls of at most `max_batch`, in arrival order.
    Requests merge when they share an adapter and all sampling settings but the seed: each keeps
    its own seed (the engine is called with one seed per prompt), so requests of many clients
    merge whatever their seeds and each gets the sample it would get alone."""
    groups: dict[tuple, list[_Item]] = {}
    for it in items:
        groups.setdefault((replace(it.sampling, seed=None), it.adapter), []).append(it)
    return [
        (base, adapter, group[i : i + max_batch])
        for (base, adapter), group in groups.items()
        for i in range(0, len(group), max_batch)
    ]


class DynamicBatcher:
    """Merges concurrent generate requests into few `llm.generate` calls.

    At most `max_inflight` engine calls run at once (1 suits a single local GPU engine: requests
    that arrive during a generation pile up and form the next, larger batch). Once a slot is free
    the batcher waits `window_s` for more requests, then dispatches them grouped by
    `plan_batches`. Score calls take a slot too, so the engine never sees more than
    `max_inflight` concurrent calls.

    `max_queue` bounds the prompts waiting for the engine (queued, or planned but not yet
    dispatched, and score chunks waiting for a slot): a request that would push the count past it
    raises `Overloaded` instead of waiting. A request is admitted whole or not at all, and one
    arriving at an empty queue is always admitted (however many prompts it holds).

    Observers (for metrics; None by default, set by the owner): `on_waiting(n)` is called with
    the new count each time the prompts waiting change, `on_batch(seconds)` after each engine
    generate call that returned. They run on the serving loop and must be quick."""

    def __init__(
        self,
        llm: LLM,
        max_batch: int = 32,
        window_s: float = 0.005,
        max_inflight: int = 1,
        max_queue: int | None = None,
    ) -> None:
        if max_batch < 1 or max_inflight < 1 or window_s < 0 or (max_queue is not None and max_queue < 1):
            raise ValueError("need max_batch >= 1, max_inflight >= 1, window_s >= 0, max_queue None or >= 1")
        self.llm = llm
        self.max_batch = max_batch
        self.window_s = window_s
        self.max_inflight = max_inflight
        self.max_queue = max_queue
        self.batches = 0  # generate calls made
        self.items = 0  # requests served through them
        self.rejected = 0  # prompts refused as Overloaded
        self.on_waiting: Callable[[int], None] | None = None
        self.on_batch: Callable[[float], None] | None = None
        self._waiting = 0
        self._batch_s = 1.0  # moving average of one engine call, for Retry-After
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Item] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._task: asyncio.Task | None = None
        self._inflight: set[asyncio.Task] = set()

    @property
    def waiting(self) -> int:
        """Prompts admitted but not yet handed to the engine."""
        return self._waiting

    @waiting.setter
    def waiting(self, n: int) -> None:
        self._waiting = n
        if self.on_waiting is not None:
            self.on_waiting(n)

    def _ensure_started(self) -> None:
        # Started lazily inside the serving loop (works with or without lifespan events).
        loop = asyncio.get_running_loop()
        if self._task is None or self._task.done() or self._loop is not loop:
            self._loop = loop
            self._queue = asyncio.Queue()
            self.waiting = 0
            self._slots = asyncio.Semaphore(self.max_inflight)
            self._task = loop.create_task(self._run())

    def _admit(self, n: int) -> None:
        if self.max_queue is not None and self.waiting and self.waiting + n > self.max_queue:
            self.rejected += n
            # The queue drains about max_batch prompts per engine call.
            wait = self._batch_s * (1 + self.waiting // self.max_batch)
            raise Overloaded(
                f"server overloaded: {self.waiting} prompts already wait for the engine (limit {self.max_queue}); "
                f"retry later or add replicas",
                retry_after_s=float(min(60, max(1, math.ceil(wait)))),
            )
        self.waiting += n

    def enqueue(self, requests: Sequence[tuple[Prompt, SamplingParams, str | None]]) -> list[asyncio.Future]:
        """Queue prompts all-or-nothing; each future resolves with its Generation (or the engine's
        exception). Raises Overloaded when the wait queue is full."""
        self._ensure_started()
        self._admit(len(requests))
        loop = asyncio.get_running_loop()
        futures = []
        for prompt, sampling, adapter in requests:
            fut = loop.create_future()
            self._queue.put_nowait(_Item(prompt, sampling, adapter, fut))
            futures.append(fut)
        return futures

    async def submit(self, prompt: Prompt, sampling: SamplingParams, adapter: str | None) -> Generation:
        """Queue one prompt; resolves with its Generation (or the engine's exception)."""
        return await self.enqueue([(prompt, sampling, adapter)])[0]

    @contextlib.asynccontextmanager
    async def slot(self, prompts: int = 1) -> AsyncIterator[None]:
        """Hold one engine slot (for calls that bypass the queue, such as score); while waiting
        for it, its `prompts` count against `max_queue`."""
        self._ensure_started()
        self._admit(prompts)
        try:
            await self._slots.acquire()
        finally:
            self.waiting -= prompts
        try:
            yield
        finally:
            self._slots.release()

    async def stop(self) -> None:
        """Cancel the batcher and fail whatever is still queued."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._queue is not None and not self._queue.empty():
            it = self._queue.get_nowait()
            if not it.future.done():
                it.future.set_exception(RuntimeError("server shutting down"))
        self.waiting = 0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            await self._slots.acquire()
            deadline = loop.time() + self.window_s
            while True:
                while not self._queue.empty():
                    items.append(self._queue.get_nowait())
                if len(items) >= self.max_batch or loop.time() >= deadline:
                    break
                # Short sleeps rather than wait_for(queue.get()): a timed-out get can drop an item.
                await asyncio.sleep(min(0.001, max(0.0, deadline - loop.time())))
            try:
                plan = plan_batches(items, self.max_batch)
            except Exception as e:  # never leave a request waiting on a future nobody resolves
                self.waiting -= len(items)
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(e)
                self._slots.release()
                continue
            for i, (sampling, adapter, batch) in enumerate(plan):
                if i > 0:
                    await self._slots.acquire()
                self.waiting -= len(batch)
                task = loop.create_task(self._dispatch(sampling, adapter, batch))
                self._inflight.add(task)  # keep a reference until done
                task.add_done_callback(self._inflight.discard)

    async def _dispatch(self, sampling: SamplingParams, adapter: str | None, batch: list[_Item]) -> None:
        began = time.perf_counter()
        try:
            gens = await self.llm.generate(
                [it.prompt for it in batch], sampling, adapter, seeds=[it.sampling.seed for it in batch]
            )
            seconds = time.perf_counter() - began
            self._batch_s = 0.8 * self._batch_s + 0.2 * seconds
            if len(gens) != len(batch):
                raise RuntimeError(f"llm.generate returned {len(gens)} generations for {len(batch)} prompts")
        except Exception as e:  # the engine's failure goes to every request of the batch
            log.exception("generate failed for a batch of %d", len(batch))
            for it in batch:
                if not it.future.done():
                    it.future.set_exception(e)
        else:
            self.batches += 1
            self.items += len(batch)
            for it, g in zip(batch, gens):
                if not it.future.done():  # the client may have gone away
                    it.future.set_result(g)
            if self.on_batch is not None:  # after the results: a failing observer strands no request
                self.on_batch(seconds)
        finally:
            self._slots.release()


# -- the front: checks + batcher, as an LLM -----------------------------------------------------


class BatchedLLM:
    """The LLM protocol in front of a DynamicBatcher, with the server's request checks.

    What build_app's routes call, and what in-process callers (the Ray Serve deployment's handle
    methods) call too, so requests from every source meet in the same batches. Prompt i of one
    call gets seed + i, as if passed to `llm.generate` together, unless the call passes `seeds`.
    Raises UnknownModel for an adapter not served, PromptTooLong over `max_prompt_tokens` (which
    needs `count_tokens(prompt) -> int`), Overloaded when the batcher's queue is full."""

    def __init__(
        self,
        batcher: DynamicBatcher,
        adapters: Sequence[str] = (),
        max_prompt_tokens: int | None = None,
        count_tokens: Callable[[Prompt], int] | None = None,
    ) -> None:
        if max_prompt_tokens is not None and (max_prompt_tokens < 1 or count_tokens is None):
            raise ValueError("max_prompt_tokens needs a value >= 1 and a count_tokens function (a tokenizer)")
        self.batcher = batcher
        self.llm = batcher.llm
        self.adapters = tuple(adapters)
        self.max_prompt_tokens = max_prompt_tokens
        self.count_tokens = count_tokens

    def check_adapter(self, adapter: str | None) -> None:
        if adapter is not None and adapter not in self.adapters:
            raise UnknownModel(f"adapter {adapter!r} is not served here; served adapters: {list(self.adapters)}")

    def check_length(self, texts: Sequence[Prompt], what: str = "prompt", extra: Sequence[str] = ()) -> None:
        """Refuse any input over `max_prompt_tokens` (`extra[i]` is appended text, for scoring)."""
        if self.max_prompt_tokens is None:
            return
        for i, prompt in enumerate(texts):
            n = self.count_tokens(prompt) + (self.count_tokens(extra[i]) if extra else 0)
            if n > self.max_prompt_tokens:
                where = f" {i}" if len(texts) > 1 else ""
                raise PromptTooLong(
                    f"{what}{where} is {n} tokens, limit {self.max_prompt_tokens}; shorten it or raise max_prompt_tokens"
                )

    async def generate(
        self,
        prompts: list[Prompt],
        sampling: SamplingParams,
        adapter: str | None = None,
        seeds: Sequence[int | None] | None = None,
    ) -> list[Generation]:
        """Queue every prompt (all or none) with its own seed (`prompt_seeds`), then wait for
        all; the first engine exception is raised."""
        self.check_adapter(adapter)
        self.check_length(prompts)
        seeds = prompt_seeds(len(prompts), sampling, seeds)
        futures = self.batcher.enqueue([(p, replace(sampling, seed=seed), adapter) for p, seed in zip(prompts, seeds)])
        # return_exceptions: collect every outcome so no sibling's exception goes unretrieved.
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        for g in outcomes:
            if isinstance(g, BaseException):
                raise g
        return list(outcomes)

    async def score(self, prompts: list[Prompt], completions: list[str], adapter: str | None = None) -> list[list[float]]:
        """Score in chunks of the batcher's max_batch, each holding an engine slot."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        self.check_adapter(adapter)
        self.check_length(prompts, "prompt + completion", completions)
        step = self.batcher.max_batch

        async def chunk(i: int) -> list[list[float]]:
            async with self.batcher.slot(len(prompts[i : i + step])):
                return await self.llm.score(prompts[i : i + step], completions[i : i + step], adapter)

        parts = await asyncio.gather(*(chunk(i) for i in range(0, len(prompts), step)))
        return [row for part in parts for row in part]
