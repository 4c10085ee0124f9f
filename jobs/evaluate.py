"""`ray job submit -- python jobs/evaluate.py --config jobs/configs/evaluate.yaml`

Evaluate a simulation output folder's runs on Ray Data (mfray.ray.evaluation): annotation, NLL
and metrics as Ray Data stages, with the same tables and plots as `mfray evaluate`.
"""

from __future__ import annotations

import argparse
import sys

import ray

from mfray.config import load_config
from mfray.eval.config import EvaluateConfig
from mfray.ray.evaluation import evaluate_on_ray


def main(
    cfg: EvaluateConfig, annotator_actors: int = 1, nll_actors: int = 1, nll_cpus: float = 1.0, nll_gpus: float = 0.0
) -> list[dict]:
    """Run the evaluation pipeline on the connected (or a new local) Ray cluster."""
    if not ray.is_initialized():
        ray.init()
    return evaluate_on_ray(cfg, annotator_actors, nll_actors, nll_cpus, nll_gpus)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--annotator-actors", type=int, default=1)
    parser.add_argument("--nll-actors", type=int, default=1, help="actors holding the policy model for NLL")
    parser.add_argument("--nll-cpus", type=float, default=1.0, help="CPUs each NLL actor reserves")
    parser.add_argument("--nll-gpus", type=float, default=0.0, help="GPUs per NLL actor (0: CPU)")
    args = parser.parse_args()
    cfg = load_config(EvaluateConfig, args.config, args.set)
    main(cfg, args.annotator_actors, args.nll_actors, args.nll_cpus, args.nll_gpus)
    sys.exit(0)
