"""IB-Tune on a real local Ray Train cluster: 2 CPU workers (gloo), a tiny Llama, real Weibo
training events; one worker is SIGKILLed mid-run and the group resumes from the last checkpoint;
the held-out NLL is scored and the trained adapters drive an mf_ibtune rollout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from mfray.train.config import TrainConfig

pytestmark = pytest.mark.integration


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_two_workers_train_resume_after_kill_and_adapters_load(local_ray, data_dir, tiny_model_dir, tmp_path):
    from mfray.data import load_events
    from mfray.llm.local import LocalEngine
    from mfray.ray.train import run_training
    from mfray.sim.config import RolloutConfig
    from mfray.sim.driver import run_event

    train_dir = data_dir / "weibo_rumdect/train"
    cfg = TrainConfig.model_validate({
        "mode": "ibtune", "model": str(tiny_model_dir), "out": str(tmp_path / "run"),
        "train_events": [str(train_dir / "3452418795146337.json"), str(train_dir / "3489907987681057.json")],
        "agents_per_step": 4, "horizon": 16, "summaries": 2, "summary_max_tokens": 6,
        "lora": {"rank": 4, "alpha": 8}, "lr": 1e-3, "steps": 10, "checkpoint_every": 2,
        "workers": 2, "cpus_per_worker": 1.0, "max_failures": 1,
        "heldout_events": [str(data_dir / "weibo_rumdect/test/3476055656644087.json")], "heldout_start": 8, "heldout_steps": 2,
    })
    log1 = tmp_path / "run" / "worker-1.jsonl"
    killed: list[int] = []

    # Kill only once Ray Train has registered a checkpoint (its snapshot file exists): a worker's
    # report returns before the controller has collected every worker's part.
    snapshot = tmp_path / "run/ray/mfray-ibtune/checkpoint_manager_snapshot.json"

    def kill_rank1_after_update_3():
        deadline = time.time() + 300
        while time.time() < deadline:
            updates = [r for r in records(log1) if r["event"] == "update"]
            if updates and updates[-1]["update"] >= 3 and snapshot.exists():
                os.kill(updates[-1]["pid"], signal.SIGKILL)
                killed.append(updates[-1]["update"])
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_rank1_after_update_3, daemon=True)
    killer.start()
    summary = run_training(cfg)  # raises if Ray Train reports an error
    killer.join(timeout=5)

    assert killed, "the run finished before rank 1 could be killed"
    assert list((tmp_path / "run/ray/mfray-ibtune").glob("checkpoint_*"))
    log = records(log1)
    starts = [r for r in log if r["event"] == "start"]
    assert len(starts) == 2 and not starts[0]["resumed"] and starts[1]["resumed"]
    assert 2 <= starts[1]["update"] <= killed[0] + 1  # resumed from a checkpoint, not from scratch
    done = {r["update"] for r in log if r["event"] == "update"}
    assert done == set(range(1, cfg.steps + 1))
    for name in ("ib_policy", "ib_mean_field"):
        assert (tmp_path / "run/adapters" / name / "adapter_config.json").exists()

    assert (tmp_path / "run/training_curves.png").stat().st_size > 10_000
    before, after = summary["heldout_before"], summary["heldout_after"]
    assert before["actions"] == after["actions"] == 8  # agents 8..15: 2 steps of 4 and before["tokens"] == after["tokens"]
    assert before["nll_per_token"] != after["nll_per_token"]  # the trained policy scores differently

    # The adapters load into the engine under the names the mf_ibtune method looks up, and drive it.
    engine = LocalEngine.load(str(tiny_model_dir), adapters=summary["adapters"])
    # Trained, they change what the model computes (untrained ones would score as the base), each
    # its own way, and a call gets the adapter it names.
    prompt, reply = [[{"role": "user", "content": "Is the bridge closing for a year?"}]], ["I doubt it, source?"]
    scores = {a: engine.score_sync(prompt, reply, adapter=a) for a in (None, "ib_policy", "ib_mean_field")}
    assert scores[None] != scores["ib_policy"] != scores["ib_mean_field"] != scores[None], scores
    (event,), _ = load_events([data_dir / "twitter_rumdect/E102.json"])
    rollout = RolloutConfig(method="mf_ibtune", horizon=16, agents_per_step=4, sim_start=8,
                            policy={"max_new_tokens": 4}, mean_field={"max_new_tokens": 6, "first_line": False, "temperature": 0.1})
    assert rollout.adapters() == ("ib_policy", "ib_mean_field")
    steps = asyncio.run(run_event(event, engine, rollout))
    simulated = [r for r in steps if not r.warmup]
    assert len(simulated) == 8 and all(r.method == "mf_ibtune" for r in simulated)
    assert simulated[-1].mean_field  # written by the tuned mean-field adapter
