"""LoRA adapters for tests whose weights change the model's output.

A freshly initialised PEFT LoRA adapter (what mfray.train.lora.init_adapters writes, the right
start for training) has B = 0 and so computes exactly the base model: a test that checks "the
request for adapter X was answered by adapter X" with such adapters passes even when no adapter
is ever applied. The adapters written here have the production shape (mfray.train.lora's
LoraConfig on all linear layers) but seeded random, non-zero B, distinct per adapter name, so
base, adapter A and adapter B give different generations and log-probs."""

from __future__ import annotations

import zlib
from pathlib import Path


def write_random_lora_adapters(
    model_dir: str | Path,
    out_dir: str | Path,
    names: tuple[str, ...] | list[str],
    rank: int = 4,
    alpha: int = 4,
    seed: int = 0,
    b_std: float = 0.2,
) -> dict[str, str]:
    """Write one PEFT LoRA directory per name under `out_dir` and return {name: path}. Each
    adapter's weights depend only on (`seed`, its name): A has PEFT's usual random init and B is
    drawn from N(0, b_std), both from a generator seeded with the name. Never touches the
    caller's global RNG."""
    import torch
    from peft import get_peft_model

    from mfray.llm.models import load_model_and_tokenizer
    from mfray.train.lora import lora_config

    out = Path(out_dir)
    paths: dict[str, str] = {}
    for name in names:
        name_seed = (seed * 1_000_003 + zlib.crc32(name.encode())) % 2**31
        base, _ = load_model_and_tokenizer(Path(model_dir), "float32", "cpu")
        with torch.random.fork_rng():
            torch.manual_seed(name_seed)  # A: PEFT's kaiming init, seeded
            model = get_peft_model(base, lora_config(rank, alpha))
        gen = torch.Generator().manual_seed(name_seed + 1)
        n_b = 0
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if "lora_B" in pname:
                    p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * b_std)
                    n_b += 1
        assert n_b > 0, f"no LoRA B matrices found in the PEFT model for {name!r}"
        model.save_pretrained(out / name)
        paths[name] = str(out / name)
    return paths
