"""What the metric recorders are handed, Ray-free: the batcher's observers (queue depth, engine
call seconds) and TimedLLM's latency observations. That Ray exports them under the catalogue's
names is tests/integration/test_metrics_export.py's part."""

from __future__ import annotations

import asyncio

import pytest

from mfray.llm.base import SamplingParams
from mfray.llm.batching import DynamicBatcher
from mfray.llm.standin import StandInLLM
from mfray.ray.metrics import TimedLLM


class Observations:
    """Stands for a Ray Histogram behind TimedLLM's `histogram` argument: keeps what it gets."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, dict]] = []

    def observe(self, value: float, tags: dict | None = None) -> None:
        self.seen.append((value, tags))


def test_batcher_reports_every_queue_change_and_each_engine_call():
    batcher = DynamicBatcher(StandInLLM(), max_batch=8, window_s=0.0)
    depths, calls = [], []
    batcher.on_waiting, batcher.on_batch = depths.append, calls.append

    async def go():
        futures = batcher.enqueue([(f"p{i}", SamplingParams(seed=i), None) for i in range(3)])
        await asyncio.gather(*futures)
        await batcher.stop()

    asyncio.run(go())
    # Started (0), 3 admitted at once (3), handed to the engine in one batch (0), stopped (0).
    assert depths == [0, 3, 0, 0]
    assert len(calls) == 1 and 0 <= calls[0] < 5


def test_timed_llm_observes_each_call_with_its_outcome():
    seen = Observations()
    llm = TimedLLM(StandInLLM(), "serve", histogram=seen)
    gens = asyncio.run(llm.generate(["a", "b"], SamplingParams(seed=1)))
    assert len(gens) == 2
    with pytest.raises(KeyError):  # the stand-in refuses an adapter it does not serve
        asyncio.run(llm.generate(["a"], SamplingParams(seed=1), adapter="missing"))
    assert [tags for _, tags in seen.seen] == [{"backend": "serve", "outcome": "ok"},
                                               {"backend": "serve", "outcome": "error"}]
    assert all(0 <= s < 5 for s, _ in seen.seen)
