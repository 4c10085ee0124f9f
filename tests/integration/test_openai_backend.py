"""OpenAIBackend against real HTTP servers on 127.0.0.1: mfray's own server (build_app) over a
ScriptedLLM, and a tiny misbehaving FastAPI app (rate limits, 5xx, 400, slow answers, echo
log-probs). The ScriptedLLM is allowed here only because these tests check request, retry and
batching bookkeeping, never language."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from mfray.llm.base import SEED_MAX, Generation, SamplingParams, prompt_seeds
from mfray.llm.openai_backend import LLMRequestError, OpenAIBackend, completion_logprobs
from mfray.http_common import ServerThread
from mfray.llm.server import build_app

BASE = "base-model"
ADAPTER = "lora-a"


def _text_of(prompt) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


class ScriptedLLM:
    """Deterministic LLM-protocol object that records every call.

    generate -> "echo:<last message>|seed=<per-request seed>"; token counts are word counts.
    score -> [-0.1, -0.2, ...] with one entry per completion word, shifted by the prompt's length
    so a swapped prompt would show; a prompt "__nonfinite__" scores [-inf, nan, inf, -0.5] (what a
    real engine gives when a logit underflows or overflows). A prompt "__raise__" makes generate
    raise; "__error__" makes it return an error Generation."""

    def __init__(self, delay_s: float = 0.02) -> None:
        self.delay_s = delay_s
        self.calls: list[dict] = []
        self._lock = threading.Lock()  # the server thread appends, the test thread reads

    def calls_with(self, marker: str) -> list[dict]:
        with self._lock:
            return [c for c in self.calls if any(marker in _text_of(p) for p in c["prompts"])]

    async def generate(self, prompts, sampling: SamplingParams, adapter=None, seeds=None):
        seeds = prompt_seeds(len(prompts), sampling, seeds)
        with self._lock:
            self.calls.append({"prompts": list(prompts), "sampling": sampling, "adapter": adapter, "seeds": seeds})
        if any(_text_of(p) == "__raise__" for p in prompts):
            raise RuntimeError("scripted engine failure")
        await asyncio.sleep(self.delay_s)  # lets concurrent requests pile up, as on a real engine
        out = []
        for p, seed in zip(prompts, seeds):
            text = _text_of(p)
            if text == "__error__":
                out.append(Generation("", 0, 0, "error", error="scripted error"))
                continue
            reply = f"echo:{text}|seed={seed}"
            out.append(Generation(reply, len(text.split()), len(reply.split()), "stop"))
        return out

    async def score(self, prompts, completions, adapter=None):
        return [
            [float("-inf"), float("nan"), float("inf"), -0.5]
            if _text_of(p) == "__nonfinite__"
            else [round(-0.1 * (j + 1) - 0.001 * len(_text_of(p)), 6) for j in range(len(c.split()))]
            for p, c in zip(prompts, completions)
        ]


# -- servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mfray_server():
    llm = ScriptedLLM()
    with ServerThread(build_app(llm, BASE, max_batch=32, adapters=[ADAPTER])) as st:
        yield st, llm


def _flaky_app() -> FastAPI:
    """Behaviour by the last message / prompt: "flaky:*" 429 twice then 200, "down:*" always
    500, "bad:*" 400, "slow:*" answers after 1.2 s, "html:*" always 200 with an HTML page (a
    proxy's error page), "trunc:*" always 200 with truncated JSON, "junkonce:*" 200 with an HTML
    page the first time, anything else 200. Counts hits per text and records the Authorization
    header. /v1/score behaves by its first prompt and answers one row [-1.0] per prompt."""
    app = FastAPI()
    app.state.hits = {}
    app.state.auth = []

    def ok_chat(text: str) -> dict:
        return {
            "id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": f"ok:{text}"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        }

    async def behave(text: str, request: Request):
        app.state.auth.append(request.headers.get("authorization"))
        n = app.state.hits[text] = app.state.hits.get(text, 0) + 1
        if text.startswith("flaky:") and n <= 2:
            return JSONResponse({"error": {"message": "slow down"}}, 429)
        if text.startswith("down:"):
            return JSONResponse({"error": {"message": "boom"}}, 500)
        if text.startswith("bad:"):
            return JSONResponse({"error": {"message": "bad field"}}, 400)
        if text.startswith("slow:"):
            await asyncio.sleep(1.2)
        if text.startswith("html:") or (text.startswith("junkonce:") and n == 1):
            return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>", 200)
        if text.startswith("trunc:"):
            return Response('{"id": "x", "choices": [{"index": 0, "mess', 200, media_type="application/json")
        return None

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        text = body["messages"][-1]["content"]
        return await behave(text, request) or ok_chat(text)

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await request.json()
        text = body["prompt"]
        if (resp := await behave(text, request)) is not None:
            return resp
        if not body.get("echo"):
            return {"id": "x", "object": "text_completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "text": f"ok:{text}", "finish_reason": "length"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
        # Echo log-probs the way vLLM lays them out: one token per word, leading space attached,
        # the first token without a log-prob.
        tokens, offsets, pos = [], [], 0
        for k, word in enumerate(text.split(" ")):
            tok = word if k == 0 else " " + word
            tokens.append(tok)
            offsets.append(pos)
            pos += len(tok)
        lps = [None] + [-float(i) for i in range(1, len(tokens))]
        return {"id": "x", "object": "text_completion", "created": 0, "model": "m",
                "choices": [{"index": 0, "text": text, "finish_reason": "length",
                             "logprobs": {"tokens": tokens, "text_offset": offsets,
                                          "token_logprobs": lps, "top_logprobs": None}}],
                "usage": {"prompt_tokens": len(tokens), "completion_tokens": 0, "total_tokens": len(tokens)}}

    @app.post("/v1/score")
    async def score(request: Request):
        body = await request.json()
        return await behave(body["prompts"][0], request) or {"logprobs": [[-1.0] for _ in body["prompts"]]}

    return app


@pytest.fixture(scope="module")
def flaky_server():
    app = _flaky_app()
    with ServerThread(app) as st:
        yield st, app


def _chat(text: str) -> list[dict]:
    return [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]


# -- round trips ------------------------------------------------------------------------------


async def test_chat_round_trip_and_token_accounting(mfray_server):
    st, llm = mfray_server
    b = OpenAIBackend(st.base_url, BASE)
    tag = uuid.uuid4().hex[:8]
    prompts = [_chat(f"{tag} hello {i}") for i in range(3)]
    gens = await b.generate(prompts, SamplingParams(max_new_tokens=20))
    assert [g.text for g in gens] == [f"echo:{tag} hello {i}|seed=None" for i in range(3)]
    assert all(g.finish_reason == "stop" and g.error is None and g.latency_s > 0 for g in gens)
    assert [g.prompt_tokens for g in gens] == [3, 3, 3]
    assert [g.completion_tokens for g in gens] == [3, 3, 3]
    assert b.stats.as_dict() == {"requests": 3, "retries": 0, "failures": 0, "prompt_tokens": 9, "completion_tokens": 9}
    # The chat messages reached the engine intact (system message included).
    sent = [p for c in llm.calls_with(tag) for p in c["prompts"]]
    assert sorted(_text_of(p) for p in sent) == [f"{tag} hello {i}" for i in range(3)]
    assert all(p[0] == {"role": "system", "content": "be brief"} for p in sent)
    await b.aclose()


async def test_completions_round_trip_and_first_line(mfray_server):
    st, llm = mfray_server
    b = OpenAIBackend(st.base_url, BASE, mode="completions", send_first_line=True)
    tag = uuid.uuid4().hex[:8]
    gens = await b.generate([f"{tag} a", f"{tag} b"], SamplingParams(first_line=True))
    assert [g.text for g in gens] == [f"echo:{tag} a|seed=None", f"echo:{tag} b|seed=None"]
    assert all(c["sampling"].first_line for c in llm.calls_with(tag))
    with pytest.raises(ValueError, match="chat prompts"):
        await b.generate([_chat("x")], SamplingParams())
    await b.aclose()


async def test_sampling_and_seeds_forwarded(mfray_server):
    st, llm = mfray_server
    b = OpenAIBackend(st.base_url, BASE)
    tag = uuid.uuid4().hex[:8]
    s = SamplingParams(temperature=0.3, top_p=0.9, top_k=7, repetition_penalty=1.1, max_new_tokens=11, seed=100)
    gens = await b.generate([_chat(f"{tag} {i}") for i in range(4)], s)
    # Each request carried seed 100 + its position, whatever batches the server formed.
    assert [g.text.split("|")[1] for g in gens] == ["seed=100", "seed=101", "seed=102", "seed=103"]
    for c in llm.calls_with(tag):
        got = c["sampling"]
        assert (got.temperature, got.top_p, got.top_k, got.repetition_penalty, got.max_new_tokens) == (0.3, 0.9, 7, 1.1, 11)
    # OpenAI proper rejects top_k/repetition_penalty: with them switched off the server uses
    # its OpenAI-neutral defaults.
    b2 = OpenAIBackend(st.base_url, BASE, send_extra_sampling=False)
    tag2 = uuid.uuid4().hex[:8]
    await b2.generate([_chat(tag2)], s)
    (c,) = llm.calls_with(tag2)
    assert (c["sampling"].top_k, c["sampling"].repetition_penalty, c["seeds"]) == (0, 1.0, [100])
    await b.aclose()
    await b2.aclose()


async def test_seed_out_of_range_is_refused_before_sending(mfray_server):
    st, llm = mfray_server
    with pytest.raises(ValueError, match=r"seed must be in 0\.\.9223372036854775807 .*got 18446744073709551616"):
        SamplingParams(seed=2**64)
    b = OpenAIBackend(st.base_url, BASE)
    tag = uuid.uuid4().hex[:8]
    prompts = [_chat(f"{tag} a"), _chat(f"{tag} b")]
    with pytest.raises(ValueError, match=r"seeds\[1\] must be in"):
        await b.generate(prompts, SamplingParams(), seeds=[1, 2**64])
    with pytest.raises(ValueError, match=f"seed {SEED_MAX} \\+ 1 .*use a seed <= {SEED_MAX - 1}"):
        await b.generate(prompts, SamplingParams(seed=SEED_MAX))
    assert b.stats.requests == 0 and llm.calls_with(tag) == []
    # The largest seeds that fit are sent as they are.
    gens = await b.generate(prompts, SamplingParams(seed=SEED_MAX - 1))
    assert [g.text.split("|")[1] for g in gens] == [f"seed={SEED_MAX - 1}", f"seed={SEED_MAX}"]
    await b.aclose()


async def test_adapter_becomes_model_name(mfray_server):
    st, llm = mfray_server
    b = OpenAIBackend(st.base_url, BASE)
    tag = uuid.uuid4().hex[:8]
    await b.generate([_chat(tag)], SamplingParams(), adapter=ADAPTER)
    assert [c["adapter"] for c in llm.calls_with(tag)] == [ADAPTER]
    tag = uuid.uuid4().hex[:8]
    await b.generate([_chat(tag)], SamplingParams())
    assert [c["adapter"] for c in llm.calls_with(tag)] == [None]
    with pytest.raises(LLMRequestError, match="404") as ei:
        await b.generate([_chat("x")], SamplingParams(), adapter="no-such-adapter")
    assert ei.value.status == 404 and st.base_url in str(ei.value)
    await b.aclose()


async def test_dynamic_batching_merges_concurrent_requests(mfray_server):
    st, llm = mfray_server
    b = OpenAIBackend(st.base_url, BASE, max_concurrency=16)
    tag = uuid.uuid4().hex[:8]
    gens = await b.generate([_chat(f"{tag} {i}") for i in range(16)], SamplingParams(seed=5))
    assert [g.text for g in gens] == [f"echo:{tag} {i}|seed={5 + i}" for i in range(16)]
    sizes = [len(c["prompts"]) for c in llm.calls_with(tag)]
    assert sum(sizes) == 16
    assert len(sizes) < 16, sizes
    # Independent single-shot backends (different unseeded clients) are batched too.
    tag = uuid.uuid4().hex[:8]
    backends = [OpenAIBackend(st.base_url, BASE) for _ in range(16)]
    await asyncio.gather(*(x.generate([_chat(f"{tag} {i}")], SamplingParams()) for i, x in enumerate(backends)))
    sizes = [len(c["prompts"]) for c in llm.calls_with(tag)]
    assert sum(sizes) == 16 and len(sizes) < 16, sizes
    # Clients with unrelated seeds (events of a sweep) share engine calls too, each request
    # keeping its own seed.
    tag = uuid.uuid4().hex[:8]
    seeded = await asyncio.gather(
        *(x.generate([_chat(f"{tag} {i}")], SamplingParams(seed=1000 * i + 7)) for i, x in enumerate(backends))
    )
    assert [g.text for (g,) in seeded] == [f"echo:{tag} {i}|seed={1000 * i + 7}" for i in range(16)]
    sizes = [len(c["prompts"]) for c in llm.calls_with(tag)]
    assert sum(sizes) == 16 and len(sizes) < 16, sizes
    for x in [b, *backends]:
        await x.aclose()


async def test_score_endpoint_round_trip(mfray_server):
    st, _ = mfray_server
    b = OpenAIBackend(st.base_url, BASE, score_endpoint=True, score_chunk=2)
    prompts = [_chat("abc"), "plain prompt", _chat("z")]
    completions = ["one two", "three", "four five six"]
    got = await b.score(prompts, completions, adapter=ADAPTER)
    want = await ScriptedLLM().score(prompts, completions)
    assert got == want
    assert b.stats.requests == 2  # two chunks of at most 2
    with pytest.raises(ValueError):
        await b.score(["a"], ["b", "c"])
    await b.aclose()


# -- failure handling -------------------------------------------------------------------------


async def test_retries_then_error_keeps_batch_and_order(flaky_server):
    st, _ = flaky_server
    b = OpenAIBackend(st.base_url, "m", max_retries=3, backoff_s=0.01)
    tag = uuid.uuid4().hex[:8]
    prompts = [_chat(f"flaky:{tag}1"), _chat(f"down:{tag}"), _chat(f"flaky:{tag}2"), _chat(f"ok:{tag}")]
    gens = await b.generate(prompts, SamplingParams())
    assert [g.finish_reason for g in gens] == ["stop", "error", "stop", "stop"]
    assert gens[0].text == f"ok:flaky:{tag}1" and gens[2].text == f"ok:flaky:{tag}2" and gens[3].text == f"ok:ok:{tag}"
    assert "500" in gens[1].error and gens[1].text == ""
    # 2 + 2 rate-limited retries, 3 for the dead one; one failure out of four requests.
    assert b.stats.as_dict() == {"requests": 4, "retries": 7, "failures": 1, "prompt_tokens": 3, "completion_tokens": 6}
    await b.aclose()


async def test_malformed_200_is_retried_then_error_in_place(flaky_server):
    st, _ = flaky_server
    b = OpenAIBackend(st.base_url, "m", max_retries=2, backoff_s=0.01)
    tag = uuid.uuid4().hex[:8]
    prompts = [_chat(f"ok:{tag}"), _chat(f"html:{tag}"), _chat(f"junkonce:{tag}"), _chat(f"trunc:{tag}")]
    gens = await b.generate(prompts, SamplingParams())
    # The two bodies that stay junk fail in place; the rest of the batch is unaffected, and the
    # one that was junk once was retried to success.
    assert [g.finish_reason for g in gens] == ["stop", "error", "stop", "error"]
    assert gens[0].text == f"ok:ok:{tag}" and gens[2].text == f"ok:junkonce:{tag}"
    assert "malformed body (text/html" in gens[1].error and gens[1].text == ""
    assert "malformed body (application/json" in gens[3].error and "after 2 retries" in gens[3].error
    # 2 retries for each dead one, 1 for the junk-once one; two failures out of four requests.
    assert b.stats.as_dict() == {"requests": 4, "retries": 5, "failures": 2, "prompt_tokens": 2, "completion_tokens": 4}
    assert [g.retries for g in gens] == [0, 2, 1, 2]  # each generation carries its own retries
    # Completions (string prompts) the same way.
    (g,) = await b.generate([f"junkonce:{tag}-text"], SamplingParams())
    assert g.finish_reason == "length" and g.text == f"ok:junkonce:{tag}-text"
    assert b.stats.retries == 6
    await b.aclose()


async def test_malformed_200_on_score_is_retried_then_raises(flaky_server):
    st, _ = flaky_server
    tag = uuid.uuid4().hex[:8]
    b = OpenAIBackend(st.base_url, "m", max_retries=2, backoff_s=0.01, score_endpoint=True)
    assert await b.score([f"junkonce:{tag}", "x"], ["a", "b"]) == [[-1.0], [-1.0]]
    assert (b.stats.retries, b.stats.failures) == (1, 0)
    with pytest.raises(LLMRequestError, match="score request failed: HTTP 200 with a malformed body"):
        await b.score([f"html:{tag}"], ["a"])
    assert (b.stats.requests, b.stats.retries, b.stats.failures) == (2, 3, 1)
    # Over /v1/completions with echo, too.
    echo = OpenAIBackend(st.base_url, "m", max_retries=2, backoff_s=0.01)
    assert await echo.score([f"junkonce:{tag} the"], [" cat sat"]) == [[-2.0, -3.0]]
    assert echo.stats.retries == 1
    with pytest.raises(LLMRequestError, match="malformed body"):
        await echo.score([f"trunc:{tag}"], [" x"])
    await b.aclose()
    await echo.aclose()


async def test_client_error_raises_with_status(flaky_server):
    st, app = flaky_server
    b = OpenAIBackend(st.base_url, "m", max_retries=3, backoff_s=0.01)
    with pytest.raises(LLMRequestError) as ei:
        await b.generate([_chat(f"ok:{uuid.uuid4().hex}"), _chat(f"bad:{uuid.uuid4().hex}")], SamplingParams())
    assert ei.value.status == 400
    assert "HTTP 400" in str(ei.value) and st.base_url in str(ei.value) and "send_extra_sampling" in str(ei.value)
    assert b.stats.retries == 0  # a 400 is never retried
    await b.aclose()


async def test_timeout_is_retried_then_error(flaky_server):
    st, _ = flaky_server
    b = OpenAIBackend(st.base_url, "m", timeout_s=0.5, max_retries=1, backoff_s=0.01)
    tag = uuid.uuid4().hex[:8]
    t0 = time.perf_counter()
    gens = await b.generate([_chat(f"slow:{tag}"), _chat(f"ok:{tag}")], SamplingParams())
    elapsed = time.perf_counter() - t0
    assert gens[0].finish_reason == "error" and "Timeout" in gens[0].error
    assert gens[1].finish_reason == "stop"
    assert b.stats.retries == 1 and b.stats.failures == 1
    assert elapsed < 3.0
    await b.aclose()


async def test_api_key_from_env(flaky_server, monkeypatch):
    st, app = flaky_server
    monkeypatch.setenv("MFRAY_TEST_KEY", "sk-test-123")
    b = OpenAIBackend(st.base_url, "m", api_key_env="MFRAY_TEST_KEY")
    await b.generate([_chat(f"ok:{uuid.uuid4().hex}")], SamplingParams())
    assert app.state.auth[-1] == "Bearer sk-test-123"
    assert "sk-test-123" not in repr(b)
    monkeypatch.delenv("MFRAY_TEST_KEY")
    b2 = OpenAIBackend(st.base_url, "m", api_key_env="MFRAY_TEST_KEY")
    await b2.generate([_chat(f"ok:{uuid.uuid4().hex}")], SamplingParams())
    assert app.state.auth[-1] == "Bearer EMPTY"
    await b.aclose()
    await b2.aclose()


async def test_completions_finish_reason_length(flaky_server):
    st, _ = flaky_server
    b = OpenAIBackend(st.base_url, "m")
    (g,) = await b.generate([f"ok:{uuid.uuid4().hex}"], SamplingParams())
    assert g.finish_reason == "length" and g.text.startswith("ok:ok:")
    await b.aclose()


# -- score over echo --------------------------------------------------------------------------


async def test_score_via_echo_offsets(flaky_server):
    st, _ = flaky_server
    b = OpenAIBackend(st.base_url, "m")
    tag = uuid.uuid4().hex[:8]
    # Tokens: "ok:<tag>", " the", " cat", " sat" -> log-probs None, -1, -2, -3.
    got = await b.score([f"ok:{tag} the", f"ok:{tag}"], [" cat sat", " the cat sat"])
    assert got == [[-2.0, -3.0], [-1.0, -2.0, -3.0]]
    with pytest.raises(NotImplementedError, match="/v1/score"):
        await b.score([_chat("x")], ["y"])
    await b.aclose()


def test_completion_logprobs_boundaries():
    tokens = ["Hel", "lo", " wor", "ld", "!"]
    offsets = [0, 3, 5, 9, 11]
    lps = [None, -1.0, -2.0, -3.0, -4.0]
    # Boundary inside " wor": the straddling token counts as completion.
    assert completion_logprobs(tokens, offsets, lps, start=7, end=12) == [-2.0, -3.0, -4.0]
    # Tokens past the echoed text (generated) are dropped.
    assert completion_logprobs(tokens, offsets, lps, start=5, end=11) == [-2.0, -3.0]
    # Empty prompt: the first token has no log-prob.
    assert completion_logprobs(tokens, offsets, lps, start=0, end=5) == [-1.0]
