"""A simulation sweep as a Ray job:

    ray job submit --working-dir . --runtime-env runtime_env.yaml -- \
        python jobs/simulate_sweep.py --config jobs/configs/sweep_test_events.yaml

Grid of event files x methods x seeds -> Ray Data actor pool of rollout actors -> one Parquet
trajectory per run under `out`, plus sweep_summary.csv. Rerunning skips finished runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import ray

from mfray.config import load_config
from mfray.ray.sweep import RolloutActor, SweepConfig, grid, list_event_files, summarise_sweep


def main(cfg: SweepConfig) -> list[dict]:
    if not ray.is_initialized():
        ray.init()
    if cfg.llm == "serve":
        from mfray.ray.serve_llm import deploy_llm_server

        deploy_llm_server(cfg.model, name=cfg.serve_app)
    files = list_event_files(cfg.events)
    rows = grid(files, cfg)
    print(f"sweep: {len(files)} event files x {len(cfg.methods)} methods x {len(cfg.seeds)} seeds "
          f"= {len(rows)} grid rows on {cfg.actors} actors; output {cfg.out}", flush=True)
    began = time.perf_counter()
    ds = ray.data.from_items(rows).repartition(max(1, len(rows) // cfg.events_per_call))
    results = ds.map_batches(
        RolloutActor, fn_constructor_args=(cfg.model_dump(mode="json"),), batch_format="pandas",
        batch_size=cfg.events_per_call, compute=ray.data.ActorPoolStrategy(size=cfg.actors),
        max_restarts=cfg.max_restarts, max_task_retries=cfg.max_restarts,
    )
    summary: list[dict] = []
    for row in results.iter_rows():
        summary.append(row)
        if row["status"] in ("error", "invalid"):
            print(f"  {row['status']}: {row['file']} {row['event_id'] or ''}: {row['error']}", flush=True)
        if len(summary) % 10 == 0:
            print("  " + summarise_sweep(summary, time.perf_counter() - began), flush=True)
    line = summarise_sweep(summary, time.perf_counter() - began)
    print("done: " + line, flush=True)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    import pandas as pd

    pd.DataFrame(summary).to_csv(Path(cfg.out) / "sweep_summary.csv", index=False)
    return summary


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="SweepConfig YAML (jobs/configs/sweep_*.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override")
    args = parser.parse_args()
    main(load_config(SweepConfig, args.config, args.set))
