"""f_psi (MF-MDP's state-transition model) trained on Ray Train: a TorchTrainer whose one worker
loads the all-real mfmdp runs (mfray.mdp.data), trains with L_seq + alpha * L_roll
(mfray.mdp.transition_train) and reports the per-epoch losses with the model as a checkpoint.
One worker: the events are few and short, and the loop is single-process (no gradient sync);
Ray Train gives it a place on a cluster, the restarts on failure and the checkpoint storage.

    ray job submit --runtime-env runtime_env.yaml -- python jobs/train_transition.py --config jobs/configs/train_transition.yaml
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import ray.train
from ray.train import FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from mfray.mdp.config import TransitionJobConfig

CHECKPOINT_FILE = "fpsi.pt"


def _worker(config: dict) -> None:
    import torch

    from mfray.mdp.data import load_sequences
    from mfray.mdp.transition_train import save_checkpoint, train_transition

    cfg = TransitionJobConfig.model_validate(config["cfg"])
    torch.set_num_threads(max(1, int(cfg.cpus)))
    sequences = load_sequences(cfg.data, cfg.transition.encoder_dim)
    train = [s for e, s in sorted(sequences.items()) if e not in cfg.heldout]
    heldout = [s for e, s in sorted(sequences.items()) if e in cfg.heldout]
    model, history = train_transition(train, heldout, cfg.transition, seed=cfg.seed)
    with tempfile.TemporaryDirectory() as scratch:
        save_checkpoint(model, Path(scratch) / CHECKPOINT_FILE)
        metrics = {"epochs": [vars(h) for h in history], "train_events": len(train), "heldout_events": len(heldout)}
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(scratch))


def train_on_ray(cfg: TransitionJobConfig, name: str = "mfray-transition") -> dict:
    """Train f_psi on the connected Ray cluster; copies the model to <out>/fpsi.pt and returns the
    reported metrics (per-epoch train and held-out L_seq, L_roll)."""
    out = Path(cfg.out).resolve()
    cfg = cfg.model_copy(update={"data": str(Path(cfg.data).resolve()), "out": str(out)})  # workers run elsewhere
    trainer = TorchTrainer(
        _worker, train_loop_config={"cfg": cfg.model_dump(mode="json")},
        scaling_config=ScalingConfig(num_workers=1, use_gpu=False, resources_per_worker={"CPU": cfg.cpus}),
        run_config=RunConfig(name=name, storage_path=str(out / "ray"), failure_config=FailureConfig(max_failures=cfg.max_failures)),
    )
    result = trainer.fit()
    if result.error is not None:
        raise RuntimeError(f"f_psi training failed: {result.error}")
    out.mkdir(parents=True, exist_ok=True)
    with result.checkpoint.as_directory() as saved:
        (out / CHECKPOINT_FILE).write_bytes((Path(saved) / CHECKPOINT_FILE).read_bytes())
    return {**result.metrics, "model": str(out / CHECKPOINT_FILE)}
