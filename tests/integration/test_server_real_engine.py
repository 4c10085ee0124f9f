"""mfray's OpenAI-compatible server over the real LocalEngine, end to end over HTTP on 127.0.0.1:
OpenAIBackend against ServerThread(build_app(...)) must give exactly what the engine gives
directly (seeds included, across the server's dynamic batching), concurrent requests are served
in order, and `mfray serve` works as a real process bound to loopback only.

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

from mfray.llm.base import SamplingParams
from mfray.llm.openai_backend import OpenAIBackend
from mfray.llm.server import ServerThread, build_app

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


# -- 2. concurrency ---------------------------------------------------------------------------


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    port = _free_port()
    log_path = tmp_path / "serve.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [*cmd, "serve", "--model", str(tiny_model_dir), "--name", "tiny", "--port", str(port)],
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
            models = (await http.get(f"{url}/v1/models")).json()
            assert [m["id"] for m in models["data"]] == ["tiny"]

        # Bound to loopback only: ss shows only 127.0.0.1, and the outward address refuses.
        addrs = _listen_addresses(port)
        if addrs is not None:
            assert addrs == ["127.0.0.1"], addrs
        ip = _non_loopback_ip()
        if ip is not None:
            with pytest.raises(OSError):
                socket.create_connection((ip, port), timeout=2).close()

        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="EMPTY", max_retries=0, timeout=30)
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
