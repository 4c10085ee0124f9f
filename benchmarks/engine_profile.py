"""Where the local engine's time goes: prompt pass (per token) and decoding step (per step and
per row), by batch size and context length, default model.

    .venv/bin/python benchmarks/engine_profile.py

Random token ids (the cost does not depend on which tokens); each decoding figure is the mean of
8 steps on the cache the prompt pass left, split into the model's forward pass and the engine's
sampling (repetition penalty, top-k, top-p). Why it matters: how much a batch saves over single
requests bounds what any batching of the same work (the Ray sweep's included) can gain.
"""

from __future__ import annotations

import argparse
import json
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--contexts", type=int, nargs="+", default=[100, 700])
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    from mfray.llm.base import SamplingParams
    from mfray.llm.local import LocalEngine, _sample

    engine = LocalEngine.load("default")
    model, sampling = engine.model, SamplingParams()
    vocab = model.get_output_embeddings().weight.shape[0]
    rows = []
    with torch.inference_mode():
        model(input_ids=torch.randint(100, 20000, (1, 16)))  # warm-up
        for batch in args.batches:
            for context in args.contexts:
                ids = torch.randint(100, 20000, (batch, context))
                began = time.perf_counter()
                out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
                prompt_s = time.perf_counter() - began
                cache, mask = out.past_key_values, torch.ones(batch, context, dtype=torch.long)
                position = torch.full((batch, 1), context - 1)
                token = torch.randint(100, 20000, (batch, 1))
                seen = torch.zeros((batch, vocab), dtype=torch.bool)
                forward_s = sample_s = 0.0
                for _ in range(args.steps):
                    mask = torch.cat([mask, torch.ones(batch, 1, dtype=torch.long)], 1)
                    position = position + 1
                    began = time.perf_counter()
                    out = model(input_ids=token, attention_mask=mask, position_ids=position, past_key_values=cache, use_cache=True)
                    mid = time.perf_counter()
                    _sample(out.logits[:, -1, :].float(), seen, sampling, [None] * batch)
                    forward_s += mid - began
                    sample_s += time.perf_counter() - mid
                step_ms = 1000 * (forward_s + sample_s) / args.steps
                row = {"batch": batch, "context": context, "prompt_ms_per_token": 1000 * prompt_s / (batch * context),
                       "decode_forward_ms_per_step": 1000 * forward_s / args.steps,
                       "decode_sample_ms_per_step": 1000 * sample_s / args.steps,
                       "decode_ms_per_row_token": step_ms / batch}
                rows.append(row)
                print(json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
