"""A simulation sweep on a real local Ray with as many CPUs as this machine has cores (2): grid of
real event files x methods through a pool of two rollout actors, finished runs published into one
Parquet dataset; a rerun
skips every finished run; a rollout actor killed mid-sweep is restarted and its runs resume from
their checkpoints, leaving complete, duplicate-free output."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mfray.ray.sweep import SweepConfig
from mfray.sim.store import published_runs

pytestmark = pytest.mark.integration
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # jobs/ is not a package on the path


def test_actor_cpus_are_validated_and_checked_against_the_cluster():
    from pydantic import ValidationError

    from mfray.ray.sweep import (
        calls_per_actor, check_fits, check_queue, replica_max_queue, required_cpus, serve_actor_options)

    with pytest.raises(ValidationError, match="actor_num_cpus=1.5"):
        SweepConfig.model_validate({"actor_num_cpus": 1.5})  # Ray takes fractions only up to 1
    with pytest.raises(ValidationError, match="actor_num_cpus"):
        SweepConfig.model_validate({"actor_num_cpus": 0})
    cfg = SweepConfig.model_validate({"actors": 2, "actor_num_cpus": 2, "llm": "serve"})
    assert required_cpus(cfg, serve_replica_cpus=1) == 5  # 2 x 2 + the replica's 1
    with pytest.raises(ValueError, match=r"needs 5 logical CPUs .* cluster has 2; lower actors or actor_num_cpus"):
        check_fits(cfg, cluster_cpus=2, serve_replica_cpus=1)
    check_fits(cfg.model_copy(update={"actor_num_cpus": 0.5}), cluster_cpus=2, serve_replica_cpus=1)  # 2 x 0.5 + 1
    with pytest.raises(ValueError, match=r"up to 512 prompts in flight \(actors=2 x concurrency=16 x rollout.agents_per_step=16\) "
                                         r"but the LLMServer replica queues 256; lower concurrency"):
        check_queue(cfg.model_copy(update={"concurrency": 16}), 256)
    check_queue(cfg.model_copy(update={"concurrency": 8}), replica_max_queue())  # 2 x 8 x 16 = 256 fits
    assert serve_actor_options(cfg) == {"num_cpus": 1}
    assert serve_actor_options(cfg.model_copy(update={"llm_threads": 2})) == {
        "num_cpus": 1, "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "2"}}}
    assert serve_actor_options(cfg.model_copy(update={"llm_threads": 2, "llm_niceness": 0})) == {
        "num_cpus": 1, "runtime_env": {"env_vars": {"OMP_NUM_THREADS": "2", "RAY_worker_niceness": "0"}}}
    with pytest.raises(ValueError, match="llm_niceness"):
        SweepConfig.model_validate({"llm_niceness": -5})
    # concurrency 4 over calls of 8 rows: one call fills the gate, one more waits ready.
    assert calls_per_actor(cfg) == 2 and calls_per_actor(cfg.model_copy(update={"events_per_call": 1})) == 5


def test_sweep_writes_every_run_and_resumes(local_ray, data_dir, tiny_model_dir, tmp_path):
    from jobs.simulate_sweep import main

    bad = tmp_path / "bad.json"
    bad.write_text("[", encoding="utf-8")
    cfg = SweepConfig.model_validate({
        "events": [str(data_dir / "twitter_rumdect/E102.json"), str(data_dir / "weibo_rumdect/test/3476055656644087.json"), str(bad)],
        "methods": ["state", "mf"], "out": str(tmp_path / "out"), "actors": 2, "actor_num_cpus": 0.5, "events_per_call": 2, "llm": "local",
        "model": {"path": str(tiny_model_dir)},
        "rollout": {"horizon": 48, "agents_per_step": 16, "sim_start": 32, "policy": {"max_new_tokens": 4},
                    "mean_field": {"temperature": 0.1, "max_new_tokens": 8, "first_line": False}},
    })
    rows = main(cfg)
    status = sorted((r["file"].split("/")[-1], r["method"], r["status"]) for r in rows)
    assert status == [("3476055656644087.json", "mf", "done"), ("3476055656644087.json", "state", "done"),
                      ("E102.json", "mf", "done"), ("E102.json", "state", "done"),
                      ("bad.json", "mf", "invalid"), ("bad.json", "state", "invalid")]
    runs = published_runs(tmp_path / "out")
    assert len(runs) == 4 and all(r.rows == 48 for r in runs.values())
    assert {Path(r["path"]) for r in rows if r["status"] == "done"} == {r.part for r in runs.values()}
    again = main(cfg)
    assert sorted(r["status"] for r in again if r["status"] != "invalid") == ["skipped"] * 4
    # The summary kept both attempts in its log; the merged view still shows the runs as done.
    import pandas as pd

    assert len((tmp_path / "out" / "sweep_log.jsonl").read_text().splitlines()) == 12
    merged = pd.read_csv(tmp_path / "out" / "sweep_summary.csv")
    assert sorted(merged["status"]) == ["done"] * 4 + ["invalid"] * 2
    # Another rollout config into the same folder is refused before anything runs.
    other = cfg.model_copy(update={"rollout": cfg.rollout.model_copy(update={"horizon": 64})})
    with pytest.raises(ValueError, match=r"(?s)made under another config.*rollout\.horizon.*overwrite=true"):
        main(other)


def _rollout_actor_pids() -> dict[int, str]:
    """PID -> process title of this test's rollout actors (descendants of this process: other
    people's Ray clusters on the machine are never touched)."""
    import psutil

    out = {}
    for proc in psutil.Process().children(recursive=True):
        try:
            title = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if "MapBatches(RolloutActor)" in title:
            out[proc.pid] = title
    return out


