"""The stand-in LLM (mfray.llm.standin): canned answers that every parse path accepts, chosen by
seed only, selected by the model path "standin", and never evaluated as a simulation."""

from __future__ import annotations

import asyncio

import pytest

from mfray.config import ModelConfig
from mfray.llm import build_llm
from mfray.llm.base import SamplingParams
from mfray.llm.standin import StandInLLM
from mfray.prompts.parse import mean_field_text, post_text
from mfray.sim.config import RolloutConfig, SimulateConfig
from mfray.sim.identity import config_identity


def generate(llm, prompts, **sampling):
    return asyncio.run(llm.generate(prompts, SamplingParams(**sampling)))


def test_answers_parse_as_posts_and_mean_fields_in_both_styles():
    [gen] = generate(StandInLLM(), ["x"], seed=3, max_new_tokens=64)
    post, rest = gen.text.split("\n", 1)
    assert post_text("timeline", gen.text) == post and post_text("chat", gen.text) == gen.text
    summary = mean_field_text("timeline", "en", gen.text)
    assert summary.startswith(f"Stance: {post}\nEmotions: mostly ") and "\nBehaviour: " in summary
    assert gen.finish_reason == "stop" and gen.prompt_tokens == 1  # ceil(1 character / 4)


def test_answers_depend_on_the_seed_only_and_respect_the_limits():
    llm = StandInLLM()
    a = generate(llm, ["p1", "a much longer prompt " * 10], seed=5)
    b = generate(llm, ["other", "prompts"], seed=5)
    assert [g.text for g in a] == [g.text for g in b]  # prompt i gets seed + i, whatever the prompt
    assert [g.prompt_tokens for g in a] == [1, 53]  # 2 characters; 210 characters -> 53
    [short] = generate(llm, ["x"], seed=5, max_new_tokens=3, first_line=True)
    assert short.completion_tokens == 3 and len(short.text.split(" ")) == 3
    assert llm.stats.requests == 5
    served = StandInLLM(adapters=("ib_policy",))
    with pytest.raises(KeyError, match="unknown adapter 'sft'"):
        asyncio.run(served.generate(["x"], SamplingParams(), adapter="sft"))
    assert len(asyncio.run(served.generate(["x"], SamplingParams(), adapter="ib_policy"))) == 1


def test_the_model_path_standin_selects_it_and_names_it_in_the_run_identity():
    model = ModelConfig(path="standin", adapters={"sft": "ignored"})
    assert isinstance(build_llm(model), StandInLLM) and build_llm(model).adapters == ("sft",)
    cfg = SimulateConfig(model=model, rollout=RolloutConfig(method="sft"))
    assert config_identity(cfg, "sft", use_endpoint=False).parts["backend"] == {"weights": "standin", "dtype": "auto", "adapters": {"sft": "standin"}}


def test_evaluation_refuses_runs_of_the_stand_in(tmp_path):
    from mfray.eval.inputs import evaluable_runs
    from mfray.sim.checkpoint import run_events
    from tests.unit.test_rollout import make_event

    cfg = SimulateConfig(model=ModelConfig(path="standin"), rollout=RolloutConfig(method="mf", horizon=8, sim_start=4,
                                                                                   agents_per_step=4))
    asyncio.run(run_events([make_event()], StandInLLM(), cfg.rollout, 0, tmp_path, config_identity(cfg, "mf", use_endpoint=False)))
    with pytest.raises(ValueError, match="made by the stand-in LLM.*never fidelity"):
        evaluable_runs(tmp_path)
