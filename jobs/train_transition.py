"""`ray job submit --runtime-env runtime_env.yaml -- python jobs/train_transition.py --config jobs/configs/train_transition.yaml`

MF-MDP's state-transition model f_psi trained on Ray Train from all-real mfmdp runs
(jobs/configs/mdp_transition_data.yaml makes them): per-epoch train and held-out L_seq and L_roll
are printed, the model is written to <out>/fpsi.pt, which an mfmdp simulation takes as
`rollout.mdp.transition`.
"""

from __future__ import annotations

import argparse
import json

import ray

from mfray.config import load_config
from mfray.mdp.config import TransitionJobConfig
from mfray.ray.train_transition import train_on_ray

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, e.g. transition.epochs=5")
    args = parser.parse_args()
    if not ray.is_initialized():
        ray.init()
    print(json.dumps(train_on_ray(load_config(TransitionJobConfig, args.config, args.set)), indent=2))
