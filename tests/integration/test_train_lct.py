"""LCT-Policy end to end on a real local Ray Train cluster (2 CPU workers, gloo) with a tiny Llama:
all-real mfmdp runs of real Twitter events as its data (their summaries written by the scripted
LLM behind the project's interface: bookkeeping, the training itself is real), a checkpoint and
the held-out report (policy NLL before/after, the head's lookahead cost beside persistence's),
then the lct_policy adapter drives an mfmdp_lct rollout."""

from __future__ import annotations

import asyncio

import pytest
import torch

from mfray.train.config import TrainConfig

pytestmark = pytest.mark.integration

EVENTS = ("E102", "E104", "E106")  # two to train on (one per worker), one held out


def test_lct_policy_trains_on_ray_reports_held_out_and_drives_mfmdp_lct(local_ray, data_dir, tiny_model_dir, tmp_path):
    from mfray.data import load_events
    from mfray.llm.local import LocalEngine
    from mfray.ray.train import run_training
    from mfray.sim.checkpoint import run_events
    from mfray.sim.config import RolloutConfig
    from mfray.sim.driver import run_event
    from mfray.sim.identity import make_identity
    from mfray.train.loop import HEAD_FILE
    from tests.unit.test_rollout import ScriptedLLM

    paths = [str(data_dir / f"twitter_rumdect/{e}.json") for e in EVENTS]
    events, _ = load_events(paths)
    data = RolloutConfig(method="mfmdp", horizon=40, sim_start=40, agents_per_step=8)  # all real: 5 steps of 8
    asyncio.run(run_events(events, ScriptedLLM(), data, 0, tmp_path / "data", make_identity(data, {"name": "scripted"})))

    cfg = TrainConfig.model_validate({
        "mode": "lct", "model": str(tiny_model_dir), "out": str(tmp_path / "run"),
        "train_events": paths[:2], "heldout_events": paths[2:], "agents_per_step": 8,
        "lct": {"runs": [str(tmp_path / "data")], "k": 3, "instances": 2, "agents_scored": 3},
        "lora": {"rank": 4, "alpha": 8, "dropout": 0.1}, "lr": 1e-3, "steps": 4, "checkpoint_every": 2,
        "workers": 2, "cpus_per_worker": 1.0, "heldout_start": 8, "heldout_steps": 2,
    })
    summary = run_training(cfg)

    assert list((tmp_path / "run/ray/mfray-lct").glob("checkpoint_*"))
    assert (tmp_path / "run/adapters/lct_policy/adapter_config.json").exists()
    assert set(torch.load(tmp_path / "run" / HEAD_FILE, weights_only=True)) == {
        "net.1.weight", "net.1.bias", "net.3.weight", "net.3.bias"}
    before, after = summary["heldout_before"], summary["heldout_after"]
    assert before["samples"] == after["samples"] == 2 and before["actions"] == 16  # steps 1 and 2 of E106
    assert before["nll_per_token"] != after["nll_per_token"]  # the trained adapter scores differently
    assert after["lookahead_cost_head"] > 0 and after["lookahead_cost_persistence"] >= 0

    engine = LocalEngine.load(str(tiny_model_dir), adapters=summary["adapters"])
    rollout = RolloutConfig(method="mfmdp_lct", horizon=24, agents_per_step=8, sim_start=8,
                            policy={"max_new_tokens": 4}, mean_field={"max_new_tokens": 6, "first_line": False})
    assert rollout.adapters() == ("lct_policy", None)
    records = asyncio.run(run_event(events[2], engine, rollout))
    simulated = [r for r in records if not r.warmup]
    assert len(simulated) == 16 and all(r.latent_state is not None and r.macro_state for r in simulated)
