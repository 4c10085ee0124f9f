"""IB-Tune / SFT on Ray Train: a TorchTrainer runs mfray.train.loop.train_worker on every worker.

Ray Train sets up the process group (gloo on CPU, NCCL on GPU; DeepSpeed reuses it), restarts the
worker group after a failure (FailureConfig) and hands the last checkpoint back to the restarted
workers, which resume from it. Every worker writes its part of a checkpoint (its position and
carried mean field; rank 0 the adapters and optimizer; under ZeRO each rank its partition) and
Ray Train merges them into one checkpoint directory.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import ray
import ray.train
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchConfig, TorchTrainer

from mfray.train.config import TrainConfig


def _worker_entry(config: dict) -> None:
    import torch

    from mfray.train.loop import WorkerContext, train_worker

    cfg = TrainConfig.model_validate(config["cfg"])
    context = ray.train.get_context()
    if cfg.use_gpu:
        device = f"cuda:{context.get_local_rank()}"
    else:
        device = "cpu"
        torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    checkpoint = ray.train.get_checkpoint()

    def report(metrics: dict, ckpt_dir: Path | None) -> None:
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(str(ckpt_dir)) if ckpt_dir else None)

    with tempfile.TemporaryDirectory() as scratch:
        if checkpoint is None:
            train_worker(cfg, WorkerContext(context.get_world_rank(), context.get_world_size(), device, report,
                                            scratch=Path(scratch)))
        else:
            with checkpoint.as_directory() as restore:
                train_worker(cfg, WorkerContext(context.get_world_rank(), context.get_world_size(), device, report,
                                                restore_dir=Path(restore), scratch=Path(scratch)))


def with_absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """Ray Train workers run in their own working directory: relative paths (and glob patterns)
    are made absolute against the driver's."""
    def absolute(path: str) -> str:
        return str(Path(path).absolute())

    model = cfg.model if cfg.model == "default" or not Path(cfg.model).exists() else absolute(cfg.model)
    return cfg.model_copy(update={
        "out": str(Path(cfg.out).resolve()), "model": model,
        "train_events": [absolute(p) for p in cfg.train_events], "heldout_events": [absolute(p) for p in cfg.heldout_events],
        "lct": cfg.lct.model_copy(update={"runs": [absolute(p) for p in cfg.lct.runs]})})


def fit(cfg: TrainConfig, name: str | None = None):
    """Run training on the connected Ray cluster; returns Ray Train's Result. Rerunning with the
    same `out` and name continues from the last checkpoint of the earlier run."""
    cfg = with_absolute_paths(cfg)
    out = Path(cfg.out)
    trainer = TorchTrainer(
        _worker_entry,
        train_loop_config={"cfg": cfg.model_dump(mode="json")},
        scaling_config=ScalingConfig(
            num_workers=cfg.workers, use_gpu=cfg.use_gpu, resources_per_worker={"CPU": cfg.cpus_per_worker}
        ),
        torch_config=TorchConfig(backend="nccl" if cfg.use_gpu else "gloo"),
        run_config=RunConfig(
            name=name or f"mfray-{cfg.mode}",
            storage_path=str(out / "ray"),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    return trainer.fit()


def connect(address: str | None) -> None:
    """Join the Ray cluster at `address`, or start a fresh local one ("local" never attaches to a
    stray cluster found on this machine)."""
    if not ray.is_initialized():
        ray.init(address=address or "local", include_dashboard=False if address is None else None)


def run_training(cfg: TrainConfig) -> dict:
    """The whole job: check the data, train on Ray Train, then score held-out real actions under
    the policy before vs after and plot the loss curves. Writes <out>/summary.json."""
    from mfray.train.run import check_data, finish_run

    _, heldout = check_data(cfg)
    result = fit(cfg)
    if result.error is not None:
        raise RuntimeError(f"training failed: {result.error}")
    return finish_run(cfg, heldout)
