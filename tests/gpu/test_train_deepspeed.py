"""IB-Tune through DeepSpeed ZeRO-2 in bf16 on a CUDA device (a world of one, no Ray: the GPU
machine has no Ray), with a checkpoint and a resume; the adapters then load into the CUDA engine.
Skipped without a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mfray.llm.local import LocalEngine
from mfray.train.config import TrainConfig
from mfray.train.loop import WorkerContext, train_worker

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine"),
]

def test_deepspeed_zero2_bf16_trains_checkpoints_resumes(gpu_model_dir, data_dir, tmp_path):
    train = data_dir / "weibo_rumdect/train"
    base = {"mode": "ibtune", "model": str(gpu_model_dir), "out": str(tmp_path / "run"), "train_events": [str(train)],
            "agents_per_step": 8, "horizon": 32, "summaries": 4, "summary_max_tokens": 32, "lr": 1e-4,
            "steps": 2, "checkpoint_every": 2, "workers": 1, "use_gpu": True, "accumulate": 2}
    cfg = TrainConfig.model_validate(base)
    assert cfg.resolved_backend == "deepspeed"
    reports: list[tuple[dict, Path | None]] = []
    scratch = tmp_path / "scratch"
    train_worker(cfg, WorkerContext(0, 1, "cuda", lambda m, c: reports.append((m, c)), scratch=scratch))
    ckpt = reports[-1][1]
    assert ckpt is not None
    files = {str(p.relative_to(ckpt)) for p in ckpt.rglob("*") if p.is_file()}
    # ZeRO's partitioned optimizer state (bf16 runs prefix the name with "bf16_")
    assert any(f.startswith("deepspeed/state/") and f.endswith("zero_pp_rank_0_mp_rank_00_optim_states.pt") for f in files), files
    weights = load_file(str(ckpt / "adapters/ib_policy/adapter_model.safetensors"))
    assert {t.dtype for t in weights.values()} == {torch.bfloat16}  # trained in bf16
    assert any(t.abs().sum() > 0 for k, t in weights.items() if "lora_B" in k)  # B moved off zero

    resumed = TrainConfig.model_validate({**base, "steps": 4})
    train_worker(resumed, WorkerContext(0, 1, "cuda", lambda m, c: reports.append((m, c)), restore_dir=ckpt, scratch=scratch))
    updates = [m["update"] for m, _ in reports]
    assert updates == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(m["policy_nll"])) for m, _ in reports)
    log = [json.loads(line) for line in (tmp_path / "run/worker-0.jsonl").read_text().splitlines()]
    starts = [r for r in log if r["event"] == "start"]
    assert [s["update"] for s in starts] == [0, 2] and starts[0]["backend"] == "deepspeed" and starts[0]["dtype"] == "bfloat16"
    print("GPU IB-Tune updates:", json.dumps([{k: round(v, 4) for k, v in m.items()} for m, _ in reports]))

    engine = LocalEngine.load(str(gpu_model_dir), device="cuda", adapters={
        n: str(tmp_path / "run/adapters" / n) for n in ("ib_policy", "ib_mean_field")})
    prompt = [[{"role": "user", "content": "Is the news true?"}]]
    assert engine.score_sync(prompt, ["I doubt it."], adapter="ib_policy") != engine.score_sync(prompt, ["I doubt it."])
