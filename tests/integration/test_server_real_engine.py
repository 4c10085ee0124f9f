"""mfray's OpenAI-compatible server over the real LocalEngine, end to end over HTTP on 127.0.0.1:
OpenAIBackend against ServerThread(build_app(...)) must give exactly what the engine gives
directly (seeds included, across the server's dynamic batching), concurrent requests are served
in order, a request with a bad seed is refused without failing its batch, and `mfray serve` works
as a real process bound to loopback only, with its limits and API key in force.

The tiny random Llama (real tokenizer and chat template) keeps this fast; the real default model
is used once, for a single chat completion."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from mfray.http_common import ServerThread
from mfray.llm.base import SamplingParams
from mfray.llm.openai_backend import OpenAIBackend
from mfray.llm.server import build_app
from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]

TOPICS = [
    "The city says the water is safe.",
    "A viral post claims the bridge will close for a year because of cracks found by inspectors.",
    "Free phones for everyone who reposts!",
    "Scientists report a new species of frog.",
]


def chat(i: int) -> list[dict]:
    # Distinct prompts of different lengths: batches are padded, and a swapped answer shows.
    topic = TOPICS[i % len(TOPICS)] + " More detail." * (i % 5)
    return [
        {"role": "system", "content": "You reply to social media posts."},
        {"role": "user", "content": f"[{i}] Write a one-line reply to this post: {topic}"},
    ]


@pytest.fixture(scope="module")
def tiny_server(tiny_engine):
    app = build_app(tiny_engine, "tiny")
    with ServerThread(app) as st:
        st.app = app  # for the batcher's counters
        yield st


# -- 1. same generations and scores as the engine itself -------------------------------------


@pytest.mark.parametrize(
    "max_batch, expected_batches",
    [(32, 1), (3, 3)],  # merged into one engine call; split into seed runs 5-7, 8-10, 11-12
    ids=["merged", "split"],
)
async def test_chat_batch_through_server_equals_engine(tiny_engine, max_batch, expected_batches):
    prompts = [chat(i) for i in range(8)]
    sp = SamplingParams(seed=5, max_new_tokens=6)
    # A generous batching window makes the batch count deterministic (all 8 requests arrive
    # within it); the texts must match whatever batches the server forms.
    app = build_app(tiny_engine, "tiny", max_batch=max_batch, batch_window_s=0.3)
    with ServerThread(app) as st:
        backend = OpenAIBackend(st.base_url, "tiny", mode="chat")
        try:
            remote = await backend.generate(prompts, sp)
        finally:
            await backend.aclose()
    direct = tiny_engine.generate_sync(prompts, sp)

    assert len(remote) == 8
    assert all(g.error is None and g.finish_reason != "error" for g in remote)
    # At least the expected number of engine calls; more when a slow machine lets requests miss
    # the window (timing, not correctness: the texts below must match either way).
    assert app.state.batcher.items == 8 and app.state.batcher.batches >= expected_batches
    # Request i carried seed 5 + i; the server reassembled consecutive seeds into batches
    # seeded at their first request, so each prompt got exactly the sample the engine gives it
    # at position i of one direct call.
    assert [g.text for g in remote] == [g.text for g in direct]
    assert [g.prompt_tokens for g in remote] == [g.prompt_tokens for g in direct]
    assert [g.completion_tokens for g in remote] == [g.completion_tokens for g in direct]
    assert all(g.prompt_tokens > 0 and g.completion_tokens > 0 for g in remote)
    # The seed really matters (otherwise the equality above would prove little).
    other = tiny_engine.generate_sync(prompts, SamplingParams(seed=6, max_new_tokens=6))
    assert [g.text for g in other] != [g.text for g in direct]


async def test_score_endpoint_equals_engine(tiny_engine, tiny_server):
    prompts = [chat(i) for i in range(6)]
    completions = ["Sounds fake to me.", "ok", "Where is the source?", "Great news!", "No.", "I doubt it, honestly."]
    backend = OpenAIBackend(tiny_server.base_url, "tiny", score_endpoint=True, score_chunk=4)  # 2 chunks
    try:
        remote = await backend.score(prompts, completions)
    finally:
        await backend.aclose()
    direct = tiny_engine.score_sync(prompts, completions)
    assert len(remote) == len(direct) == 6
    for r, d in zip(remote, direct):
        assert len(r) == len(d) > 0
        np.testing.assert_allclose(r, d, atol=1e-4)


async def test_requests_for_each_adapter_get_that_adapters_output(tiny_adapter_engine, tiny_adapters):
    """The `model` field routes a request to a LoRA adapter. The test adapters' weights change
    the output (random non-zero B), so base and each adapter differ, and concurrent requests for
    all of them, batched together by the server, must each equal a direct engine call with their
    own adapter: a request answered by the wrong adapter, or by none, fails."""
    names = list(tiny_adapters)
    models = [None, *names]
    prompts = [chat(i) for i in range(3)]
    completions = ["Sounds fake to me.", "Where is the source?", "ok"]
    greedy = SamplingParams(temperature=0, max_new_tokens=6)
    sampled = SamplingParams(seed=21, max_new_tokens=6)
    want = {(a, sp.seed): [g.text for g in tiny_adapter_engine.generate_sync(prompts, sp, adapter=a)]
            for a in models for sp in (greedy, sampled)}
    want_scores = {a: tiny_adapter_engine.score_sync(prompts, completions, adapter=a) for a in models}
    for sp in (greedy, sampled):  # the adapters matter
        assert len({tuple(want[a, sp.seed]) for a in models}) == len(models), want

    app = build_app(tiny_adapter_engine, "tiny", adapters=names, batch_window_s=0.3)
    with ServerThread(app) as st:
        backend = OpenAIBackend(st.base_url, "tiny", max_concurrency=16, score_endpoint=True)
        try:
            calls = [(a, sp) for sp in (greedy, sampled) for a in [*models, "tiny"]]  # "tiny": the base
            texts = await asyncio.gather(*(backend.generate(prompts, sp, adapter=a) for a, sp in calls))
            scores = await asyncio.gather(*(backend.score(prompts, completions, adapter=a) for a in models))
        finally:
            await backend.aclose()
    for (a, sp), gens in zip(calls, texts, strict=True):
        assert [g.text for g in gens] == want[None if a == "tiny" else a, sp.seed], (a, sp)
    for a, rows in zip(models, scores, strict=True):
        for r, d in zip(rows, want_scores[a], strict=True):
            assert len(r) == len(d) > 0
            np.testing.assert_allclose(r, d, atol=1e-4, err_msg=str(a))
        if a is not None:
            gap = max(float(np.max(np.abs(np.subtract(x, y)))) for x, y in zip(rows, want_scores[None]))
            assert gap > 0.05, a
    # Requests for different adapters (or sampling settings) were never merged into one engine call.
    assert app.state.batcher.batches >= 2 * len(models)


# -- 2. concurrency ---------------------------------------------------------------------------


async def test_bad_seed_is_refused_alone_while_its_batch_mate_succeeds(tiny_engine):
    # A long batching window puts both requests in one engine call unless one is refused first:
    # torch cannot seed a generator with 2**64, so an admitted bad seed would fail the batch.
    app = build_app(tiny_engine, "tiny", batch_window_s=0.5)
    body = lambda seed: {"model": "tiny", "messages": chat(0), "max_tokens": 4, "seed": seed}  # noqa: E731
    with ServerThread(app) as st:
        async with httpx.AsyncClient(base_url=st.url, timeout=60) as http:
            bad, good = await asyncio.gather(
                http.post("/v1/chat/completions", json=body(2**64)), http.post("/v1/chat/completions", json=body(7))
            )
    assert bad.status_code == 400, bad.text
    assert bad.json()["error"]["message"].startswith("invalid request: seed: ")
    assert good.status_code == 200, good.text
    # The server's OpenAI defaults: temperature 1, top_p 1, no top-k, no repetition penalty.
    plain = SamplingParams(temperature=1.0, top_p=1.0, top_k=0, repetition_penalty=1.0, max_new_tokens=4, seed=7)
    (direct,) = tiny_engine.generate_sync([chat(0)], plain)
    assert good.json()["choices"][0]["message"]["content"] == direct.text
    assert app.state.batcher.items == 1  # the bad request never reached the batcher


async def test_16_concurrent_single_prompt_requests(tiny_engine, tiny_server):
    prompts = [chat(i) for i in range(16)]
    sp = SamplingParams(max_new_tokens=5)
    backend = OpenAIBackend(tiny_server.base_url, "tiny", max_concurrency=16)
    batcher = tiny_server.app.state.batcher
    batches0, items0 = batcher.batches, batcher.items
    try:
        # Each call is its own request with its own seed (100 + i), so request i must get what
        # the engine gives prompt i at position i of a direct batch seeded 100.
        results = await asyncio.gather(
            *(backend.generate([p], SamplingParams(**{**sp.__dict__, "seed": 100 + i})) for i, p in enumerate(prompts))
        )
    finally:
        await backend.aclose()
    direct = tiny_engine.generate_sync(prompts, SamplingParams(max_new_tokens=5, seed=100))

    assert len(results) == 16 and all(len(r) == 1 for r in results)
    gens = [r[0] for r in results]
    assert all(g.error is None for g in gens)
    assert [g.prompt_tokens for g in gens] == [g.prompt_tokens for g in direct]  # in order
    assert [g.text for g in gens] == [g.text for g in direct]
    assert batcher.items - items0 == 16
    assert batcher.batches - batches0 < 16  # the batcher merged concurrent requests


# -- 3. `mfray serve` as a real process -------------------------------------------------------


def _non_loopback_ip() -> str | None:
    """This machine's outward address, if it has one (a UDP connect sends nothing)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))
            ip = s.getsockname()[0]
    except OSError:
        return None
    return None if ip.startswith("127.") or ip == "0.0.0.0" else ip


