"""Local engine on this machine: load time, resident memory, generation tokens/s at batch 1, 8
and 32, and teacher-forced scoring time. Run: `make bench` (or .venv/bin/python benchmarks/engine_bench.py).

Tokens/s counts generated tokens (completion positions) per wall-clock second of the batch.
Everything runs in one process, one after the other, so the ratios between batch sizes are
comparable even on a noisy shared machine; absolute numbers move with load."""

from __future__ import annotations

import argparse
import resource
import time

from mfray.llm.base import SamplingParams
from mfray.llm.local import LocalEngine


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def prompts(n: int) -> list[list[dict]]:
    return [[{"role": "user", "content": f"Reply in one sentence to a post claiming tap water in town {i} is poisoned."}] for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="default")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--batches", default="1,8,32")
    args = parser.parse_args()

    began = time.perf_counter()
    engine = LocalEngine.load(args.model)
    print(f"load: {time.perf_counter() - began:.1f} s (converted copy cached), peak RSS {rss_gib():.2f} GiB")
    engine.generate_sync(prompts(2), SamplingParams(max_new_tokens=4, seed=0))  # warm-up

    print("\n| batch | mode | new tokens | seconds | tokens/s | ratio to batch 1 |")
    print("|---|---|---|---|---|---|")
    base = {}
    for mode, sp in [("greedy", SamplingParams(temperature=0, max_new_tokens=args.new_tokens)),
                     ("sampled", SamplingParams(max_new_tokens=args.new_tokens, seed=0))]:
        for batch in [int(b) for b in args.batches.split(",")]:
            # Disable early stop on EOS by counting the positions actually generated.
            began = time.perf_counter()
            gens = engine.generate_sync(prompts(batch), sp)
            elapsed = time.perf_counter() - began
            tokens = sum(g.completion_tokens for g in gens)
            rate = tokens / elapsed
            base.setdefault(mode, rate)
            print(f"| {batch} | {mode} | {tokens} | {elapsed:.1f} | {rate:.1f} | {rate / base[mode]:.1f}x |")

    texts = [g.text or "ok" for g in engine.generate_sync(prompts(32), SamplingParams(max_new_tokens=48, seed=1))]
    began = time.perf_counter()
    engine.score_sync(prompts(32), texts)
    print(f"\nscore 32 prompts x their completions: {time.perf_counter() - began:.1f} s; peak RSS {rss_gib():.2f} GiB")


if __name__ == "__main__":
    main()
