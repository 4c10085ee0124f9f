"""A simulation sweep on a real local Ray: grid of real event files x methods through a rollout
actor pool, one trajectory per run; a rerun skips every finished run."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mfray.ray.sweep import SweepConfig

pytestmark = pytest.mark.integration
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # jobs/ is not a package on the path


@pytest.fixture(scope="module")
def local_ray():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    # 4 logical CPUs on 2 cores: Ray Data's own tasks must not starve the rollout actor.
    ray.init(num_cpus=4, object_store_memory=int(1e9), include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_sweep_writes_every_run_and_resumes(local_ray, data_dir, tiny_model_dir, tmp_path):
    from jobs.simulate_sweep import main

    bad = tmp_path / "bad.json"
    bad.write_text("[", encoding="utf-8")
    cfg = SweepConfig.model_validate({
        "events": [str(data_dir / "twitter_rumdect/E102.json"), str(data_dir / "weibo_rumdect/test/3476055656644087.json"), str(bad)],
        "methods": ["state", "mf"], "out": str(tmp_path / "out"), "actors": 1, "llm": "local",
        "model": {"path": str(tiny_model_dir)},
        "rollout": {"horizon": 48, "agents_per_step": 16, "sim_start": 32, "policy": {"max_new_tokens": 4},
                    "mean_field": {"temperature": 0.1, "max_new_tokens": 8, "first_line": False}},
    })
    rows = main(cfg)
    status = sorted((r["file"].split("/")[-1], r["method"], r["status"]) for r in rows)
    assert status == [("3476055656644087.json", "mf", "done"), ("3476055656644087.json", "state", "done"),
                      ("E102.json", "mf", "done"), ("E102.json", "state", "done"),
                      ("bad.json", "mf", "invalid"), ("bad.json", "state", "invalid")]
    files = sorted(p.name for p in (tmp_path / "out").glob("*__s0.parquet"))
    assert len(files) == 4 and all(pq.read_table(tmp_path / "out" / f).num_rows == 48 for f in files)
    again = main(cfg)
    assert sorted(r["status"] for r in again if r["status"] != "invalid") == ["skipped"] * 4
