"""mfray's OpenAI-compatible server: request validation, error shapes, batching plan. Runs a real
uvicorn server on 127.0.0.1 over the ScriptedLLM of the integration tests (bookkeeping only)."""

from __future__ import annotations

import asyncio
import logging
import math
import re

import httpx
import pytest

from mfray.llm.base import SEED_MAX, SamplingParams
from mfray.llm.openai_backend import OpenAIBackend
from mfray.llm.batching import _Item, plan_batches
from mfray.http_common import ServerThread
from mfray.llm.server import MAX_TOKENS_LIMIT, build_app
from tests.integration.test_openai_backend import ScriptedLLM

BASE = "base-model"
ADAPTER = "lora-a"


@pytest.fixture(scope="module")
def server():
    llm = ScriptedLLM(delay_s=0.0)
    with ServerThread(build_app(llm, BASE, adapters=[ADAPTER], max_body_bytes=100_000)) as st:
        with httpx.Client(base_url=st.url, timeout=10) as client:
            yield client, llm


def _chat_body(**over) -> dict:
    body = {"model": BASE, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}
    body.update(over)
    return body


def _error_message(r: httpx.Response) -> str:
    err = r.json()["error"]
    assert set(err) >= {"message", "type"}
    return err["message"]


def test_health_and_models(server):
    client, _ = server
    assert client.get("/health").json()["status"] == "ok"
    data = client.get("/v1/models").json()
    assert [m["id"] for m in data["data"]] == [BASE, ADAPTER]


def test_chat_ok_with_usage(server):
    client, _ = server
    r = client.post("/v1/chat/completions", json=_chat_body(seed=3))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "echo:hi|seed=3"}
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}


def test_chat_accepts_text_parts(server):
    client, _ = server
    msgs = [{"role": "user", "content": [{"type": "text", "text": "a "}, {"type": "text", "text": "b"}]}]
    r = client.post("/v1/chat/completions", json=_chat_body(messages=msgs))
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "echo:a b|seed=None"


