"""Train in one process (no Ray) and write the same outputs as `mfray train`: curves, held-out
NLL before vs after, summary.json. For machines without Ray, such as the GPU check machine:

    python benchmarks/train_single.py --config jobs/configs/train_ibtune.yaml --device cuda \\
        --set use_gpu=true --set workers=1 --set steps=60

On CUDA the loop runs DeepSpeed ZeRO-2 in bf16 (backend auto), as a Ray Train GPU worker would.
"""

from __future__ import annotations

import argparse
import json
import time

from mfray.config import load_config
from mfray.train.config import TrainConfig
from mfray.train.loop import run_single_process
from mfray.train.run import check_data, finish_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    cfg = load_config(TrainConfig, args.config, args.set)
    _, heldout = check_data(cfg)
    began = time.perf_counter()
    run_single_process(cfg, args.device)
    trained = time.perf_counter() - began
    summary = finish_run(cfg, heldout, device=args.device)
    summary["train_seconds"] = trained
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
