"""Decode steps with the reserved KV cache (mfray.llm.prefill.ReservedLayer: each new token
written in place) against the concatenating cache it replaced (transformers' DynamicLayer: the
whole cache copied for every token), side by side in one process, default model.

    .venv/bin/python benchmarks/decode_cache_bench.py                       # 16x2000 and 2x900
    .venv/bin/python benchmarks/decode_cache_bench.py --shapes 16x2000 --steps 32 --repeats 2

For each shape (batch x prompt tokens: 16 x 2,000 is an MF-MDP step of the E136 run, 2 x 900 a
mean-field call), random-token prompts are prefilled (not timed), then `--steps` decode steps
are timed with each cache kind, alternating, `--repeats` times. Reported: seconds per repeat,
the ratio of the best times, and the largest difference between the two kinds' last logits
(the arithmetic is the same; only where the cache lives changes).
"""

from __future__ import annotations

import argparse
import time

import torch

from mfray.llm.local import LocalEngine
from mfray.llm.prefill import prefill, reserve


def decode(engine: LocalEngine, prompts: list[list[int]], steps: int, reserved: bool) -> tuple[float, torch.Tensor]:
    """Seconds for `steps` decode steps after the prefill, and the last step's logits."""
    batch = len(prompts)
    with torch.inference_mode():
        first = prefill(engine.model, prompts, engine.tokenizer.pad_token_id, "cpu", share_prefixes=False)
        cache = reserve(first.cache, steps) if reserved else first.cache
        mask, positions = first.mask, first.last_position
        began = time.perf_counter()
        for _ in range(steps):
            mask = torch.cat([mask, torch.ones((batch, 1), dtype=mask.dtype)], dim=1)
            positions = positions + 1
            out = engine.model(input_ids=torch.full((batch, 1), 500), attention_mask=mask, position_ids=positions,
                               past_key_values=cache, use_cache=True)
            cache = out.past_key_values
        return time.perf_counter() - began, out.logits[:, -1, :]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="16x2000,2x900", help="batch x prompt tokens, comma-separated")
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    engine = LocalEngine.load("default")
    generator = torch.Generator().manual_seed(0)
    print("| batch x prompt tokens | decode steps | concatenating s | reserved s | ratio | max logit difference |")
    print("|---|---|---|---|---|---|")
    for shape in args.shapes.split(","):
        batch, length = (int(x) for x in shape.split("x"))
        prompts = [torch.randint(100, 20000, (length,), generator=generator).tolist() for _ in range(batch)]
        times: dict[bool, list[float]] = {False: [], True: []}
        logits: dict[bool, torch.Tensor] = {}
        for _ in range(args.repeats):
            for reserved in (False, True):
                seconds, logits[reserved] = decode(engine, prompts, args.steps, reserved)
                times[reserved].append(seconds)
        diff = float((logits[False] - logits[True]).abs().max())
        print(f"| {batch} x {length} | {args.steps} | {', '.join(f'{t:.1f}' for t in times[False])} | "
              f"{', '.join(f'{t:.1f}' for t in times[True])} | {min(times[False]) / min(times[True]):.2f} | {diff:.1e} |",
              flush=True)


if __name__ == "__main__":
    main()
