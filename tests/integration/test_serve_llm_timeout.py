"""ServeLLM against a hung replica on a real local Ray + Serve: each handle call is bounded by
timeout_s, cancelled on the replica when it runs out, retried with backoff, counted in
`client_stats`, and then raised as a TimeoutError, so a hung replica cannot stall a sweep.

The deployment is a small stand-in behind LLMServer's handle interface (generate, score) whose
calls never finish: a real engine cannot be made to hang on cue."""

from __future__ import annotations

import asyncio
import pickle
import time

import pytest

from mfray.llm.base import SamplingParams
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hung(local_ray):
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class HungReplica:
        """LLMServer's handle methods, hanging until cancelled; counts starts and cancellations."""

        def __init__(self) -> None:
            self.started = 0
            self.cancelled = 0

        async def generate(self, prompts, sampling, adapter=None, seeds=None):
            return await self._hang()

        async def score(self, prompts, completions, adapter=None):
            return await self._hang()

        async def _hang(self):
            self.started += 1
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise

        async def counts(self) -> dict:
            return {"started": self.started, "cancelled": self.cancelled}

    serve.start(http_options={"host": "127.0.0.1", "port": free_port()})
    try:
        yield serve.run(HungReplica.bind(), name="mfray-hung", route_prefix=None)
    finally:
        serve.shutdown()


async def _counts_once_settled(handle, cancelled: int) -> dict:
    # Cancellation reaches the replica asynchronously: wait (bounded) until it has been seen.
    for _ in range(100):
        counts = await handle.counts.remote()
        if counts["cancelled"] >= cancelled:
            return counts
        await asyncio.sleep(0.05)
    return counts


async def test_hung_replica_times_out_retries_then_raises(hung):
    from mfray.ray.serve_llm import ServeCallStats, ServeLLM

    llm = ServeLLM(hung, timeout_s=1.0, timeout_retries=2, backoff_s=0.1)
    began = time.perf_counter()
    with pytest.raises(TimeoutError, match=r"LLMServer\.generate gave no answer within 1\.0s, 3 times.*timeout_s"):
        # The outer bound only keeps a regression from hanging the test run.
        await asyncio.wait_for(llm.generate(["hello"], SamplingParams(max_new_tokens=2)), 60)
    elapsed = time.perf_counter() - began
    # 3 attempts of 1 s plus backoffs of 0.1 and 0.2 s; the rest is Serve's call overhead.
    assert 3.3 <= elapsed < 6.0, elapsed
    assert llm.client_stats == ServeCallStats(calls=1, retries=2, timeouts=3, overloads=0, failures=1)
    # Every attempt reached the replica and was cancelled there, not left running.
    assert await _counts_once_settled(hung, 3) == {"started": 3, "cancelled": 3}

    # Score calls are bounded the same way; with no timeout retries, one attempt.
    once = ServeLLM(hung, timeout_s=0.5, timeout_retries=0)
    with pytest.raises(TimeoutError, match=r"LLMServer\.score gave no answer within 0\.5s, 1 times"):
        await asyncio.wait_for(once.score(["p"], ["c"]), 60)
    assert once.client_stats == ServeCallStats(calls=1, retries=0, timeouts=1, overloads=0, failures=1)
    assert await _counts_once_settled(hung, 4) == {"started": 4, "cancelled": 4}

    # Still picklable (it is handed to rollout actors), counters and settings included.
    copy = pickle.loads(pickle.dumps(llm))
    assert copy.client_stats == llm.client_stats and (copy.timeout_s, copy.timeout_retries) == (1.0, 2)


def test_timeout_settings_are_checked(hung):
    from mfray.ray.serve_llm import ServeLLM

    with pytest.raises(ValueError, match="timeout_s must be > 0 seconds, or None"):
        ServeLLM(hung, timeout_s=0)
    with pytest.raises(ValueError, match="timeout_retries >= 0"):
        ServeLLM(hung, timeout_retries=-1)
