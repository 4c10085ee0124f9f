"""The local engine on CUDA (bf16 by default there). Skipped without a GPU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mfray.llm.base import SamplingParams
from mfray.llm.local import LocalEngine

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]


def test_cuda_generation_and_scoring_match_unbatched(gpu_model_dir):
    engine = LocalEngine.load(str(gpu_model_dir), device="cuda")
    assert next(engine.model.parameters()).dtype == torch.bfloat16
    prompts = [[{"role": "user", "content": "Reply briefly: " + "is the water safe? " * (i + 1)}] for i in range(8)]
    gens = engine.generate_sync(prompts, SamplingParams(max_new_tokens=12, seed=0, first_line=True))
    assert all(g.completion_tokens > 0 for g in gens)
    texts = [g.text or "ok" for g in gens]
    batched = engine.score_sync(prompts, texts)
    for i in (0, 7):
        np.testing.assert_allclose(batched[i], engine.score_sync([prompts[i]], [texts[i]])[0], atol=5e-2)  # bf16
