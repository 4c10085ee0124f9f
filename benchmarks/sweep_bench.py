"""The Ray sweep against a faithful reference loop and the engine's saturated speed, in one run.

    .venv/bin/python benchmarks/sweep_bench.py                 # throughput: saturated, reference, sweep

Throughput (default model, one process for (b) and (a), then a local Ray for the sweep):
- saturated: one large generate call of policy prompts on the in-process engine, no
  orchestration (generated tokens / wall second);
- reference: the events one after another, each step one batched policy call for the step's
  agents and one batch-1 mean-field call, on that same engine (mfray.sim.driver.run_event);
- replayed: the reference's own requests again, all prompts of one role in one generate call
  (max_batch batches, each prompt with its seed): the ceiling for this work on this engine;
- sweep: jobs/simulate_sweep.py's run_sweep on a local Ray (num_cpus = this machine's cores): one
  rollout actor with every event in flight, the LLMServer replica with the same torch threads as
  the in-process engine and nice 0 (Ray's workers default to 15, which loses CPU to every
  nice-0 process). Its Serve deployment is started before the clock starts.
Generated tokens count policy and mean-field completions (the engine's / the runs' accounting).

The orchestration's own ceiling and memory at 10,000 runs, with the model taken out:
benchmarks/orchestration_bench.py.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # jobs/ is not a package on the path

TWITTER = REPO.parent / "shared" / "data" / "twitter_rumdect"


def event_files(n: int) -> list[str]:
    files = sorted(TWITTER.glob("*.json"))
    if len(files) < n:
        raise SystemExit(f"need {n} event files under {TWITTER}, found {len(files)}")
    return [str(f) for f in files[:n]]


def start_ray():
    import ray

    ray.init(num_cpus=os.cpu_count(), object_store_memory=int(1e9), include_dashboard=False, log_to_driver=False)
    return ray


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


# ---- throughput ---------------------------------------------------------------------------------
class Recorder:
    """The engine behind the LLM protocol, noting each generate call's prompts, sampling,
    adapter and per-prompt seeds, so the same work can be replayed in large batches."""

    def __init__(self, engine):
        self.engine, self.calls = engine, []

    async def generate(self, prompts, sampling, adapter=None, seeds=None):
        from mfray.llm.base import prompt_seeds

        self.calls.append((list(prompts), sampling, adapter, prompt_seeds(len(prompts), sampling, seeds)))
        return await self.engine.generate(prompts, sampling, adapter, seeds)

    async def score(self, prompts, completions, adapter=None):
        return await self.engine.score(prompts, completions, adapter)


def throughput(args) -> dict:
    import torch

    from mfray.data import load_events
    from mfray.llm.base import SamplingParams
    from mfray.llm.local import LocalEngine
    from mfray.sim.config import RolloutConfig
    from mfray.sim.driver import run_event
    from mfray.sim.rollout import EventRollout

    files = event_files(args.events)
    events, problems = load_events(files)
    assert not problems, problems
    cfg = RolloutConfig.model_validate({
        "method": "mf", "horizon": args.agents, "agents_per_step": args.per_step, "sim_start": args.sim_start,
        "policy": {"max_new_tokens": args.policy_tokens},
        "mean_field": {"temperature": 0.1, "max_new_tokens": args.mf_tokens, "first_line": False}})
    threads = torch.get_num_threads()
    out: dict = {"config": {**vars(args), "torch_threads": threads, "cores": os.cpu_count()}, "load_start": load()}
    engine = LocalEngine.load("default")
    engine.generate_sync(["warm up"], SamplingParams(max_new_tokens=4, seed=0))

    # (b) saturated: the first simulated step's policy prompts of every event, in one call.
    prompts = [p for e in events for p in EventRollout(e, cfg.model_copy(update={"sim_start": 0})).next_request().prompts]
    prompts = prompts[: args.saturated_prompts]
    sampling = cfg.policy.model_copy(update={"first_line": False}).params(0)  # all max_new_tokens, no cut at a newline
    began = time.perf_counter()
    gens = engine.generate_sync(prompts, sampling)
    elapsed = time.perf_counter() - began
    tokens = sum(g.completion_tokens for g in gens)
    out["saturated"] = {"prompts": len(prompts), "tokens": tokens, "seconds": elapsed, "tokens_per_s": tokens / elapsed, "load": load()}
    print("saturated:", out["saturated"], flush=True)

    # (a) reference loop, noting every request it makes.
    recorder = Recorder(engine)
    before = engine.stats.completion_tokens
    began = time.perf_counter()
    for event in events:
        asyncio.run(run_event(event, recorder, cfg, seed=0))
    elapsed = time.perf_counter() - began
    tokens = engine.stats.completion_tokens - before
    out["reference"] = {"events": len(events), "tokens": tokens, "seconds": elapsed, "tokens_per_s": tokens / elapsed,
                        "events_per_hour": len(events) * 3600 / elapsed, "engine_calls": len(recorder.calls), "load": load()}
    print("reference:", out["reference"], flush=True)

    # (b') the same requests, replayed as large batches: all prompts of one role in one call
    # (the engine cuts it into max_batch batches), each with the seed it had. The most any
    # orchestration of this work can get from this engine.
    groups: dict = {}
    for prompts, sampling, adapter, seeds in recorder.calls:
        key = (dataclasses.replace(sampling, seed=None), adapter)
        groups.setdefault(key, ([], []))
        groups[key][0].extend(prompts)
        groups[key][1].extend(seeds)
    before = engine.stats.completion_tokens
    began = time.perf_counter()
    for (sampling, adapter), (prompts, seeds) in groups.items():
        engine.generate_sync(prompts, sampling, adapter, seeds=seeds)
    elapsed = time.perf_counter() - began
    tokens = engine.stats.completion_tokens - before
    out["replayed"] = {"prompts": sum(len(p) for p, _ in groups.values()), "tokens": tokens, "seconds": elapsed,
                       "tokens_per_s": tokens / elapsed, "load": load()}
    print("replayed:", out["replayed"], flush=True)
    del engine

    # The sweep, on a local Ray.
    from jobs.simulate_sweep import run_sweep, start
    from mfray.ray.sweep import SweepConfig

    sweep_out = Path(args.out) / "trajectories"
    shutil.rmtree(sweep_out, ignore_errors=True)
    scfg = SweepConfig.model_validate({
        "events": files, "methods": ["mf"], "seeds": [0], "out": str(sweep_out), "llm": "serve", "actors": 1,
        "actor_num_cpus": 0.5, "concurrency": len(files), "events_per_call": args.events_per_call,
        "llm_threads": threads, "llm_niceness": 0, "progress_every_s": 30, "rollout": cfg.model_dump(mode="json")})
    ray = start_ray()
    start(scfg)
    from mfray.ray.serve_llm import ServeLLM

    began = time.perf_counter()
    rows = run_sweep(scfg)
    elapsed = time.perf_counter() - began
    stats = asyncio.run(ServeLLM.from_app(scfg.serve_app).stats())
    done = [r for r in rows if r["status"] == "done"]
    tokens = sum(int(r["completion_tokens"]) for r in done)
    out["sweep"] = {"events": len(done), "tokens": tokens, "seconds": elapsed, "tokens_per_s": tokens / elapsed,
                    "events_per_hour": len(done) * 3600 / elapsed, "load": load(),
                    "replica": {k: stats[k] for k in ("batches", "requests", "completion_tokens", "busy_s", "niceness")}}
    print("sweep:", out["sweep"], flush=True)
    ray.shutdown()
    s, r, b, p = out["sweep"], out["reference"], out["saturated"], out["replayed"]
    out["ratios"] = {"sweep_over_reference_events_per_hour": s["events_per_hour"] / r["events_per_hour"],
                     "sweep_over_reference_tokens_per_s": s["tokens_per_s"] / r["tokens_per_s"],
                     "sweep_over_saturated_tokens_per_s": s["tokens_per_s"] / b["tokens_per_s"],
                     "sweep_over_replayed_tokens_per_s": s["tokens_per_s"] / p["tokens_per_s"],
                     "replayed_over_reference_tokens_per_s": p["tokens_per_s"] / r["tokens_per_s"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=8)
    parser.add_argument("--agents", type=int, default=64)
    parser.add_argument("--per-step", type=int, default=16)
    parser.add_argument("--sim-start", type=int, default=32)
    parser.add_argument("--policy-tokens", type=int, default=24)
    parser.add_argument("--mf-tokens", type=int, default=64)
    parser.add_argument("--saturated-prompts", type=int, default=64)
    parser.add_argument("--events-per-call", type=int, default=2)
    parser.add_argument("--out", default="runs/sweep_bench")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    result = throughput(args)
    (Path(args.out) / "throughput.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
