"""IB-Tune on a real local Ray Train cluster: 2 CPU workers (gloo), a tiny Llama, real Weibo
training events; one worker is SIGKILLed mid-run and the group resumes from the last checkpoint."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from mfray.train.config import TrainConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def local_ray():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, object_store_memory=int(1e9), include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def records(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_two_workers_train_resume_after_kill_and_adapters_load(local_ray, data_dir, tiny_model_dir, tmp_path):
    from mfray.llm.local import LocalEngine
    from mfray.ray.train import fit

    train_dir = data_dir / "weibo_rumdect/train"
    cfg = TrainConfig.model_validate({
        "mode": "ibtune", "model": str(tiny_model_dir), "out": str(tmp_path / "run"),
        "train_events": [str(train_dir / "3452418795146337.json"), str(train_dir / "3489907987681057.json")],
        "agents_per_step": 4, "horizon": 16, "summaries": 2, "summary_max_tokens": 6,
        "lora": {"rank": 4, "alpha": 8}, "lr": 1e-3, "steps": 10, "checkpoint_every": 2,
        "workers": 2, "cpus_per_worker": 1.0, "max_failures": 1,
    })
    log1 = tmp_path / "run" / "worker-1.jsonl"
    killed: list[int] = []

    def kill_rank1_after_update_3():
        deadline = time.time() + 300
        while time.time() < deadline:
            updates = [r for r in records(log1) if r["event"] == "update"]
            if updates and updates[-1]["update"] >= 3:
                os.kill(updates[-1]["pid"], signal.SIGKILL)
                killed.append(updates[-1]["update"])
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_rank1_after_update_3, daemon=True)
    killer.start()
    result = fit(cfg)
    killer.join(timeout=5)

    assert killed, "the run finished before rank 1 could be killed"
    assert result.error is None and result.checkpoint is not None
    log = records(log1)
    starts = [r for r in log if r["event"] == "start"]
    assert len(starts) == 2 and not starts[0]["resumed"] and starts[1]["resumed"]
    assert 2 <= starts[1]["update"] <= killed[0] + 1  # resumed from a checkpoint, not from scratch
    done = {r["update"] for r in log if r["event"] == "update"}
    assert done == set(range(1, cfg.steps + 1))
    for name in ("ib_policy", "ib_mean_field"):
        assert (tmp_path / "run/adapters" / name / "adapter_config.json").exists()

    # The adapters load into the engine under the names the mf_ibtune method looks up.
    engine = LocalEngine.load(str(tiny_model_dir), adapters={
        "ib_policy": str(tmp_path / "run/adapters/ib_policy"), "ib_mean_field": str(tmp_path / "run/adapters/ib_mean_field")})
    base = engine.score_sync([[{"role": "user", "content": "hi"}]], ["hello there"])[0]
    tuned = engine.score_sync([[{"role": "user", "content": "hi"}]], ["hello there"], adapter="ib_policy")[0]
    assert len(base) == len(tuned) and base != tuned  # trained adapters change the model
