"""The evaluation pipeline on a real local Ray (Ray Data stages) gives exactly the numbers of
the single-process path, on trajectories made from real tweets."""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path

import pytest

from mfray.data import load_events
from mfray.eval.config import EvaluateConfig
from mfray.eval.run import evaluate
from mfray.sim.trajectory import trajectory_path, write_trajectory
from mfray.types import StepRecord

pytestmark = pytest.mark.integration
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # jobs/ is not a package on the path


def make_trajectories(data_dir, out: Path) -> None:
    """Two methods on one real Twitter event; the 'simulated' posts are other real tweets of the
    event, drawn with a fixed seed (this tests the pipeline's bookkeeping, not a simulator)."""
    event = load_events([data_dir / "twitter_rumdect/E102.json"])[0][0]
    texts = [p.text for p in event.responses]
    for method, seed in [("state", 0), ("mf", 0)]:
        rng = random.Random(method)
        records = []
        for j in range(96):
            failed = method == "mf" and j == 70
            records.append(StepRecord(
                event_id=event.event_id, method=method, seed=seed, language=event.language, topic=event.topic_text,
                step=j // 16, agent_index=j, real_text=texts[j], simulated_text=None if j < 48 or failed else rng.choice(texts),
                mean_field="", signal=None, state_text="", failed=failed, warmup=j < 48,
            ))
        write_trajectory(records, trajectory_path(out, event.event_id, method, seed))


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, object_store_memory=int(1e9), include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_stages_equal_single_process(data_dir, tmp_path, local_ray):
    from jobs.evaluate import main as ray_main

    make_trajectories(data_dir, tmp_path / "traj")
    cfg = EvaluateConfig(trajectories=str(tmp_path / "traj"), out=str(tmp_path / "single"), eval_start=50, eval_end=96)
    single = evaluate(cfg)
    distributed = ray_main(cfg.model_copy(update={"out": str(tmp_path / "ray")}))
    assert len(single) == len(distributed) == 2 * 8
    key = lambda r: (r["method"], r["dimension"])  # noqa: E731
    for a, b in zip(sorted(single, key=key), sorted(distributed, key=key)):
        assert key(a) == key(b)
        for metric in ("kl", "wasserstein", "dtw", "macro_f1", "micro_f1", "agents", "missing_sim"):
            assert (math.isnan(a[metric]) and math.isnan(b[metric])) or a[metric] == pytest.approx(b[metric]), (key(a), metric)
    mf_rows = [r for r in single if r["method"] == "mf"]
    assert all(r["missing_sim"] >= 1 for r in mf_rows)  # the failed generation is counted, not dropped
    for name in ("kl.md", "kl.csv", "summary.md", "radar_kl.png"):
        assert (tmp_path / "ray" / name).is_file() and (tmp_path / "single" / name).is_file()
    assert len(list((tmp_path / "single" / "plots").glob("*.png"))) == 8
