"""Resident memory of one long resumable run (`mfray.sim.checkpoint.run_resumable`: the real rollout,
checkpoints and Parquet writer) with the stand-in LLM behind the project's interface (canned text
at once: bookkeeping only, never a result), sampled every --every actions after a gc: flat when
nothing grows with the run's length.

    .venv/bin/python benchmarks/long_run_memory.py --method mf --actions 20000
    .venv/bin/python benchmarks/long_run_memory.py --method mfmdp --actions 20000 --window 64
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--event", default="../shared/data/twitter_rumdect/E750.json")
    ap.add_argument("--method", default="mfmdp")
    ap.add_argument("--actions", type=int, default=20000)
    ap.add_argument("--every", type=int, default=4000)
    ap.add_argument("--window", type=int, default=64, help="f_psi's window in steps (mfmdp)")
    ap.add_argument("--transition", default="runs/mdp_transition/fpsi.pt", help="f_psi checkpoint (mfmdp)")
    args = ap.parse_args()

    import psutil

    from mfray.data.validate import load_events
    from mfray.llm.standin import StandInLLM
    from mfray.sim.checkpoint import run_resumable
    from mfray.sim.config import RolloutConfig
    from mfray.sim.identity import make_identity

    (event,), _ = load_events([args.event])
    mdp = {"mdp": {"transition": args.transition, "window": args.window}} if args.method.startswith("mfmdp") else {}
    cfg = RolloutConfig(method=args.method, horizon=args.actions, agents_per_step=16, sim_start=48, **mdp)
    proc = psutil.Process()

    def on_step(records) -> None:
        done = records[-1].agent_index + 1
        if done % args.every == 0:
            gc.collect()
            print(f"{args.method}: {done} actions, RSS {proc.memory_info().rss / 2**20:.0f} MB", flush=True)

    with tempfile.TemporaryDirectory() as out:
        asyncio.run(run_resumable(event, StandInLLM(), cfg, 0, out, make_identity(cfg, {"name": "standin"}), on_step=on_step))


if __name__ == "__main__":
    main()
