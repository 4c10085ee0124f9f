"""Rollouts on real events with the real default model (shortened horizon), and a long horizon
with a tiny randomly initialised model of the same architecture."""

from __future__ import annotations

import dataclasses
import time

import pytest

from mfray.data import load_events
from mfray.sim.config import Intervention, RolloutConfig
from mfray.sim.driver import counterfactual, drive, forecast, run_event
from mfray.sim.rollout import EventRollout
from mfray.sim.trajectory import read_trajectory, write_trajectory

pytestmark = pytest.mark.integration

LIU_XIANG = "weibo_rumdect/test/3476055656644087.json"
TWITTER = "twitter_rumdect/E102.json"


def short_cfg(**kw) -> RolloutConfig:
    base = dict(
        method="mf", horizon=24, agents_per_step=8, sim_start=16,
        policy={"max_new_tokens": 16}, mean_field={"temperature": 0.1, "max_new_tokens": 24, "first_line": False},
    )
    base.update(kw)
    return RolloutConfig(**base)


@pytest.fixture(scope="module")
def liu(data_dir):
    events, problems = load_events([data_dir / LIU_XIANG])
    assert not problems
    return events[0]


@pytest.fixture(scope="module")
def tweet_event(data_dir):
    events, problems = load_events([data_dir / TWITTER])
    assert not problems
    return events[0]


@pytest.fixture(scope="module")
def adapter_engine(tmp_path_factory):
    """The default model with three randomly initialised LoRA adapters under the names the
    sft and mf_ibtune methods use (training writes real ones under the same names)."""
    from peft import LoraConfig, get_peft_model

    from mfray.llm.local import LocalEngine
    from mfray.llm.models import load_model_and_tokenizer, resolve_model_dir

    root = tmp_path_factory.mktemp("adapters")
    paths = {}
    for i, name in enumerate(["sft", "ib_policy", "ib_mean_field"]):
        base, _ = load_model_and_tokenizer(resolve_model_dir("default"), "float32", "cpu")
        cfg = LoraConfig(r=4, lora_alpha=4, target_modules="all-linear", init_lora_weights=False)
        import torch
        with torch.random.fork_rng():
            torch.manual_seed(i)
            peft_model = get_peft_model(base, cfg)
        peft_model.save_pretrained(root / name)
        paths[name] = str(root / name)
    return LocalEngine.load("default", adapters=paths)


@pytest.mark.parametrize("method", ["state", "recent", "popular", "mf"])
async def test_each_method_on_liu_xiang(liu, engine, method):
    recs = await run_event(liu, engine, short_cfg(method=method), seed=3)
    assert [r.agent_index for r in recs] == list(range(24))
    sim = [r for r in recs if not r.warmup]
    assert len(sim) == 8 and sum(r.failed for r in sim) <= 1
    assert all(r.simulated_text for r in sim if not r.failed)
    # Never the real text by fallback (a model can't plausibly reproduce these exact posts).
    assert all(r.simulated_text != r.real_text for r in sim)
    assert all(r.completion_tokens > 0 and r.prompt_tokens > 0 for r in sim)
    if method == "mf":
        assert recs[0].mean_field == "" and recs[-1].mean_field != ""


class Rerouted:
    """An engine whose requests go to route.get(adapter, adapter) instead of the adapter the
    rollout asked for (None: the base model); records the adapters asked for."""

    def __init__(self, engine, route: dict | None = None) -> None:
        self.engine, self.route, self.asked = engine, route or {}, []

    async def generate(self, prompts, sampling, adapter=None, seeds=None):
        self.asked.append(adapter)
        return await self.engine.generate(prompts, sampling, self.route.get(adapter, adapter), seeds)

    async def score(self, prompts, completions, adapter=None):
        self.asked.append(adapter)
        return await self.engine.score(prompts, completions, self.route.get(adapter, adapter))


ADAPTERS_ASKED = {"sft": {"sft"}, "mf_ibtune": {"ib_policy", "ib_mean_field"}}


