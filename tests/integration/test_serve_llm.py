"""The LLMServer Serve deployment on a real local Ray + Serve, over the tiny random Llama (real
tokenizer and chat template): handle calls give exactly the local engine's generations and scores
for the same seeds, concurrent calls are merged into few engine calls, the OpenAI-compatible API
answers through Serve's HTTP proxy on 127.0.0.1 (OpenAIBackend), HTTP and handle requests share
one batcher, and unknown models (404), over-long prompts (400) and overload (429 + Retry-After;
Overloaded on a handle) are refused with clear errors."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from mfray.llm.base import SamplingParams
from mfray.llm.batching import Overloaded, PromptTooLong, UnknownModel
from mfray.llm.openai_backend import OpenAIBackend
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

MAX_PROMPT_TOKENS = 200
ROLES = ("ib_policy", "ib_mean_field")  # the adapter names the mf_ibtune method requests


def chat(i: int) -> list[dict]:
    topic = ["The city says the water is safe.", "Free phones for everyone who reposts!",
             "A viral post claims the bridge will close for a year."][i % 3] + " More detail." * (i % 4)
    return [
        {"role": "system", "content": "You reply to social media posts."},
        {"role": "user", "content": f"[{i}] Write a one-line reply to this post: {topic}"},
    ]


class Served:
    def __init__(self, port: int, handle, busy_handle) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.handle = handle  # the main app: generous limits
        self.busy_handle = busy_handle  # a second app whose wait queue holds one prompt


@pytest.fixture(scope="module")
def served(tiny_model_dir, tiny_adapters):
    import ray
    from ray import serve
    from ray.serve.api import RunTarget  # serve.run_many's target (a DeveloperAPI)

    from mfray.ray.serve_llm import build_llm_app
    from mfray.ray.sweep import SweepConfig, serve_actor_options

    # The two roles as LoRA adapters of the base with random non-zero B (tests/adapters.py): each
    # changes the output, so a request answered by the wrong adapter, or by none, shows.
    adapters = {name: tiny_adapters[name] for name in ROLES}
    if ray.is_initialized():  # another module's Ray must not leak into this one
        ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=int(1e9), include_dashboard=False, log_to_driver=False)
    try:
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        common = dict(model_path=str(tiny_model_dir), model_name="tiny")
        # A generous batching window makes merging robust on a slow machine. The main replica
        # runs at the nice value a sweep's `llm_niceness` asks for (Ray's default is 15).
        sweep_options = serve_actor_options(SweepConfig(llm_niceness=3))
        main = build_llm_app(batch_wait_s=0.05, max_prompt_tokens=MAX_PROMPT_TOKENS, max_queue=64, adapters=adapters,
                             options={"ray_actor_options": sweep_options}, **common)
        busy = build_llm_app(max_queue=1, options={"ray_actor_options": {"num_cpus": 1}}, **common)
        # Both applications start together (each replica loads its own engine).
        handles = serve.run_many([RunTarget(main, "mfray-llm", "/"), RunTarget(busy, "mfray-llm-busy", "/busy")])
        yield Served(port, *handles)
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture
def llm(served):
    from mfray.ray.serve_llm import ServeLLM

    return ServeLLM(served.handle, max_retries=0)


# -- 1. the handle gives the local engine's results -------------------------------------------


async def test_handle_generate_and_score_equal_local_engine(llm, tiny_engine, tiny_adapter_engine):
    prompts = [chat(i) for i in range(8)]
    sp = SamplingParams(seed=5, max_new_tokens=6)
    remote = await llm.generate(prompts, sp)
    direct = tiny_engine.generate_sync(prompts, sp)
    assert [g.text for g in remote] == [g.text for g in direct]
    assert [(g.prompt_tokens, g.completion_tokens) for g in remote] == [(g.prompt_tokens, g.completion_tokens) for g in direct]
    assert all(g.error is None and g.completion_tokens > 0 for g in remote)
    # Through a role's adapter: exactly what the engine gives with that adapter, not the base.
    via_adapter = [g.text for g in await llm.generate(prompts, sp, adapter="ib_policy")]
    assert via_adapter == [g.text for g in tiny_adapter_engine.generate_sync(prompts, sp, adapter="ib_policy")]
    assert via_adapter != [g.text for g in direct]
    # The seed matters, so the equality above is not vacuous.
    assert [g.text for g in tiny_engine.generate_sync(prompts, SamplingParams(seed=6, max_new_tokens=6))] != [g.text for g in direct]

    completions = ["Sounds fake.", "ok", "Where is the source?", "Great news!", "No.", "I doubt it.", "Hm", "Yes!"]
    scored = await llm.score(prompts, completions)
    expected = tiny_engine.score_sync(prompts, completions)
    for r, d in zip(scored, expected, strict=True):
        assert len(r) == len(d) > 0
        np.testing.assert_allclose(r, d, atol=1e-4)


async def test_16_concurrent_handle_calls_share_engine_calls(llm, tiny_engine):
    prompts = [chat(i) for i in range(16)]
    before = await llm.stats()
    # Each call is one event's request with its own unrelated seed, as in a sweep.
    seeds = [1000 * i + 7 for i in range(16)]
    results = await asyncio.gather(
        *(llm.generate([p], SamplingParams(seed=seed, max_new_tokens=5)) for p, seed in zip(prompts, seeds))
    )
    after = await llm.stats()
    direct = tiny_engine.generate_sync(prompts, SamplingParams(max_new_tokens=5), seeds=seeds)
    assert [r[0].text for r in results] == [g.text for g in direct]
    assert after["requests"] - before["requests"] == 16
    assert after["batches"] - before["batches"] < 16  # merged by the replica's batcher
    assert after["niceness"] == 3  # the sweep's llm_niceness reached the replica's process


# -- 2. HTTP through Serve's proxy, sharing the batcher -----------------------------------------


async def test_openai_api_through_the_serve_proxy(served, llm, tiny_engine):
    prompts = [chat(i) for i in range(4)]
    sp = SamplingParams(seed=9, max_new_tokens=6)
    before = await llm.stats()
    backend = OpenAIBackend(served.url + "/v1", "tiny", max_concurrency=4)
    try:
        remote = await backend.generate(prompts, sp)
    finally:
        await backend.aclose()
    assert [g.text for g in remote] == [g.text for g in tiny_engine.generate_sync(prompts, sp)]
    assert (await llm.stats())["requests"] - before["requests"] == 4  # the handle path's batcher
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        models = (await client.get("/v1/models")).json()
        assert [m["id"] for m in models["data"]] == ["tiny", *ROLES]
        r = await client.post("/v1/completions", json={"model": "ib_mean_field", "prompt": ["Hello", "Bye"], "max_tokens": 3})
        assert r.status_code == 200 and len(r.json()["choices"]) == 2


async def test_each_request_is_answered_by_its_own_adapter(served, llm, tiny_adapter_engine):
    """Concurrent requests for the base and for each role's adapter, over the handle and over
    HTTP, meet in the replica's one batcher. The adapters' weights change the output, so base,
    ib_policy and ib_mean_field differ, and each request must get what a direct engine call with
    its own adapter gives: one answered by the wrong adapter, or by none, fails."""
    prompts = [chat(i) for i in range(3)]
    greedy = SamplingParams(temperature=0, max_new_tokens=6)
    completions = ["Sounds fake.", "Where is the source?", "ok"]
    models = [None, *ROLES]
    want = {a: [g.text for g in tiny_adapter_engine.generate_sync(prompts, greedy, adapter=a)] for a in models}
    want_scores = {a: tiny_adapter_engine.score_sync(prompts, completions, adapter=a) for a in models}
    assert len({tuple(texts) for texts in want.values()}) == len(models), want  # the adapters matter
    for a in ROLES:
        gap = max(float(np.max(np.abs(np.subtract(x, y)))) for x, y in zip(want_scores[a], want_scores[None]))
        assert gap > 0.05, a

    generating = OpenAIBackend(served.url + "/v1", "tiny", max_concurrency=8)
    scoring = OpenAIBackend(served.url + "/v1", "tiny", score_endpoint=True)
    try:
        order = [*models, "tiny", *reversed(models)]  # "tiny", the base model's name, is the base
        texts = await asyncio.gather(
            *(llm.generate(prompts, greedy, adapter=a) for a in order),
            *(generating.generate(prompts, greedy, adapter=a) for a in order),
        )
        scores = await asyncio.gather(
            *(llm.score(prompts, completions, adapter=a) for a in order),
            *(scoring.score(prompts, completions, adapter=a) for a in order),
        )
    finally:
        await generating.aclose()
        await scoring.aclose()
    for a, gens, rows in zip(order * 2, texts, scores, strict=True):
        a = None if a == "tiny" else a
        assert [g.text for g in gens] == want[a], a
        for r, d in zip(rows, want_scores[a], strict=True):
            np.testing.assert_allclose(r, d, atol=1e-4, err_msg=str(a))


# -- 3. clear errors ----------------------------------------------------------------------------


async def test_unknown_model_and_long_prompt(served, llm):
    long_chat = [{"role": "user", "content": "word " * 400}]
    async with httpx.AsyncClient(base_url=served.url, timeout=30) as client:
        r = await client.post("/v1/chat/completions", json={"model": "gpt-9", "messages": chat(0), "max_tokens": 2})
        assert r.status_code == 404 and "'gpt-9'" in r.text and "tiny" in r.text
        r = await client.post("/v1/chat/completions", json={"model": "tiny", "messages": long_chat, "max_tokens": 2})
        assert r.status_code == 400
        assert f"tokens, limit {MAX_PROMPT_TOKENS}" in r.json()["error"]["message"]
    sp = SamplingParams(max_new_tokens=2)
    with pytest.raises(UnknownModel, match="'sft'.*ib_policy"):
        await llm.generate([chat(0)], sp, adapter="sft")
    with pytest.raises(PromptTooLong, match=f"limit {MAX_PROMPT_TOKENS}"):
        await llm.generate([chat(0), long_chat], sp)


async def test_overload_is_429_with_retry_after_and_overloaded_on_the_handle(served):
    from mfray.ray.serve_llm import ServeLLM

    url = served.url + "/busy"
    async with httpx.AsyncClient(timeout=60) as client:
        # Keep the engine busy for about 3 s with one request of 4 prompts (alone, it is admitted
        # whole although the bound is 1).
        busy = asyncio.create_task(client.post(url + "/v1/completions", json={
            "model": "tiny", "prompt": [f"story {i}" for i in range(4)], "max_tokens": 120, "temperature": 1.0}))
        await asyncio.sleep(0.7)
        # Four HTTP requests and a handle call compete for the one place in the wait queue.
        strict = ServeLLM(served.busy_handle, max_retries=0)
        burst = [asyncio.create_task(client.post(url + "/v1/chat/completions", json={
            "model": "tiny", "messages": chat(i), "max_tokens": 3})) for i in range(4)]
        handled = asyncio.create_task(strict.generate([chat(0)], SamplingParams(max_new_tokens=2)))
        for _ in range(300):  # the four refusals come back at once; the admitted one waits
            if sum(t.done() for t in [*burst, handled]) >= 4:
                break
            await asyncio.sleep(0.01)
        assert not busy.done(), "the busy request finished too early to test overload"
        # A patient client, arriving while the queue is still full, retries (honouring
        # Retry-After) until the engine has room.
        rejected_before = (await strict.stats())["rejected"]
        patient = ServeLLM(served.busy_handle, max_retries=8, backoff_s=0.2)
        waited = await patient.generate([chat(1)], SamplingParams(max_new_tokens=2))
        assert (await strict.stats())["rejected"] > rejected_before  # it was refused at least once
        http = await asyncio.gather(*burst)
        (refused,) = await asyncio.gather(handled, return_exceptions=True)
        assert (await busy).status_code == 200
    codes = sorted(r.status_code for r in http)
    # One prompt may wait (the bound is 1): the burst and the handle calls compete for that place.
    assert codes.count(429) >= 3 and set(codes) <= {200, 429}, [r.text for r in http]
    for r in http:
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert "overloaded" in r.json()["error"]["message"]
    if not isinstance(refused, list):  # unless the handle call got the one place in the queue
        assert isinstance(refused, Overloaded) and "limit 1" in str(refused) and refused.retry_after_s >= 1
    assert codes.count(429) + (not isinstance(refused, list)) == 4
    assert len(waited) == 1 and waited[0].error is None  # retried past the overload
    # The client counted each refusal it retried, and no failure.
    c = patient.client_stats
    assert (c.calls, c.failures, c.timeouts) == (1, 0, 0) and c.retries == c.overloads >= 1
    if not isinstance(refused, list):
        assert (strict.client_stats.overloads, strict.client_stats.failures) == (1, 1)
    stats = await strict.stats()
    assert stats["rejected"] >= 3 and stats["waiting"] == 0


def test_missing_model_fails_the_deployment_with_the_reason(served, tmp_path):
    from ray import serve

    from mfray.ray.serve_llm import deploy_llm_server

    missing = tmp_path / "no-such-model"
    try:
        with pytest.raises(RuntimeError) as err:
            deploy_llm_server(model_path=str(missing), name="mfray-llm-missing", route_prefix="/missing",
                              http_port=served.port, options={"ray_actor_options": {"num_cpus": 0}})
        # Serve's own message names only the deployment; the replica's reason is appended.
        assert f"model path {missing} does not exist" in str(err.value), str(err.value)
    finally:
        serve.delete("mfray-llm-missing")
