"""A simulation sweep as a Ray job:

    ray job submit --working-dir . --runtime-env runtime_env.yaml -- \
        python jobs/simulate_sweep.py --config jobs/configs/simulate_sweep_test.yaml

Grid of event files x methods x seeds -> Ray Data actor pool of rollout actors -> finished runs
published, a part file per actor call and method, into the Parquet dataset `out`/trajectories
(mfray.sim.store; pyarrow and Ray Data read it as one table), plus sweep_log.jsonl (every summary row, appended as batches
finish) and sweep_summary.csv (the merged view over all attempts). Rerunning skips finished runs
made under the same config and refuses runs made under another (--set overwrite=true redoes
them); a killed actor is restarted and its runs resume from their last checkpoint. With an
`evaluate:` section the same job then annotates and scores the runs as Ray Data stages
(mfray.ray.evaluation), writing the report under evaluate.out.
"""

from __future__ import annotations

import argparse
import time
import warnings

import ray

from mfray.config import load_config
from mfray.ray.summary import SummaryStore
from mfray.ray.sweep import (
    SUMMARY_COLUMNS, RolloutActor, SweepConfig, calls_per_actor, check_fits, check_grid, check_queue, grid,
    list_event_files, replica_max_queue, serve_actor_options, summarise_sweep,
)


def start(cfg: SweepConfig) -> None:
    """Check the sweep fits the cluster's CPUs (and, llm=serve, the replica's queue), then deploy
    the LLMServer app."""
    replica = serve_actor_options(cfg) if cfg.llm == "serve" else {}
    check_fits(cfg, ray.cluster_resources().get("CPU", 0.0), replica.get("num_cpus", 0.0))
    if cfg.llm == "serve":
        from mfray.ray.serve_llm import deploy_llm_server

        check_queue(cfg, cfg.llm_max_queue or replica_max_queue())
        queue = {} if cfg.llm_max_queue is None else {"max_queue": cfg.llm_max_queue}
        deploy_llm_server(cfg.model, name=cfg.serve_app, options={"ray_actor_options": replica}, **queue)


def run_sweep(cfg: SweepConfig) -> list[dict]:
    """Run the grid through the actor pool (the LLM backend already up); summary rows of this
    attempt, each logged under `out` as its batch returns, with a progress line (and the merged
    sweep_summary.csv rewritten) at most every `progress_every_s`."""
    files = list_event_files(cfg.events)
    check_grid(cfg, files)
    store = SummaryStore(cfg.out, SUMMARY_COLUMNS)
    if store.torn_lines:
        print(f"note: {store.torn_lines} unreadable lines in {cfg.out}/sweep_log.jsonl (a crash mid-write) were skipped", flush=True)
    rows = grid(files, cfg)
    print(f"sweep: {len(files)} event files x {len(cfg.methods)} methods x {len(cfg.seeds)} seeds "
          f"= {len(rows)} grid rows on {cfg.actors} actors ({cfg.actor_num_cpus:g} CPU each); output {cfg.out}", flush=True)
    began = time.perf_counter()
    # Blocks made here in the driver (no repartition task competing with the actors for CPUs).
    ds = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // cfg.events_per_call)))
    # A block returns when its slowest rollout ends: an hour and more on a busy CPU. Ray Data's
    # no-progress guard (30 minutes by default since Ray 2.60) failed a whole sweep for that
    # (2026-12-07); runs have their own time limits (llm_timeout_s) and checkpoints.
    ds.context.execution_no_progress_timeout_s = -1
    calls = calls_per_actor(cfg)
    with warnings.catch_warnings():
        # max_restarts / max_task_retries have no named parameter yet; Ray Data's default is to
        # restart forever, which would loop on an event that crashes its actor every time.
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        results = ds.map_batches(
            RolloutActor, fn_constructor_args=(cfg.model_dump(mode="json"),), batch_format="pandas",
            batch_size=cfg.events_per_call, compute=ray.data.ActorPoolStrategy(
                size=cfg.actors, max_tasks_in_flight_per_actor=calls, max_concurrent_calls_per_actor=calls),
            num_cpus=cfg.actor_num_cpus, max_restarts=cfg.max_restarts, max_task_retries=cfg.max_restarts,
        )
    summary: list[dict] = []
    last_line = began
    for block in results.iter_batches(batch_size=None, batch_format="pandas"):
        finished = block.to_dict("records")
        store.add(finished)
        summary += finished
        for row in finished:
            if row["status"] in ("error", "invalid"):
                print(f"  {row['status']}: {row['file']} {row['event_id'] or ''}: {row['error']}", flush=True)
        if time.perf_counter() - last_line >= cfg.progress_every_s:
            last_line = time.perf_counter()
            store.write_csv()
            print("  progress: " + summarise_sweep(summary, last_line - began, len(rows)), flush=True)
    store.write_csv()
    print("done: " + summarise_sweep(summary, time.perf_counter() - began, len(rows)), flush=True)
    return summary


def evaluate_sweep(cfg: SweepConfig) -> list[dict]:
    """The chained evaluation (cfg.evaluate) of the sweep's runs, on Ray Data in this job. The
    sweep's LLMServer app is deleted first: its CPU goes to the evaluation's actor pools."""
    from mfray.ray.evaluation import evaluate_on_ray

    if cfg.llm == "serve":
        from ray import serve

        serve.delete(cfg.serve_app)
    print(f"evaluating the sweep's runs into {cfg.evaluate.out}", flush=True)
    rows = evaluate_on_ray(cfg.evaluate, annotator_actors=cfg.evaluate_annotator_actors)
    print(f"evaluation: {len(rows)} metric rows; tables and plots in {cfg.evaluate.out}", flush=True)
    return rows


def main(cfg: SweepConfig) -> list[dict]:
    """Run the sweep (and, with `evaluate:`, its evaluation); the sweep's summary rows."""
    if not ray.is_initialized():
        ray.init()
    start(cfg)
    rows = run_sweep(cfg)
    if cfg.evaluate is not None:
        evaluate_sweep(cfg)
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="SweepConfig YAML (jobs/configs/simulate_sweep*.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override")
    args = parser.parse_args()
    main(load_config(SweepConfig, args.config, args.set))