def test_killed_actor_resumes_its_runs_from_checkpoints(local_ray, data_dir, tiny_model_dir, tmp_path):
    """SIGKILL one busy rollout actor mid-sweep: Ray restarts it and retries its batch, its runs
    pick up at their last checkpoint, and the output is complete and duplicate-free."""
    import json
    import os
    import signal
    import threading
    import time

    import pandas as pd

    from jobs.simulate_sweep import main

    out = tmp_path / "out"
    cfg = SweepConfig.model_validate({
        "events": [str(data_dir / "twitter_rumdect/E102.json"), str(data_dir / "weibo_rumdect/test/3476055656644087.json")],
        "methods": ["state", "mf"], "out": str(out), "llm": "local", "model": {"path": str(tiny_model_dir)},
        # 2 rows per call and 2 in flight per actor: a busy actor runs exactly the 2 runs of one call.
        "actors": 2, "actor_num_cpus": 0.5, "events_per_call": 2, "concurrency": 2, "checkpoint_every": 1,
        "max_restarts": 2, "progress_every_s": 0,
        # 30 steps per run, each checkpointed: a wide window to kill in.
        "rollout": {"horizon": 240, "agents_per_step": 8, "sim_start": 0, "policy": {"max_new_tokens": 4},
                    "mean_field": {"temperature": 0.1, "max_new_tokens": 8, "first_line": False}},
    })
    killed: dict = {}

    def kill_one_busy_actor() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not killed:
            time.sleep(0.2)
            if list((out / "in_progress").glob("*__s0.parquet")) or (out / "trajectories").exists():
                killed["late"] = True  # a run finished first: the sweep was too fast to kill mid-run
                return
            busy = [pid for pid, title in _rollout_actor_pids().items() if ".submit" in title]
            states = {}
            for path in (out / "in_progress").glob("*.ckpt.json"):
                try:
                    states[path.name] = json.loads(path.read_text(encoding="utf-8"))["rollout"]["step"]
                except (OSError, ValueError):
                    continue  # being replaced right now
            if busy and len(states) >= 2 * len(busy):  # every running run has a checkpoint
                os.kill(busy[0], signal.SIGKILL)
                killed.update(pid=busy[0], steps=states)

    watcher = threading.Thread(target=kill_one_busy_actor, daemon=True)
    watcher.start()
    rows = main(cfg)
    watcher.join()
    assert "pid" in killed, f"no actor was killed mid-run: {killed}"

    # Every (event, method, seed) reported once, done; the killed actor's runs resumed mid-way.
    summary = pd.DataFrame(rows)
    assert sorted(zip(summary["event_id"], summary["method"], summary["status"])) == [
        ("3476055656644087", "mf", "done"), ("3476055656644087", "state", "done"), ("E102", "mf", "done"), ("E102", "state", "done")]
    resumed = summary[summary["resumed_step"] > 0]
    assert len(resumed) == 2, summary[["event_id", "method", "resumed_step"]]
    for _, row in resumed.iterrows():
        at_kill = killed["steps"][f"{row['event_id']}__{row['method']}__s0.ckpt.json"]
        assert at_kill <= row["resumed_step"] < 30  # from the last checkpoint, never from scratch
        assert row["actions"] == 240 - 8 * row["resumed_step"]  # only the remaining steps were simulated
    fresh = summary[summary["resumed_step"] == 0]
    assert (fresh["actions"] == 240).all()

    # Complete and duplicate-free in the dataset; no checkpoint or unpublished run left behind.
    allrows = pq.read_table(out / "trajectories", partitioning=None).to_pandas()
    assert len(published_runs(out)) == 4 and len(allrows) == 4 * 240
    for _, t in allrows.groupby(["event_id", "method"]):
        assert sorted(t["agent_index"]) == list(range(240))
    assert not allrows.duplicated(["event_id", "method", "seed", "agent_index"]).any()
    assert [p.name for p in (out / "in_progress").iterdir() if not p.name.startswith(".")] == []


def test_a_sweep_evaluates_its_own_runs_when_asked(local_ray, data_dir, tiny_model_dir, tmp_path):
    """`evaluate:` chains the Ray Data evaluation after the rollouts, in the same job, over the
    sweep's own dataset; its trajectories folder is the sweep's out (another one is refused)."""
    from pydantic import ValidationError

    from jobs.simulate_sweep import main

    spec = {
        "events": [str(data_dir / "twitter_rumdect/E102.json")], "methods": ["state", "mf"], "out": str(tmp_path / "out"),
        "actors": 1, "actor_num_cpus": 0.5, "llm": "local", "model": {"path": str(tiny_model_dir)},
        "rollout": {"horizon": 48, "agents_per_step": 16, "sim_start": 16, "policy": {"max_new_tokens": 4},
                    "mean_field": {"temperature": 0.1, "max_new_tokens": 8, "first_line": False}},
        "evaluate": {"out": str(tmp_path / "eval"), "eval_start": 16, "eval_end": 48, "nll_model": None, "noise_seeds": [0]},
    }
    with pytest.raises(ValidationError, match="a sweep evaluates its own runs"):
        SweepConfig.model_validate({**spec, "evaluate": {**spec["evaluate"], "trajectories": str(tmp_path / "other")}})
    cfg = SweepConfig.model_validate(spec)
    assert cfg.evaluate.trajectories == str(tmp_path / "out")
    rows = main(cfg)
    assert sorted(r["status"] for r in rows) == ["done", "done"]
    kl = (tmp_path / "eval" / "kl.md").read_text(encoding="utf-8")
    assert "| mf |" in kl and "| state |" in kl
    assert (tmp_path / "eval" / "summary.md").is_file() and (tmp_path / "eval" / "realism.csv").is_file()
