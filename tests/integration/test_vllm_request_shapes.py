"""The requests a simulation sends an OpenAI-compatible LLM app (vLLM under ray.serve.llm, see
serve_configs/vllm.yaml), pinned against the stand-in LLM served over real HTTP on 127.0.0.1.

vLLM cannot be installed on these machines, so its side is declared here from its OpenAI
CompletionRequest: the fields a request may use, LoRA adapters addressed as model ids
("<model_id>:<adapter>", ray.serve.llm's convention, from endpoint.adapter_prefix), one prompt
and one seed per request. The
same rollout run on the stand-in in process (the local deployment's path) gives the very same
trajectory: the HTTP requests carry each prompt's own seed, nothing is lost on the way."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest

from mfray.llm.openai_backend import OpenAIBackend
from mfray.http_common import ServerThread
from mfray.llm.server import build_app
from mfray.llm.standin import StandInLLM
from mfray.sim.config import RolloutConfig
from mfray.sim.driver import run_event
from tests.unit.test_rollout import make_event

pytestmark = pytest.mark.integration

BASE = "mfray-base"
ROLES = ("ib_policy", "ib_mean_field")  # the adapters training writes, as the rollout names them
ADAPTERS = tuple(f"{BASE}:{name}" for name in ROLES)  # as ray.serve.llm serves them
# vLLM's CompletionRequest fields that mfray sends (vLLM accepts top_k and repetition_penalty as
# its sampling extensions; it would ignore, with a warning, a field it does not know).
VLLM_COMPLETION_FIELDS = {"model", "prompt", "max_tokens", "temperature", "top_p", "seed", "top_k", "repetition_penalty"}


class Recorder:
    """ASGI middleware keeping (path, JSON body) of every POST."""

    def __init__(self, app):
        self.app, self.bodies = app, []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        chunks, more = [], True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        self.bodies.append((scope["path"], json.loads(body)))
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)


def rollout_cfg() -> RolloutConfig:
    return RolloutConfig(method="mf_ibtune", horizon=20, agents_per_step=4, sim_start=4, prompt_style="timeline")


def test_a_rollout_sends_vllm_shaped_requests_and_matches_the_in_process_path():
    event, cfg = make_event(), rollout_cfg()
    recorder = Recorder(build_app(StandInLLM(adapters=ADAPTERS), BASE, adapters=list(ADAPTERS)))
    with ServerThread(recorder) as server:
        llm = OpenAIBackend(server.base_url, BASE, mode="completions", max_retries=0, adapter_prefix=f"{BASE}:")
        over_http = asyncio.run(run_event(event, llm, cfg, seed=7))
    in_process = asyncio.run(run_event(event, StandInLLM(adapters=ROLES), cfg, seed=7))
    # Same texts and accounting (latency aside): every prompt kept its own seed over HTTP.
    assert [replace(r, latency_s=0.0) for r in over_http] == [replace(r, latency_s=0.0) for r in in_process]

    # 4 simulated steps of 4 agents: 16 policy requests; a mean field after every step but the last (4).
    assert len(recorder.bodies) == 16 + 4
    for path, body in recorder.bodies:
        assert path == "/v1/completions"
        assert set(body) <= VLLM_COMPLETION_FIELDS, set(body) - VLLM_COMPLETION_FIELDS
        assert isinstance(body["prompt"], str) and isinstance(body["seed"], int)  # one prompt, one seed
        assert body["model"] in ADAPTERS  # adapters addressed as model ids
    policy = [b for _, b in recorder.bodies if b["model"] == ADAPTERS[0]]
    assert len(policy) == 16 and len({b["seed"] for b in policy}) == 16  # a seed of its own per agent
    assert all(b["max_tokens"] == cfg.policy.max_new_tokens and b["repetition_penalty"] == cfg.policy.repetition_penalty
               for b in policy)
    mean_field = [b for _, b in recorder.bodies if b["model"] == ADAPTERS[1]]
    assert len(mean_field) == 4 and all(b["max_tokens"] == cfg.mean_field.max_new_tokens for b in mean_field)
