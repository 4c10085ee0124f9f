"""Training config: SPEC defaults, bad values rejected, the DeepSpeed config accepted by DeepSpeed."""

import pytest

from mfray.config import ConfigError, load_config
from mfray.train.config import TrainConfig
from mfray.train.loop import deepspeed_config


def test_defaults_are_the_specs():
    cfg = TrainConfig(train_events=["x"])
    assert (cfg.lora.rank, cfg.lora.alpha, cfg.summaries, cfg.beta) == (64, 64, 4, 2.0)
    assert cfg.learning_rate == 5e-7 and TrainConfig(mode="sft", train_events=["x"]).learning_rate == 1e-6
    assert cfg.adapter_names == ("ib_policy", "ib_mean_field")  # the names mf_ibtune looks up
    assert cfg.resolved_backend == "torch" and TrainConfig(train_events=["x"], use_gpu=True).resolved_backend == "deepspeed"


@pytest.mark.parametrize("override, message", [
    ("summaries=1", "summaries"), ("horizon=20", "at least 2 steps"), ("zero_stage=3", "zero_stage"),
    ("lr=0", "lr"), ("steps='10'", "steps"), ("backend=fsdp", "backend"), ("lora.rnak=8", "rnak"),
])
def test_bad_values_fail(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TrainConfig, None, ["train_events=[x]", override])


@pytest.mark.parametrize("bf16", [True, False])
def test_deepspeed_accepts_our_config(bf16):
    from deepspeed.runtime.config import DeepSpeedConfig

    cfg = TrainConfig(train_events=["x"], workers=1, accumulate=4, use_gpu=True)
    parsed = DeepSpeedConfig(deepspeed_config(cfg, bf16=bf16))  # raises on an inconsistent config
    assert parsed.zero_optimization_stage == 2 and parsed.bfloat16_config.enabled is bf16
    # IB-Tune: two differentiable passes (mean field, policy) per event-step, each a micro-step
    assert parsed.gradient_accumulation_steps == 8 and parsed.train_batch_size == 8
    two = deepspeed_config(cfg.model_copy(update={"workers": 2}), bf16=bf16)
    assert two["train_batch_size"] == two["train_micro_batch_size_per_gpu"] * two["gradient_accumulation_steps"] * 2