@pytest.mark.parametrize("method", ["sft", "mf_ibtune"])
async def test_adapter_methods(liu, adapter_engine, method):
    llm = Rerouted(adapter_engine)
    recs = await run_event(liu, llm, short_cfg(method=method, horizon=24), seed=1)
    assert len(recs) == 24 and sum(1 for r in recs if r.simulated_text) >= 6
    assert set(llm.asked) == ADAPTERS_ASKED[method]  # every request named one of the method's adapters


def texts(records) -> list[tuple[str, str]]:
    return [(r.simulated_text, r.mean_field) for r in records]


@pytest.mark.parametrize("method", ["sft", "mf_ibtune"])
async def test_adapter_methods_apply_each_roles_adapter_tiny_model(liu, tiny_adapter_engine, method):
    """The tiny model's test adapters change its output (random non-zero LoRA B), so a rollout
    whose adapter requests were dropped (answered by the base) or sent to the other role's
    adapter must come out different: the adapters the method asks for are the ones applied."""
    cfg = short_cfg(method=method, horizon=32, policy={"max_new_tokens": 6},
                    mean_field={"temperature": 0.1, "max_new_tokens": 8, "first_line": False})

    async def run(route=None):
        llm = Rerouted(tiny_adapter_engine, route)
        recs = await run_event(liu, llm, cfg, seed=2)
        assert set(llm.asked) == ADAPTERS_ASKED[method]
        return texts(recs)

    full = await run()
    assert full == await run()  # seeded: the differences below come from the routing alone
    names = sorted(ADAPTERS_ASKED[method])
    for name in names:  # each role's adapter, dropped
        assert await run({name: None}) != full, f"{method}: dropping adapter {name} changed nothing"
    if method == "mf_ibtune":
        swapped = await run({"ib_policy": "ib_mean_field", "ib_mean_field": "ib_policy"})
        assert swapped != full


async def test_twitter_event_forecast_and_intervention(tweet_event, engine):
    recs = await forecast(tweet_event, engine, short_cfg(horizon=32), start_agent=24, seed=0)
    assert [r.warmup for r in recs] == [True] * 24 + [False] * 8
    base, treated = await counterfactual(
        tweet_event, engine, short_cfg(), [Intervention(step=2, posts=["This story is fake, says the police."])]
    )
    assert base[:16] == treated[:16]
    assert treated[16].intervention and treated[16].simulated_text.startswith("This story is fake")


async def test_resume_equals_uninterrupted_run_with_the_real_model(liu, engine, tmp_path):
    cfg = short_cfg()  # steps 0-1 warm up the mean field, step 2 is generated after the resume
    full = without_latency(await run_event(liu, engine, cfg, seed=11))
    first = EventRollout(liu, cfg, seed=11)
    part = []
    while first.step < 2:
        req = first.next_request()
        first.submit(await engine.generate(req.prompts, req.sampling, req.adapter))
        part += first.drain()
    resumed = EventRollout.from_state(liu, cfg, 11, first.state_dict())
    rest = await drive(resumed, engine)
    assert without_latency(part + rest) == full  # latency is wall-clock; all else must match
    path = write_trajectory(full, tmp_path / "t.parquet")
    assert read_trajectory(path) == full


def without_latency(records):
    return [dataclasses.replace(r, latency_s=0.0) for r in records]


async def test_long_horizon_2000_sampled_agents_tiny_model(liu, tiny_engine):
    cfg = RolloutConfig(
        method="mf", horizon=2000, agents_per_step=16, sim_start=48,
        policy={"max_new_tokens": 4}, mean_field={"temperature": 0.1, "max_new_tokens": 8, "first_line": False},
    )
    rollout = EventRollout(liu, cfg, seed=0)
    count, began = 0, time.perf_counter()
    sampled = 0

    def on_step(recs):
        nonlocal count, sampled
        count += len(recs)
        sampled += sum(1 for r in recs if r.real_text is None)

    await drive(rollout, tiny_engine, on_step)
    assert count == 2000 and sampled == 2000 - len(liu.responses)
    assert len(rollout.window) <= 30
    assert time.perf_counter() - began < 120
