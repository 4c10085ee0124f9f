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
from mfray.prompts.render import render_chat
from mfray.sim.trajectory import encode_prompt
from mfray.types import StepRecord
from tests.unit.test_run_store import publish_records

pytestmark = pytest.mark.integration
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # jobs/ is not a package on the path


def make_trajectories(data_dir, out: Path, methods=(("state", 0), ("mf", 0)), no_prompt=(), inserted=()) -> list[StepRecord]:
    """Methods on one real Twitter event; the 'simulated' posts are other real tweets of the
    event, drawn with a fixed seed (this tests the pipeline's bookkeeping, not a simulator). Each
    simulated agent records the policy prompt rendered as the rollout renders it, except in the
    methods of `no_prompt` (as if no prompt had been stored: their NLL cannot be scored).
    mf's agent 70 failed; `inserted` (method, agent) pairs are intervention posts (no prompt)."""
    event = load_events([data_dir / "twitter_rumdect/E102.json"])[0][0]
    texts = [p.text for p in event.responses]
    written = []
    for method, seed in methods:
        rng = random.Random(method)
        records = []
        for j in range(96):
            failed = method == "mf" and j == 70
            warm = j < 48
            insert = (method, j) in inserted
            prompt = render_chat("policy", event.language, topic=event.topic_text, mean_field=f"step {j // 16}" if method == "mf" else "",
                                 signal=None, recent=[], popular=[], latent_state=None, latent_distribution=None,
                                 state=f"followers: {j}")
            records.append(StepRecord(
                event_id=event.event_id, method=method, seed=seed, language=event.language, topic=event.topic_text,
                step=j // 16, agent_index=j, real_text=texts[j],
                simulated_text="OFFICIAL: false" if insert else None if warm or failed else rng.choice(texts),
                mean_field="", signal=None, state_text="", failed=failed, warmup=warm, intervention=insert,
                policy_prompt=None if warm or insert or method in no_prompt else encode_prompt(prompt),
            ))
        publish_records(out, records)
        written += records
    return written


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, object_store_memory=int(1e9), include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_ray_stages_equal_single_process(data_dir, tmp_path, local_ray, tiny_model_dir):
    from jobs.evaluate import main as ray_main

    # "recent" stored no policy prompts: its NLL is missing in both paths.
    # state's agent 60 is an inserted intervention post; mf's agent 70 failed.
    make_trajectories(data_dir, tmp_path / "traj", methods=(("state", 0), ("mf", 0), ("recent", 0)), no_prompt=("recent",),
                      inserted=(("state", 60),))
    cfg = EvaluateConfig(trajectories=str(tmp_path / "traj"), out=str(tmp_path / "single"), eval_start=50, eval_end=96,
                         nll_model=str(tiny_model_dir), max_failure_rate=0.02)
    single = evaluate(cfg)
    ray_cfg = cfg.model_copy(update={"out": str(tmp_path / "ray")})
    # This Ray has 2 CPUs: the annotator actor's and one for tasks. An NLL actor reserving a third
    # would wait forever; main says so up front, and the tiny model's actor can reserve none.
    with pytest.raises(ValueError, match="has 2 CPUs but the actor pools plus one task CPU need 3"):
        ray_main(ray_cfg)
    distributed = ray_main(ray_cfg, nll_cpus=0)
    assert len(single) == len(distributed) == 3 * 8
    key = lambda r: (r["method"], r["dimension"])  # noqa: E731
    for a, b in zip(sorted(single, key=key), sorted(distributed, key=key)):
        assert key(a) == key(b)
        for metric in ("kl", "wasserstein", "dtw", "macro_f1", "micro_f1", "agents", "missing_sim",
                       "nll_token", "nll_action", "nll_actions", "nll_unscored", "simulated", "failed", "failure_rate"):
            assert (math.isnan(a[metric]) and math.isnan(b[metric])) or a[metric] == pytest.approx(b[metric]), (key(a), metric)
    mf_rows = [r for r in single if r["method"] == "mf"]
    assert all(r["missing_sim"] >= 1 for r in mf_rows)  # the failed generation is counted, not dropped
    # Agents 50..95 are evaluated (46). mf: 1 of 46 failed = 2.2% > 2%; state: 45 simulated (the
    # inserted post is not), none failed; recent: 0 of 46.
    by_method = {r["method"]: r for r in distributed}
    assert (by_method["mf"]["simulated"], by_method["mf"]["failed"]) == (46, 1)
    assert by_method["mf"]["failure_rate"] == pytest.approx(1 / 46)
    assert (by_method["state"]["simulated"], by_method["state"]["failed"], by_method["recent"]["simulated"]) == (45, 0, 46)
    nll_by_method = {r["method"]: r for r in distributed}
    assert nll_by_method["mf"]["nll_actions"] == 46 and nll_by_method["state"]["nll_token"] > 0
    assert math.isnan(nll_by_method["recent"]["nll_token"]) and nll_by_method["recent"]["nll_unscored"] == 46
    for name in ("kl.md", "kl.csv", "nll.md", "summary.md", "radar_kl.png"):
        assert (tmp_path / "ray" / name).is_file() and (tmp_path / "single" / name).is_file()
    for name in ("nll.md", "kl.md", "summary.md", "realism.md", "realism.csv", "noise_floor.csv"):
        assert (tmp_path / "ray" / name).read_text() == (tmp_path / "single" / name).read_text(), name
    # The floor comes from the real rows of the annotated dataset (each agent once, 3 methods).
    summary = (tmp_path / "ray" / "summary.md").read_text()
    assert "## Annotator and noise floor" in summary and "Annotator: **hybrid-v2**" in summary
    assert "- KL divergence (lower is better): mf " in summary and "#### twitter_third (432 posts" in summary
    kl = (tmp_path / "ray" / "kl.md").read_text()
    assert "| 2.2% ⚠ |" in kl and "max_failure_rate 2.0%: mf (2.2%)" in kl and "| 0.0% |" in kl
    assert len(list((tmp_path / "single" / "plots").glob("*.png"))) == 8