@pytest.mark.parametrize(
    "override, field",
    [
        ({"temperature": -1}, "temperature"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": MAX_TOKENS_LIMIT + 1}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "role"),
        ({"repetition_penalty": 0}, "repetition_penalty"),
        ({"top_k": -2}, "top_k"),
        ({"seed": 2**64}, "seed"),
        ({"seed": SEED_MAX + 1}, "seed"),
        ({"seed": -1}, "seed"),
        ({"lookup": -1}, "lookup"),
        ({"lookup": 65}, "lookup"),
    ],
)
def test_bad_values_are_400_naming_the_field(server, override, field):
    client, _ = server
    r = client.post("/v1/chat/completions", json=_chat_body(**override))
    assert r.status_code == 400, r.text
    assert field in _error_message(r)


def test_missing_model_and_broken_json_are_400(server):
    client, _ = server
    r = client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 400 and "model" in _error_message(r)
    r = client.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400


def test_unknown_model_is_404_listing_known(server):
    client, _ = server
    r = client.post("/v1/chat/completions", json=_chat_body(model="gpt-99"))
    assert r.status_code == 404
    msg = _error_message(r)
    assert "gpt-99" in msg and BASE in msg and ADAPTER in msg


@pytest.mark.parametrize(
    "override, words",
    [({"stream": True}, "stream"), ({"n": 2}, "n=2"), ({"stop": ["\n"]}, "stop"), ({"presence_penalty": 0.5}, "penalt")],
)
def test_unsupported_options_are_400(server, override, words):
    client, _ = server
    r = client.post("/v1/chat/completions", json=_chat_body(**override))
    assert r.status_code == 400 and words in _error_message(r)


def test_body_too_large_is_413(server):
    client, _ = server
    big = _chat_body(messages=[{"role": "user", "content": "x" * 200_000}])
    r = client.post("/v1/chat/completions", json=big)
    assert r.status_code == 413 and "exceeds" in _error_message(r)

    # Chunked upload without Content-Length is counted as it arrives.
    def chunks():
        yield b'{"model": "base-model", "messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"y" * 10_000
        yield b'"}]}'

    r = client.post("/v1/chat/completions", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_completions_list_prompt_keeps_order(server):
    client, llm = server
    r = client.post("/v1/completions", json={"model": ADAPTER, "prompt": ["p one", "p two", "p three"], "seed": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [c["text"] for c in body["choices"]] == ["echo:p one|seed=10", "echo:p two|seed=11", "echo:p three|seed=12"]
    assert [c["index"] for c in body["choices"]] == [0, 1, 2]
    assert body["usage"]["prompt_tokens"] == 6
    # Consecutive seeds from one request went to the engine as one batch on the adapter.
    (call,) = [c for c in llm.calls if "p one" in c["prompts"]]
    assert call["prompts"] == ["p one", "p two", "p three"] and call["adapter"] == ADAPTER


def test_completions_refuses_echo_and_empty(server):
    client, _ = server
    r = client.post("/v1/completions", json={"model": BASE, "prompt": "x", "echo": True, "logprobs": 1})
    assert r.status_code == 400 and "/v1/score" in _error_message(r)
    r = client.post("/v1/completions", json={"model": BASE, "prompt": []})
    assert r.status_code == 400


def test_seed_plus_prompt_index_must_stay_in_range(server):
    client, _ = server
    # Prompt i gets seed + i: the last of two prompts would get SEED_MAX + 1.
    r = client.post("/v1/completions", json={"model": BASE, "prompt": ["a", "b"], "seed": SEED_MAX})
    assert r.status_code == 400 and f"seed {SEED_MAX} + 1" in _error_message(r)
    r = client.post("/v1/completions", json={"model": BASE, "prompt": ["a"], "seed": SEED_MAX})
    assert r.status_code == 200 and r.json()["choices"][0]["text"] == f"echo:a|seed={SEED_MAX}"


def test_engine_failures_are_5xx_without_exception_text(server, caplog):
    client, _ = server
    caplog.set_level(logging.ERROR, logger="mfray.llm.server")
    r = client.post("/v1/chat/completions", json=_chat_body(messages=[{"role": "user", "content": "__raise__"}]))
    assert r.status_code == 500
    msg = _error_message(r)
    # A generic message and an id; the exception's type and text stay in the server log.
    assert "scripted engine failure" not in r.text and "RuntimeError" not in r.text
    (error_id,) = re.findall(r"error id ([0-9a-f]{12})", msg)
    logged = [rec for rec in caplog.records if error_id in rec.getMessage()]
    assert len(logged) == 1 and "scripted engine failure" in str(logged[0].exc_info[1])
    r = client.post("/v1/chat/completions", json=_chat_body(messages=[{"role": "user", "content": "__error__"}]))
    assert r.status_code == 502 and "scripted error" not in r.text
    (error_id,) = re.findall(r"error id ([0-9a-f]{12})", _error_message(r))
    assert any(error_id in rec.getMessage() and "scripted error" in rec.getMessage() for rec in caplog.records)
    # The server still works afterwards.
    assert client.post("/v1/chat/completions", json=_chat_body()).status_code == 200


async def test_non_finite_logprobs_are_null(server):
    client, _ = server
    body = {"model": BASE, "prompts": ["__nonfinite__", "ab"], "completions": ["w x y z", "x y"]}
    async with httpx.AsyncClient(base_url=client.base_url, timeout=10) as http:
        r = await http.post("/v1/score", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["logprobs"] == [[None, None, None, -0.5], [-0.102, -0.202]]
    # The client reads null as NaN: no number is made up for a value that was not finite.
    backend = OpenAIBackend(str(client.base_url) + "/v1", BASE, score_endpoint=True)
    try:
        (row, other) = await backend.score(body["prompts"], body["completions"])
    finally:
        await backend.aclose()
    assert [math.isnan(x) for x in row] == [True, True, True, False] and row[3] == -0.5
    assert other == [-0.102, -0.202]


def test_score_endpoint(server):
    client, _ = server
    body = {"model": BASE, "prompts": ["ab", [{"role": "user", "content": "c"}]], "completions": ["x y", "z"]}
    r = client.post("/v1/score", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["logprobs"] == [[-0.102, -0.202], [-0.101]]
    r = client.post("/v1/score", json={**body, "completions": ["x"]})
    assert r.status_code == 400 and "completions" in _error_message(r)
    r = client.post("/v1/score", json={**body, "model": "nope"})
    assert r.status_code == 404


# -- the batching plan ------------------------------------------------------------------------


def _items(seeds, **sampling):
    loop = asyncio.new_event_loop()
    try:
        return [_Item(f"p{i}", SamplingParams(seed=s, **sampling), None, loop.create_future()) for i, s in enumerate(seeds)]
    finally:
        loop.close()


def test_plan_merges_requests_whatever_their_seeds():
    items = _items([12, 10, 11, 20, None, 11])
    ((sampling, adapter, batch),) = plan_batches(items, max_batch=32)
    # One engine call, in arrival order; each request keeps its own seed (duplicates included),
    # and the call's own sampling carries none.
    assert sampling.seed is None and adapter is None
    assert [it.prompt for it in batch] == ["p0", "p1", "p2", "p3", "p4", "p5"]
    assert [it.sampling.seed for it in batch] == [12, 10, 11, 20, None, 11]


def test_plan_splits_on_sampling_adapter_and_max_batch():
    a = _items([None] * 5, temperature=0.5)
    b = _items([None] * 2, temperature=0.7)
    c = _items([None] * 1, temperature=0.5)
    c[0].adapter = ADAPTER
    plan = plan_batches(a + b + c, max_batch=2)
    sizes = sorted((s.temperature, adapter or "", len(batch)) for s, adapter, batch in plan)
    assert sizes == [(0.5, "", 1), (0.5, "", 2), (0.5, "", 2), (0.5, ADAPTER, 1), (0.7, "", 2)]
    # Batches keep arrival order.
    first = [batch for s, adapter, batch in plan if s.temperature == 0.5 and adapter is None]
    assert [it.prompt for batch in first for it in batch] == ["p0", "p1", "p2", "p3", "p4"]
    # Seeded requests are cut at max_batch the same way.
    plan = plan_batches(_items([9, 3, 7, 1, 5]), max_batch=2)
    assert [[it.sampling.seed for it in batch] for _, _, batch in plan] == [[9, 3], [7, 1], [5]]
