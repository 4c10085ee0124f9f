"""Every YAML config in the repository loads into its typed config; bad values fail loudly."""

from __future__ import annotations

from pathlib import Path

import pytest

from mfray.config import ConfigError, load_config, parse_overrides
from mfray.eval.config import EvaluateConfig
from mfray.sim.config import SimulateConfig

REPO = Path(__file__).resolve().parents[2]
JOB_CONFIGS = sorted((REPO / "jobs" / "configs").glob("*.yaml"))


def test_there_are_job_configs():
    assert len(JOB_CONFIGS) >= 3


@pytest.mark.parametrize("path", JOB_CONFIGS, ids=lambda p: p.name)
def test_every_job_config_loads(path):
    if path.name.startswith("evaluate"):
        assert load_config(EvaluateConfig, path).trajectories
    elif path.name.startswith("train_transition"):
        from mfray.mdp.config import TransitionJobConfig

        cfg = load_config(TransitionJobConfig, path)
        assert cfg.data and cfg.heldout and cfg.transition.encoder_dim == 256
    elif path.name.startswith("train_"):
        from mfray.train.config import TrainConfig

        cfg = load_config(TrainConfig, path)
        assert cfg.train_events and cfg.heldout_events
    elif path.name.startswith("simulate_sweep"):
        from mfray.ray.sweep import SweepConfig  # imports no Ray at module level

        cfg = load_config(SweepConfig, path)
        assert cfg.events and cfg.methods
    else:
        cfg = load_config(SimulateConfig, path)
        assert cfg.events and cfg.methods


def test_a_sweep_reads_relative_paths_against_its_root():
    from pydantic import ValidationError

    from mfray.ray.sweep import SweepConfig

    cfg = load_config(SweepConfig, REPO / "jobs/configs/simulate_sweep_fidelity.yaml", ["root=/work/checkout"])
    assert cfg.events[0] == "/work/checkout/../shared/data/twitter_rumdect/E132.json"
    assert cfg.out == "/work/checkout/benchmarks/results/fidelity_study/runs"
    assert cfg.model_copy(update={"seeds": [3]}).events == cfg.events  # validated again: joined once
    assert load_config(SweepConfig, REPO / "jobs/configs/simulate_sweep_fidelity.yaml").out == "benchmarks/results/fidelity_study/runs"
    with pytest.raises(ValidationError, match="not an absolute path"):
        SweepConfig(root="checkout")
    assert (cfg.llm_threads, cfg.llm_timeout_s) == (2, 3600) and SweepConfig().llm_timeout_s == 600
    assert SweepConfig(llm_timeout_s=None).llm_timeout_s is None  # no limit
    with pytest.raises(ValidationError, match="llm_timeout_s"):
        SweepConfig(llm_timeout_s=0)


def test_overrides_are_typed_and_nested():
    assert parse_overrides(["a.b=3", "c=[1, 2]", "d=text"]) == {"a": {"b": 3}, "c": [1, 2], "d": "text"}
    cfg = load_config(SimulateConfig, REPO / "jobs/configs/simulate.yaml", ["rollout.horizon=64", "rollout.policy.max_new_tokens=8"])
    assert cfg.rollout.horizon == 64 and cfg.rollout.policy.max_new_tokens == 8


@pytest.mark.parametrize("override, fragment", [
    ("rollout.horizon=abc", "rollout.horizon"),
    ("rollout.agents_per_step=0", "rollout.agents_per_step"),
    ("rollout.policy.temperature=-1", "rollout.policy.temperature"),
    ("rollout.hoirzon=5", "rollout.hoirzon"),  # a typo is an error, not silently ignored
    ("methods=[mf, bogus]", "methods.1"),
    ("rollout.horizon='12'", "rollout.horizon"),  # a string is not coerced to an int
])
def test_bad_values_are_rejected_with_their_location(override, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_config(SimulateConfig, None, [override])


def test_all_problems_reported_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("rollout:\n  horizon: -1\n  agents_per_step: x\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(SimulateConfig, path)
    assert "rollout.horizon" in str(err.value) and "rollout.agents_per_step" in str(err.value) and str(path) in str(err.value)


def test_updates_made_in_code_are_validated_like_a_file():
    from pydantic import ValidationError

    from mfray.sim.config import RolloutConfig
    from mfray.train.config import TrainConfig

    cfg = RolloutConfig()
    assert cfg.model_copy(update={"horizon": 64}).horizon == 64
    with pytest.raises(ValidationError, match="horizon"):
        cfg.model_copy(update={"horizon": 0})  # pydantic's own model_copy would accept it
    with pytest.raises(ValidationError, match="popular_window"):
        cfg.model_copy(update={"popular_window": 1})  # model-level rule: popular_window >= popular_k
    with pytest.raises(ValidationError, match="horizn"):
        cfg.model_copy(update={"horizn": 64})  # unknown key
    with pytest.raises(ValidationError):
        cfg.model_copy(update={"horizon": "64"})  # strict: no coercion
    with pytest.raises(ValidationError):
        TrainConfig().model_copy(update={"steps": -1})
    assert cfg.model_copy() == cfg and cfg.model_copy(deep=True) == cfg


def test_lookup_is_validated_and_left_out_of_dumps_when_off():
    """A sampling config without prompt-lookup drafts dumps as it did before the field existed
    (run fingerprints hash the dump); with them, the dump and the sampling params carry it."""
    from mfray.config import SamplingConfig

    off = SamplingConfig(temperature=0.1, max_new_tokens=100, first_line=False)
    assert "lookup" not in off.model_dump() and off.params(seed=3).lookup == 0
    on = off.model_copy(update={"lookup": 10})
    assert on.model_dump()["lookup"] == 10 and on.params(seed=3).lookup == 10
    with pytest.raises(ValueError, match="lookup"):
        SamplingConfig(lookup=65)
    with pytest.raises(ValueError, match="lookup"):
        off.model_copy(update={"lookup": -1})
