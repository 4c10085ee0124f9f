"""f_psi trained on Ray Train (mfray.ray.train_transition) on a real local Ray: data from all-real
mfmdp runs of three Twitter events (made with the stand-in LLM behind the project's interface, so
the summaries are canned: this checks the job's plumbing, not what f_psi learns; the study on
real-model data is benchmarks/transition_study.py), a tiny f_psi, two epochs, a held-out event."""

from __future__ import annotations

import pytest

from mfray.cli import main as cli

pytestmark = pytest.mark.integration


def test_the_job_trains_reports_and_writes_a_loadable_model(local_ray, data_dir, tmp_path):
    from mfray.mdp.config import TransitionJobConfig
    from mfray.mdp.transition_train import load_transition
    from mfray.ray.train_transition import train_on_ray

    events = [str(data_dir / "twitter_rumdect" / f"{e}.json") for e in ("E200", "E212", "E229")]
    assert cli(["simulate", "--events", *events, "--method", "mfmdp", "--model", "standin", "--horizon", "96",
                "--sim-start", "96", "--out", str(tmp_path / "data")]) == 0
    cfg = TransitionJobConfig(data=str(tmp_path / "data"), heldout=["E229"], out=str(tmp_path / "out"),
                              transition={"encoder_dim": 16, "d_model": 16, "heads": 2, "layers": 1, "ffn": 32,
                                          "epochs": 2, "lr": 1e-3, "rollout_k": 2})
    result = train_on_ray(cfg)
    epochs = result["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2] and result["train_events"] == 2 and result["heldout_events"] == 1
    assert all(e["heldout_seq"] > 0 and e["heldout_roll"] > 0 for e in epochs)
    assert epochs[-1]["train_seq"] < epochs[0]["train_seq"]  # it fits its training events
    model = load_transition(result["model"])
    assert model.cfg.encoder_dim == 16 and model.cfg.epochs == 2
