"""`ray job submit -- python jobs/evaluate.py --config jobs/configs/evaluate.yaml`

Evaluate a sweep's trajectories on Ray Data: read Parquet -> explode into texts -> annotate in an
actor pool -> metrics per trajectory -> the same tables and radar charts as `mfray evaluate`.
"""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import ray

from mfray.config import load_config
from mfray.eval.config import EvaluateConfig
from mfray.eval.report import write_summary
from mfray.ray.eval_stages import TRAJECTORY_COLUMNS, AnnotateStage, explode_sides, metrics_for_trajectory


def main(cfg: EvaluateConfig, annotator_actors: int = 1) -> list[dict]:
    """Run the evaluation pipeline on the connected (or a new local) Ray cluster."""
    if not ray.is_initialized():
        ray.init()
    files = sorted(str(p) for p in Path(cfg.trajectories).glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no trajectory .parquet files in {cfg.trajectories}")
    ds = ray.data.read_parquet(files, columns=list(TRAJECTORY_COLUMNS))
    texts = ds.map_batches(partial(explode_sides, eval_start=cfg.eval_start, eval_end=cfg.eval_end), batch_format="pandas")
    labelled = texts.map_batches(
        AnnotateStage, fn_constructor_args=(cfg.model_dump(mode="json"),), batch_format="pandas", batch_size=256,
        compute=ray.data.ActorPoolStrategy(size=annotator_actors),
    )
    metrics = labelled.groupby(["event_id", "method", "seed"]).map_groups(metrics_for_trajectory, batch_format="pandas")
    rows = sorted(metrics.to_pandas().to_dict("records"), key=lambda r: (r["event_id"], r["method"], r["seed"]))
    write_summary(rows, Path(cfg.out))
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--annotator-actors", type=int, default=1)
    args = parser.parse_args()
    main(load_config(EvaluateConfig, args.config, args.set), args.annotator_actors)
    sys.exit(0)
