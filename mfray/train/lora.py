"""LoRA adapters as SPEC section 7 shapes them: rank 64, alpha 64, on all linear layers of one
base model. Training (IB-Tune, SFT) starts from these; serving loads them by name."""

from __future__ import annotations

from pathlib import Path

ADAPTER_NAMES = ("sft", "ib_policy", "ib_mean_field")


def lora_config(rank: int = 64, alpha: int = 64, dropout: float = 0.0):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM")


def init_adapters(model_path: str, out_dir: str | Path, names=ADAPTER_NAMES, rank: int = 64, alpha: int = 64) -> dict[str, str]:
    """Write freshly initialised (untrained) adapters, one directory per name, and return
    {name: path}. PEFT initialises LoRA's B matrix to zero, so an untrained adapter computes
    exactly the base model: it exercises the adapter code paths, it does not change outputs."""
    from peft import get_peft_model

    from mfray.llm.models import load_model_and_tokenizer, resolve_model_dir

    out = Path(out_dir)
    paths = {}
    for name in names:
        base, _ = load_model_and_tokenizer(resolve_model_dir(model_path), "float32", "cpu")
        get_peft_model(base, lora_config(rank, alpha)).save_pretrained(out / name)
        paths[name] = str(out / name)
    return paths