def _listen_addresses(port: int) -> list[str] | None:
    """Local addresses listening on `port` per `ss -ltn`, or None where ss is unavailable."""
    ss = shutil.which("ss")
    if ss is None:
        return None
    out = subprocess.run([ss, "-Hltn"], capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        return None
    addrs = []
    for line in out.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4 and re.search(rf":{port}$", fields[3]):
            addrs.append(fields[3].rsplit(":", 1)[0])
    return addrs


async def test_mfray_serve_subprocess(tiny_model_dir, tmp_path):
    mfray_bin = Path(sys.executable).parent / "mfray"
    cmd = [str(mfray_bin)] if mfray_bin.exists() else [sys.executable, "-m", "mfray.cli"]
    port = free_port()
    log_path = tmp_path / "serve.log"
    key = "sk-serve-test-5e7a"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "MFRAY_TEST_SERVE_KEY": key}
    auth = {"Authorization": f"Bearer {key}"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*cmd, "serve", "--model", str(tiny_model_dir), "--name", "tiny", "--port", str(port),
             "--api-key-env", "MFRAY_TEST_SERVE_KEY", "--max-request-tokens", "64"],
            stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=2) as http:
            while True:
                assert proc.poll() is None, f"mfray serve exited early ({proc.returncode}):\n{log_path.read_text()}"
                try:
                    r = await http.get(f"{url}/health")
                    if r.status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"mfray serve not ready in 60 s:\n{log_path.read_text()}"
                await asyncio.sleep(0.25)
            assert r.json()["status"] == "ok"
            # Finite limits by default: the queue, and prompts up to the model's context (8192).
            assert r.json()["limits"] == {"max_queue": 256, "max_prompt_tokens": 8192, "max_request_tokens": 64}
            assert (await http.get(f"{url}/v1/models")).status_code == 401  # /health is open, /v1 is not
            models = (await http.get(f"{url}/v1/models", headers=auth)).json()
            assert [m["id"] for m in models["data"]] == ["tiny"]
            over = {"model": "tiny", "messages": chat(0), "max_tokens": 65}
            r = await http.post(f"{url}/v1/chat/completions", json=over, headers=auth)
            assert r.status_code == 413 and "limit 64" in r.text
            long_prompt = {"model": "tiny", "prompt": "word " * 9000, "max_tokens": 2}
            r = await http.post(f"{url}/v1/completions", json=long_prompt, headers=auth, timeout=30)
            assert r.status_code == 400 and "limit 8192" in r.text

        # Bound to loopback only: ss shows only 127.0.0.1, and the outward address refuses.
        addrs = _listen_addresses(port)
        if addrs is not None:
            assert addrs == ["127.0.0.1"], addrs
        ip = _non_loopback_ip()
        if ip is not None:
            with pytest.raises(OSError):
                socket.create_connection((ip, port), timeout=2).close()

        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=30)
        try:
            resp = await client.chat.completions.create(
                model="tiny", messages=chat(0), max_tokens=6, seed=1, temperature=0.8
            )
        finally:
            await client.close()
        assert resp.object == "chat.completion" and resp.model == "tiny"
        assert len(resp.choices) == 1 and resp.choices[0].message.role == "assistant"
        assert isinstance(resp.choices[0].message.content, str)
        assert resp.usage.prompt_tokens > 0 and 0 < resp.usage.completion_tokens <= 6
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            pytest.fail(f"mfray serve ignored SIGTERM:\n{log_path.read_text()}")
    # uvicorn shuts down gracefully on SIGTERM, then re-raises the signal (so rc is -SIGTERM).
    log_text = log_path.read_text()
    assert rc in (0, -signal.SIGTERM), f"mfray serve exited with {rc} on SIGTERM:\n{log_text}"
    assert "Application shutdown complete" in log_text, log_text
    assert "auth: bearer key from $MFRAY_TEST_SERVE_KEY" in log_text and key not in log_text
    assert "WARNING" not in log_text  # loopback: no warning


