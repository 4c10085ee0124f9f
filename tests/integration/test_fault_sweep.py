"""A sweep on a real local Ray against an OpenAI-compatible server on 127.0.0.1 that injects a
scripted mix of 500s, 429s with Retry-After, cut-off and HTML 200 bodies and stalls: the sweep
completes, its summary accounts for every injected fault, no real post ever stands in for a
simulated one, and a rerun changes nothing."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from mfray.http_common import ServerThread
from mfray.ray.sweep import SweepConfig
from tests.integration.fault_server import FAULTS, FaultPlan, fault_app

pytestmark = pytest.mark.integration
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # jobs/ is not a package on the path


def test_sweep_survives_injected_faults_and_counts_them(local_ray, data_dir, tmp_path):
    from jobs.simulate_sweep import main

    plan = FaultPlan(doom_every=3, stall_s=5.0, retry_after_s=1)  # a stall outlasts the timeout below
    out = tmp_path / "out"
    with ServerThread(fault_app(plan)) as server:
        cfg = SweepConfig.model_validate({
            "events": [str(data_dir / "twitter_rumdect/E102.json"), str(data_dir / "twitter_rumdect/E104.json")],
            "methods": ["state", "mf"], "out": str(out), "actors": 2, "actor_num_cpus": 0.5, "events_per_call": 2,
            "llm": "endpoint", "progress_every_s": 0,
            "endpoint": {"base_url": server.base_url, "model": "stand-in", "timeout_s": 2.5, "max_retries": 3,
                         "backoff_s": 0.05, "max_concurrency": 16},
            "rollout": {"horizon": 32, "agents_per_step": 8, "sim_start": 8, "retries": 2},
        })
        rows = main(cfg)
        summary = pd.DataFrame(rows)

        # The sweep completed: every run done.
        assert sorted(zip(summary["event_id"], summary["method"], summary["status"])) == [
            ("E102", "mf", "done"), ("E102", "state", "done"), ("E104", "mf", "done"), ("E104", "state", "done")]
        # Every kind of fault was injected, and each one is in the summary: a retry, or (the
        # last attempt of a request the client gave up on) an error.
        assert all(plan.by_kind[k] > 0 for k in FAULTS), plan.by_kind
        assert int(summary["llm_retries"].sum() + summary["llm_errors"].sum()) == plan.faults
        assert int(summary["llm_errors"].sum()) > 0

        simulated = pq.read_table(out / "trajectories", partitioning=None).to_pandas()
        assert set(summary["path"]) == {str(p) for p in (out / "trajectories").rglob("part-*.parquet")}
        simulated = simulated[~simulated["warmup"]]
        # Agents whose prompts always fail are recorded as failed, never filled in.
        failed = simulated[simulated["failed"]]
        assert len(failed) == int(summary["failures"].sum()) > 0
        assert failed["simulated_text"].isna().all()
        # Every simulated post is one of the server's answers; none is a real post.
        ok = simulated[~simulated["failed"]]
        assert set(ok["simulated_text"]) <= set(plan.answers)
        assert not set(ok["simulated_text"]) & set(simulated["real_text"].dropna())

        # A rerun changes nothing: no request, same files, same merged summary.
        digests = {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in summary["path"]}
        merged = (out / "sweep_summary.csv").read_text()
        requests = plan.requests
        again = main(cfg)
        assert sorted(r["status"] for r in again) == ["skipped"] * 4
        assert plan.requests == requests
        assert {p: hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in summary["path"]} == digests
        assert (out / "sweep_summary.csv").read_text() == merged
