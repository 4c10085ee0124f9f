"""CoalescingLLM: concurrent generate calls become one backend call per (sampling, adapter) and
loop turn, each prompt keeping its own seed, so every caller gets what it would have got alone.
The stand-in LLM (canned text chosen by seed) makes that checkable exactly."""

from __future__ import annotations

import asyncio

import pytest

from mfray.llm.base import SamplingParams
from mfray.llm.coalesce import CoalescingLLM
from mfray.llm.standin import StandInLLM


class Counting(StandInLLM):
    """The stand-in, noting each call's (prompts, adapter, seeds)."""

    def __init__(self, fail: bool = False):
        super().__init__(adapters=("a",))
        self.seen, self.fail = [], fail

    async def generate(self, prompts, sampling, adapter=None, seeds=None):
        self.seen.append((list(prompts), adapter, list(seeds) if seeds is not None else None))
        if self.fail:
            raise RuntimeError("backend down")
        return await super().generate(prompts, sampling, adapter, seeds)


def test_concurrent_calls_merge_per_sampling_and_adapter_and_each_gets_its_own_answer():
    inner = Counting()
    llm = CoalescingLLM(inner)
    policy, mean_field = SamplingParams(seed=10), SamplingParams(seed=20, temperature=0.1)
    calls = [(["p1", "p2"], policy, None), (["q1"], SamplingParams(seed=30), None), (["m"], mean_field, None),
             (["r1", "r2", "r3"], SamplingParams(seed=40), "a")]

    async def main():
        return await asyncio.gather(*(llm.generate(p, s, a) for p, s, a in calls))

    merged = asyncio.run(main())
    alone = [asyncio.run(StandInLLM(adapters=("a",)).generate(p, s, a)) for p, s, a in calls]
    assert merged == alone
    # policy and q share settings (seed aside): one call, with seeds 10, 11 and 30; the mean field
    # (other temperature) and the adapter's call go on their own.
    assert sorted(inner.seen, key=str) == sorted([(["p1", "p2", "q1"], None, [10, 11, 30]), (["m"], None, [20]),
                                                  (["r1", "r2", "r3"], "a", [40, 41, 42])], key=str)
    assert (llm.calls, llm.merged_calls) == (4, 3)


def test_merged_calls_respect_max_prompts_and_a_failure_reaches_every_caller():
    inner = Counting()
    llm = CoalescingLLM(inner, max_prompts=3)

    async def three():
        return await asyncio.gather(*(llm.generate([f"x{i}", f"y{i}"], SamplingParams(seed=i * 10)) for i in range(3)))

    asyncio.run(three())
    assert [len(prompts) for prompts, _, _ in inner.seen] == [2, 2, 2]  # 2 + 2 > 3: never merged past the cap
    failing = CoalescingLLM(Counting(fail=True))

    async def two():
        return await asyncio.gather(*(failing.generate(["x"], SamplingParams(seed=i)) for i in range(2)),
                                    return_exceptions=True)

    assert [str(e) for e in asyncio.run(two())] == ["backend down", "backend down"]
    with pytest.raises(ValueError, match="max_prompts"):
        CoalescingLLM(inner, max_prompts=0)
