"""`ray job submit --runtime-env runtime_env.yaml -- python jobs/train_ibtune.py --config jobs/configs/train_ibtune.yaml`

IB-Tune (or SFT, with mode: sft) on Ray Train: the worker group trains the LoRA adapters, survives
worker failures by resuming from the last checkpoint, then the held-out policy NLL before vs after
and the training curves are written to <out>/summary.json and <out>/training_curves.png.
"""

from __future__ import annotations

import argparse
import json

import ray

from mfray.config import load_config
from mfray.ray.train import run_training
from mfray.train.config import TrainConfig


def main(cfg: TrainConfig) -> dict:
    if not ray.is_initialized():
        ray.init()
    return run_training(cfg)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, e.g. steps=20")
    args = parser.parse_args()
    print(json.dumps(main(load_config(TrainConfig, args.config, args.set)), indent=2))