def test_mfray_serve_refuses_an_unset_key_variable(monkeypatch, capsys):
    from mfray.cli import main

    monkeypatch.delenv("MFRAY_TEST_NO_SUCH_KEY", raising=False)
    # Refused before the model is loaded (the model path does not even exist).
    assert main(["serve", "--model", "/no/such/model", "--api-key-env", "MFRAY_TEST_NO_SUCH_KEY"]) == 2
    assert "MFRAY_TEST_NO_SUCH_KEY (named by --api-key-env) is unset or empty" in capsys.readouterr().err


def test_mfray_serve_warns_on_a_public_address_without_a_key(tmp_path, capsys):
    from mfray.cli import main

    # The warning comes before the model loads; the missing model then stops it before any bind.
    with pytest.raises(FileNotFoundError):
        main(["serve", "--model", str(tmp_path / "missing"), "--host", "0.0.0.0", "--port", "1"])
    err = capsys.readouterr().err
    assert "WARNING: listening on 0.0.0.0 with no API key" in err and "--api-key-env" in err


# -- the real default model, once -------------------------------------------------------------


def test_default_model_chat_completion(engine):
    with ServerThread(build_app(engine, "default")) as st:
        client = openai.OpenAI(base_url=st.base_url, api_key="EMPTY", max_retries=0, timeout=60)
        try:
            resp = client.chat.completions.create(
                model="default",
                messages=[{"role": "user", "content": "Say hello to a new neighbour in one sentence."}],
                max_tokens=8,
                temperature=0,
            )
        finally:
            client.close()
    text = resp.choices[0].message.content
    assert text and text.strip(), resp
    assert resp.usage.completion_tokens <= 8
