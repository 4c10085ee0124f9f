"""The server's limits: a bounded wait queue (429 + Retry-After, Overloaded in-process), a prompt
length limit (400, PromptTooLong), a cap on prompts x max_tokens per request (413), bearer-token
authentication (401), unknown adapters through BatchedLLM. A real uvicorn server on 127.0.0.1
over the ScriptedLLM of the integration tests, slowed down so requests pile up."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from mfray.llm.base import SamplingParams
from mfray.llm.openai_backend import LLMRequestError, OpenAIBackend
from mfray.llm.batching import BatchedLLM, DynamicBatcher, Overloaded, PromptTooLong, UnknownModel
from mfray.http_common import ServerThread, is_loopback
from mfray.llm.server import build_app
from tests.integration.test_openai_backend import ScriptedLLM, _text_of


class CountingLLM(ScriptedLLM):
    """ScriptedLLM with a tokenizer stand-in: one token per word."""

    def count_tokens(self, prompt) -> int:
        return len(_text_of(prompt).split())


def _body(text: str, **over) -> dict:
    return {"model": "base", "messages": [{"role": "user", "content": text}], "max_tokens": 4, **over}


async def test_full_queue_is_429_with_retry_after_and_recovers():
    llm = CountingLLM(delay_s=0.5)  # each engine call holds the single slot for 0.5 s
    app = build_app(llm, "base", max_queue=2, batch_window_s=0.0)
    with ServerThread(app) as st:
        async with httpx.AsyncClient(base_url=st.url, timeout=20) as client:
            first = asyncio.create_task(client.post("/v1/chat/completions", json=_body("busy")))
            await asyncio.sleep(0.2)  # the engine is now busy with the first request
            rest = await asyncio.gather(*(client.post("/v1/chat/completions", json=_body(f"q{i}")) for i in range(6)))
            codes = sorted(r.status_code for r in rest)
            assert (await first).status_code == 200
            # Two wait (the bound), the other four are refused at once rather than queued.
            assert codes == [200, 200, 429, 429, 429, 429], [r.text for r in rest]
            refused = next(r for r in rest if r.status_code == 429)
            assert int(refused.headers["retry-after"]) >= 1
            err = refused.json()["error"]
            assert err["type"] == "rate_limit_error" and "limit 2" in err["message"] and "retry" in err["message"]
            health = (await client.get("/health")).json()
            assert health["rejected"] == 4 and health["waiting"] == 0
            # Once drained, requests are served again.
            assert (await client.post("/v1/chat/completions", json=_body("again"))).status_code == 200


async def test_request_is_admitted_whole_or_not_at_all():
    llm = CountingLLM(delay_s=0.3)
    front = BatchedLLM(DynamicBatcher(llm, window_s=0.0, max_queue=3))
    sp = SamplingParams(max_new_tokens=4)
    busy = asyncio.create_task(front.generate(["busy"], sp))
    await asyncio.sleep(0.1)
    waiting = asyncio.create_task(front.generate(["a", "b"], sp))  # 2 of 3 places
    await asyncio.sleep(0)
    with pytest.raises(Overloaded) as err:
        await front.generate(["c", "d"], sp)  # would make 4: refused whole
    assert err.value.retry_after_s >= 1 and "limit 3" in str(err.value)
    assert front.batcher.rejected == 2
    assert len(await waiting) == 2 and len(await busy) == 1
    # Alone at an empty queue, a request larger than the bound is still served.
    assert len(await front.generate([f"p{i}" for i in range(5)], sp)) == 5


def test_overloaded_keeps_its_retry_after_when_pickled():
    import pickle

    e = pickle.loads(pickle.dumps(Overloaded("busy", retry_after_s=7.0)))
    assert isinstance(e, Overloaded) and e.retry_after_s == 7.0 and str(e) == "busy"


def test_too_long_prompt_is_400_naming_both_numbers():
    app = build_app(CountingLLM(delay_s=0.0), "base", max_prompt_tokens=5)
    with ServerThread(app) as st, httpx.Client(base_url=st.url, timeout=10) as client:
        assert client.post("/v1/chat/completions", json=_body("one two three")).status_code == 200
        r = client.post("/v1/chat/completions", json=_body("w " * 9))
        assert r.status_code == 400
        assert r.json()["error"]["message"].startswith("prompt is 9 tokens, limit 5")
        r = client.post("/v1/completions", json={"model": "base", "prompt": ["ok", "w " * 6], "max_tokens": 2})
        assert r.status_code == 400 and "prompt 1 is 6 tokens, limit 5" in r.text
        r = client.post("/v1/score", json={"model": "base", "prompts": ["a b c"], "completions": ["d e f"]})
        assert r.status_code == 400 and "prompt + completion is 6 tokens, limit 5" in r.text


def test_length_limit_needs_a_tokenizer():
    with pytest.raises(ValueError, match="count_tokens"):
        build_app(ScriptedLLM(), "base", max_prompt_tokens=10)


async def test_batched_llm_errors_in_process():
    front = BatchedLLM(DynamicBatcher(CountingLLM(delay_s=0.0)), adapters=["lora"], max_prompt_tokens=3,
                       count_tokens=CountingLLM().count_tokens)
    sp = SamplingParams(max_new_tokens=2, seed=4)
    with pytest.raises(UnknownModel, match="'nope'.*\\['lora'\\]"):
        await front.generate(["x"], sp, adapter="nope")
    with pytest.raises(PromptTooLong, match="4 tokens, limit 3"):
        await front.generate(["a b c d"], sp)
    gens = await front.generate(["x", "y"], sp, adapter="lora")
    assert [g.text for g in gens] == ["echo:x|seed=4", "echo:y|seed=5"]
    assert await front.score(["p"], ["a b"]) == [[-0.101, -0.201]]


def test_prompts_times_max_tokens_is_capped_with_413():
    llm = ScriptedLLM(delay_s=0.0)
    app = build_app(llm, "base", max_request_tokens=10)
    with ServerThread(app) as st, httpx.Client(base_url=st.url, timeout=10) as client:
        # 3 prompts x 4 tokens = 12 > 10: refused before anything reaches the engine.
        r = client.post("/v1/completions", json={"model": "base", "prompt": ["cap a", "cap b", "cap c"], "max_tokens": 4})
        assert r.status_code == 413
        assert r.json()["error"]["message"].startswith("request asks for up to 12 new tokens (3 prompts x max_tokens 4), limit 10")
        assert llm.calls_with("cap a") == []
        # 2 x 5 = 10 is within the cap; one chat prompt with the default max_tokens (256) is not.
        r = client.post("/v1/completions", json={"model": "base", "prompt": ["ok a", "ok b"], "max_tokens": 5})
        assert r.status_code == 200
        r = client.post("/v1/chat/completions", json={"model": "base", "messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 413 and "x max_tokens 256" in r.text
    with pytest.raises(ValueError, match="max_request_tokens"):
        build_app(llm, "base", max_request_tokens=0)


async def test_api_key_guards_every_v1_route(monkeypatch, caplog):
    key = "sk-test-8d1f2c"
    caplog.set_level(logging.DEBUG)
    app = build_app(ScriptedLLM(delay_s=0.0), "base", api_key=key)
    body = {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    with ServerThread(app) as st:
        async with httpx.AsyncClient(base_url=st.url, timeout=10) as client:
            assert (await client.get("/health")).status_code == 200  # probes need no key
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": key},
                            {"Authorization": f"Basic {key}"}, {"Authorization": f"Bearer {key}x"}):
                for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"),
                                     ("POST", "/v1/score"), ("GET", "/v1/no-such-route")):
                    r = await client.request(method, path, json=body, headers=headers)
                    assert r.status_code == 401, (headers, path, r.text)
                    assert r.headers["www-authenticate"] == "Bearer"
                    assert r.json()["error"]["type"] == "authentication_error" and key not in r.text
            good = {"Authorization": f"Bearer {key}"}
            assert (await client.get("/v1/models", headers=good)).status_code == 200
            assert (await client.get("/v1/models", headers={"Authorization": f"bearer {key}"})).status_code == 200
            assert (await client.post("/v1/chat/completions", json=body, headers=good)).status_code == 200
        # The project's client sends the key from the environment variable it is told to read.
        monkeypatch.setenv("MFRAY_TEST_SERVER_KEY", key)
        backend = OpenAIBackend(st.base_url, "base", api_key_env="MFRAY_TEST_SERVER_KEY")
        keyless = OpenAIBackend(st.base_url, "base", api_key_env="MFRAY_TEST_NO_SUCH_VARIABLE")
        try:
            (g,) = await backend.generate(["hello"], SamplingParams(max_new_tokens=3))
            assert g.text == "echo:hello|seed=None"
            with pytest.raises(LLMRequestError, match="HTTP 401") as err:
                await keyless.generate(["hello"], SamplingParams(max_new_tokens=3))
            assert keyless.stats.retries == 0  # a wrong key is not retried
        finally:
            await backend.aclose()
            await keyless.aclose()
    assert key not in str(err.value)
    assert not [rec for rec in caplog.records if key in rec.getMessage()]
    with pytest.raises(ValueError, match="api_key"):
        build_app(ScriptedLLM(), "base", api_key="")


@pytest.mark.parametrize(
    "host, loopback",
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("192.168.1.5", False), ("myhost.example", False)],
)
def test_is_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_a_route_prefix_is_stripped_only_at_a_path_boundary():
    """Mounted under root_path "/a", the path "/api/x" is not "/a" + "pi/x": the token check on
    /api still applies (and "/a/api/x" is /api/x under the prefix)."""
    import asyncio

    from mfray.http_common import BearerAuthMiddleware

    async def status(path: str, root: str) -> int:
        async def app(scope, receive, send):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        sent = []

        async def send(message):
            sent.append(message)

        async def receive():
            return {"type": "http.request", "body": b""}

        scope = {"type": "http", "path": path, "root_path": root, "headers": [], "method": "GET"}
        await BearerAuthMiddleware(app, "k", prefix="/api")(scope, receive, send)
        return sent[0]["status"]

    assert asyncio.run(status("/api/x", "/a")) == 401
    assert asyncio.run(status("/a/api/x", "/a")) == 401
    assert asyncio.run(status("/a/health", "/a")) == 200
