"""LoRA adapters as SPEC section 7 shapes them: rank 64, alpha 64, on all linear layers of one
base model. Training (IB-Tune, SFT) starts from these; serving loads them by name."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from mfray.sim.methods import ADAPTER_NAMES  # every adapter a method runs: sft, ib_policy, ib_mean_field, lct_policy
# The IB-Tune adapters that ship with mfray (`make adapters` trains and exports them): the demo's.
SHIPPED_ADAPTERS = Path(__file__).resolve().parents[1] / "adapters"


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


def export_adapter(src: str | Path, dst: str | Path) -> Path:
    """Copy the PEFT adapter folder `src` to `dst` with its weights in bfloat16 (half the size;
    loading casts them back to the model's dtype) and no local path in its config. Returns dst."""
    import torch
    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    weights = load_file(str(src / "adapter_model.safetensors"))
    dst.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.bfloat16) for k, v in weights.items()}, str(dst / "adapter_model.safetensors"))
    config = json.loads((src / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "default"  # mfray's name for the model; the trainer's cache path is local
    (dst / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return dst


if __name__ == "__main__":  # python -m mfray.train.lora RUN_DIR NAME...: export RUN_DIR/adapters/NAME to SHIPPED_ADAPTERS
    run_dir, names = Path(sys.argv[1]), sys.argv[2:]
    for name in names:
        shutil.rmtree(SHIPPED_ADAPTERS / name, ignore_errors=True)
        print(export_adapter(run_dir / "adapters" / name, SHIPPED_ADAPTERS / name))
