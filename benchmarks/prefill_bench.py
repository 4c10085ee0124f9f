"""Shared-prefix prefill on or off, side by side on one engine (mfray.llm.prefill).

    .venv/bin/python benchmarks/prefill_bench.py --events 4 --repeats 2

Prompts are real: each of the first `--events` Twitter events is rolled forward (method mf,
N_t 16, sim_start 32, default sampling, 24 policy / 64 mean-field tokens) until its first
simulated step, whose 16 policy prompts (common part + one profile each) are one workload; the
mean-field prompts of every event's next summary (no shared part but the chat header) are the
other. Each workload is generated with the default model's engine (max_batch 32, seeded) with
sharing on and off, alternating, `--repeats` times; reported: wall seconds, generated tokens per
second and prompt tokens prefilled. The outputs of both modes are also compared (same seeds:
equal texts unless float differences flip a sample).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TWITTER = REPO.parent / "shared" / "data" / "twitter_rumdect"


def workloads(engine, n_events: int):
    """(policy prompts of one simulated step of every event, the next mean-field prompts)."""
    import asyncio

    from mfray.data import load_events
    from mfray.sim.config import RolloutConfig
    from mfray.sim.rollout import EventRollout

    files = sorted(TWITTER.glob("*.json"))[:n_events]
    events, problems = load_events([str(f) for f in files])
    if problems:
        raise SystemExit(f"bad event files: {problems}")
    cfg = RolloutConfig.model_validate({
        "method": "mf", "horizon": 64, "agents_per_step": 16, "sim_start": 32,
        "policy": {"max_new_tokens": 24}, "mean_field": {"temperature": 0.1, "max_new_tokens": 64, "first_line": False}})
    policy, mean_field = [], []
    for event in events:
        rollout = EventRollout(event, cfg)
        while (req := rollout.next_request()).role != "policy":  # warm-up summaries, for real
            rollout.submit(asyncio.run(engine.generate(req.prompts, req.sampling)))
        policy += req.prompts
        rollout.submit(asyncio.run(engine.generate(req.prompts, req.sampling)))
        mean_field += rollout.next_request().prompts
    return {"policy": (policy, cfg.policy.params(0)), "mean_field": (mean_field, cfg.mean_field.params(0))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="runs/prefill_bench.json")
    args = parser.parse_args()

    from mfray.llm.local import LocalEngine
    from mfray.llm.prefill import shared_prefix_runs

    engine = LocalEngine.load("default")
    loads = workloads(engine, args.events)
    modes = {"shared": dataclasses.replace(engine, share_prefixes=True),
             "plain": dataclasses.replace(engine, share_prefixes=False)}
    result: dict = {"config": vars(args)}
    for name, (prompts, sampling) in loads.items():
        encoded = sorted(engine.encode(p) for p in prompts)  # the engine's order and chunks
        chunks = [encoded[i : i + engine.max_batch] for i in range(0, len(encoded), engine.max_batch)]
        saved = sum((end - start - 1) * shared for c in chunks for start, end, shared in shared_prefix_runs(c))
        total = sum(map(len, encoded))
        row: dict = {"prompts": len(prompts), "prompt_tokens": total, "prefilled_tokens_shared": total - saved}
        texts = {}
        for _ in range(args.repeats):
            for mode, eng in modes.items():
                began = time.perf_counter()
                gens = eng.generate_sync(prompts, sampling)
                elapsed = time.perf_counter() - began
                tokens = sum(g.completion_tokens for g in gens)
                row.setdefault(mode, []).append({"seconds": elapsed, "tokens": tokens, "tokens_per_s": tokens / elapsed})
                texts[mode] = [g.text for g in gens]
        best = {mode: max(r["tokens_per_s"] for r in row[mode]) for mode in modes}
        row["shared_over_plain_tokens_per_s"] = best["shared"] / best["plain"]
        row["same_texts"] = sum(a == b for a, b in zip(texts["shared"], texts["plain"]))
        result[name] = row
        print(name, json.dumps(row), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
