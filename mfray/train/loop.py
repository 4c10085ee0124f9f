"""The per-worker training loop, free of Ray: `mfray.ray.train` runs it on Ray Train workers,
and it runs as a single process (world size 1) anywhere else (e.g. the GPU check).

Backends: `torch` (any device; gradients averaged with one all-reduce per update when a process
group exists: what DDP does, without DDP's one-forward-per-backward assumption, which the several
forwards of an IB step break) and `deepspeed` (ZeRO-2, bf16 on GPU). Checkpoints hold the PEFT
adapters, the optimizer state and each worker's position and carried mean field, so a restarted
worker group continues exactly where the last checkpoint left off.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from mfray.data.validate import load_events
from mfray.sim.context import derive_seed
from mfray.train.config import TrainConfig
from mfray.train.samples import worker_streams
from mfray.train.steps import PASSES, ib_step, lct_step, sft_step, use_adapter

HEAD_FILE = "lct_head.pt"  # LCT-Policy's lookahead head, beside the adapters


@dataclass
class WorkerContext:
    """What the loop needs from whoever runs it. `report(metrics, checkpoint_dir)` is called by
    every worker after every update (checkpoint_dir None between checkpoints); `restore_dir` is
    the checkpoint to resume from, if any."""

    rank: int
    world_size: int
    device: str
    report: Callable[[dict, Path | None], None]
    restore_dir: Path | None = None
    scratch: Path = Path("/tmp")


def deepspeed_config(cfg: TrainConfig, bf16: bool) -> dict:
    """The DeepSpeed config of a run: ZeRO-2 with a client (torch) optimizer, bf16 on GPU."""
    return {
        # A micro-step is one differentiable pass of one event-step (IB-Tune has two: mean field
        # and policy, on disjoint adapters); the event-step's agents are the real batch.
        "train_micro_batch_size_per_gpu": 1,
        "gradient_accumulation_steps": cfg.accumulate * PASSES[cfg.mode],
        "train_batch_size": cfg.accumulate * PASSES[cfg.mode] * cfg.workers,
        "zero_optimization": {"stage": cfg.zero_stage, "overlap_comm": False, "contiguous_gradients": True},
        "bf16": {"enabled": bf16},
        "gradient_clipping": 1.0,
        "zero_allow_untested_optimizer": True,  # torch AdamW: no JIT-built fused optimizer needed
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


def build_model(cfg: TrainConfig, device: str, dtype: torch.dtype):
    """The base model with this run's adapters (fresh: LoRA B = 0, so step 0 is the base model)."""
    from peft import get_peft_model

    from mfray.llm.models import load_model_and_tokenizer, resolve_model_dir
    from mfray.train.lora import lora_config

    name = {torch.float32: "float32", torch.bfloat16: "bfloat16"}[dtype]
    base, tokenizer = load_model_and_tokenizer(resolve_model_dir(cfg.model), name, device)
    lora = lora_config(cfg.lora.rank, cfg.lora.alpha, cfg.lora.dropout)
    names = cfg.adapter_names
    if cfg.gradient_checkpointing:
        # Activations of an IB step (J summaries plus N_t policy prompts, all layers) would take
        # GBs on CPU; keep only layer inputs and recompute the rest in backward. Non-reentrant
        # checkpointing needs no input gradients (the embeddings stay frozen).
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # LoRA A is drawn from torch's global RNG: seed it (in a forked RNG, leaving the caller's
    # alone) so every worker starts from the same adapters and a run is reproducible.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(cfg.seed, "lora-init"))
        model = get_peft_model(base, lora, adapter_name=names[0])
        for extra in names[1:]:
            model.add_adapter(extra, lora)
    use_adapter(model, names[0])
    for param_name, param in model.named_parameters():
        if "lora_" not in param_name and param.requires_grad:
            raise RuntimeError(f"base weight {param_name} is trainable; only LoRA adapters may train")
    model.eval()  # sampling and no-gradient scoring run in eval mode; steps.py switches for gradient passes
    return model, tokenizer


class _TorchBackend:
    """Plain torch: gradients accumulate over an update's event-steps; one all-reduce and one
    optimizer step per update."""

    def __init__(self, groups, lr, weight_decay, world_size, accumulate):
        self.params = [p for group in groups for p in group["params"]]
        self.world_size, self.accumulate = world_size, accumulate
        self.optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)

    def backward(self, loss):
        (loss / self.accumulate).backward()

    def update(self):
        if self.world_size > 1:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
            flat = torch.cat([g.reshape(-1) for g in grads])
            torch.distributed.all_reduce(flat)
            flat /= self.world_size
            offset = 0
            for p in self.params:
                n = p.numel()
                p.grad = flat[offset : offset + n].view_as(p).clone()
                offset += n
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def save(self, ckpt: Path, rank: int):
        if rank == 0:
            torch.save(self.optimizer.state_dict(), ckpt / "optimizer.pt")

    def load(self, ckpt: Path):
        self.optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", weights_only=True))


class _DeepSpeedBackend:
    """DeepSpeed: backward and step per micro-step; the engine divides each loss by its
    accumulation steps (accumulate x passes) and applies the update at the boundary. Losses are
    multiplied by the passes so that each still weighs 1/accumulate, as in the torch backend."""

    def __init__(self, model, groups, lr, weight_decay, ds_config, passes):
        self.passes = passes
        import deepspeed

        if not torch.distributed.is_initialized():  # a world of one, without a launcher
            for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"),
                               ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29511")):
                os.environ.setdefault(key, value)
        deepspeed.init_distributed()  # reuses Ray Train's process group when there is one

        optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
        self.engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)

    def backward(self, loss):
        self.engine.backward(loss * self.passes)
        self.engine.step()

    def update(self):
        pass

    def save(self, ckpt: Path, rank: int):
        self.engine.save_checkpoint(str(ckpt / "deepspeed"), tag="state", exclude_frozen_parameters=True)  # every rank: its ZeRO partition

    def load(self, ckpt: Path):
        self.engine.load_checkpoint(str(ckpt / "deepspeed"), tag="state", load_module_strict=False)


def save_adapters(model, names, out: Path) -> None:
    """One PEFT folder per adapter, out/<name>/ (adapter_config.json + weights): what LocalEngine
    (`model.adapters`) and vLLM (LoRA modules) load."""
    model.save_pretrained(str(out), selected_adapters=list(names))  # non-"default" names go to out/<name>/


def load_adapters(model, names, src: Path) -> None:
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    for name in names:
        set_peft_model_state_dict(model, load_peft_weights(str(src / name)), adapter_name=name)


def _average(metrics: dict[str, float], world_size: int) -> dict[str, float]:
    """Mean of each metric over workers (one all-reduce)."""
    if world_size == 1:
        return metrics
    keys = sorted(metrics)
    values = torch.tensor([metrics[k] for k in keys], dtype=torch.float64)
    torch.distributed.all_reduce(values)
    return {k: v / world_size for k, v in zip(keys, values.tolist())}


def train_worker(cfg: TrainConfig, ctx: WorkerContext) -> None:
    """Run (or resume) training on this worker until cfg.steps optimizer updates are done."""
    from mfray.llm.local import LocalEngine

    events, problems = load_events(cfg.train_events)
    for problem in problems:
        print(f"[rank {ctx.rank}] training data: {problem}", flush=True)
    if cfg.mode == "lct":
        from mfray.mdp.lct_data import lct_streams

        streams, skipped = lct_streams({e.event_id for e in events}, cfg.lct, ctx.world_size, cfg.seed)
    else:
        streams, skipped = worker_streams(events, cfg.agents_per_step, cfg.horizon, ctx.world_size, cfg.seed)
    for line in skipped:
        print(f"[rank {ctx.rank}] {line}", flush=True)
    stream = streams[ctx.rank]

    backend_name = cfg.resolved_backend
    dtype = torch.bfloat16 if (backend_name == "deepspeed" and ctx.device.startswith("cuda")) else torch.float32
    model, tokenizer = build_model(cfg, ctx.device, dtype)
    head = None
    if cfg.mode == "lct":  # a submodule of the model, so both backends (and ZeRO) treat it as the adapters
        from mfray.mdp.lct import LookaheadHead

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(cfg.seed, "lct-head"))
            head = LookaheadHead(model.config.hidden_size, cfg.lct.k, cfg.lct.head_width, cfg.lct.head_dropout)
        model.lct_head = head = head.to(ctx.device)
    # Parameter groups: the adapters at the run's lr; LCT-Policy's fresh head at its own.
    groups = [{"params": [p for n, p in model.named_parameters() if "lora_" in n]}]
    if head is not None:
        groups.append({"params": list(head.parameters()), "lr": cfg.lct.head_lr})
    if backend_name == "deepspeed":
        backend = _DeepSpeedBackend(model, groups, cfg.learning_rate, cfg.weight_decay, deepspeed_config(cfg, dtype == torch.bfloat16),
                                    PASSES[cfg.mode])
    else:
        backend = _TorchBackend(groups, cfg.learning_rate, cfg.weight_decay, ctx.world_size, cfg.accumulate)
    engine = LocalEngine(model=model, tokenizer=tokenizer, device=ctx.device)

    start, position, mean_field = 0, 0, ""
    if ctx.restore_dir is not None:
        state = json.loads((ctx.restore_dir / f"worker-{ctx.rank}.json").read_text())
        start, position, mean_field = state["updates"], state["position"], state["mean_field"]
        load_adapters(model, cfg.adapter_names, ctx.restore_dir / "adapters")
        if head is not None:
            head.load_state_dict(torch.load(ctx.restore_dir / HEAD_FILE, weights_only=True))
        backend.load(ctx.restore_dir)
        print(f"[rank {ctx.rank}] resumed from update {start} (stream position {position})", flush=True)

    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"worker-{ctx.rank}.jsonl"
    with log.open("a") as f:
        f.write(json.dumps({"event": "start", "pid": os.getpid(), "update": start, "resumed": ctx.restore_dir is not None,
                            "backend": backend_name, "dtype": str(dtype).removeprefix("torch."), "device": ctx.device}) + "\n")

    for update in range(start, cfg.steps):
        began = time.perf_counter()
        totals: dict[str, float] = {}
        for _ in range(cfg.accumulate):
            sample = stream[position % len(stream)]
            if sample.first_of_event:
                mean_field = ""  # m_0 = "": no mean field crosses events
            if cfg.mode == "sft":
                result = sft_step(engine, sample, cfg.policy_adapter, backend.backward, style=cfg.prompt_style)
            elif cfg.mode == "lct":
                result = lct_step(engine, head, sample, backend.backward, settings=cfg.lct,
                                  seed=derive_seed(cfg.seed, "lct", ctx.rank, position), style=cfg.prompt_style)
            else:
                seed = derive_seed(cfg.seed, "summaries", ctx.rank, position)
                result = ib_step(engine, sample, mean_field, backend.backward, summaries=cfg.summaries, beta=cfg.beta,
                                 max_tokens=cfg.summary_max_tokens, seed=seed, mean_field_states=cfg.mean_field_states,
                                 style=cfg.prompt_style)
            mean_field = result.mean_field
            position += 1
            for k, v in result.metrics.items():
                totals[k] = totals.get(k, 0.0) + v / cfg.accumulate
        backend.update()
        metrics = _average(totals, ctx.world_size)
        metrics.update(update=update + 1, seconds=time.perf_counter() - began)
        with log.open("a") as f:
            f.write(json.dumps({"event": "update", "pid": os.getpid(), **metrics}) + "\n")
        if ctx.rank == 0:
            shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k not in ("update",))
            print(f"[train] update {update + 1}/{cfg.steps} {shown}", flush=True)
        last = update + 1 == cfg.steps
        ckpt = None
        if (update + 1) % cfg.checkpoint_every == 0 or last:
            ckpt = ctx.scratch / f"ckpt-{update + 1}-rank{ctx.rank}"
            ckpt.mkdir(parents=True, exist_ok=True)
            (ckpt / f"worker-{ctx.rank}.json").write_text(
                json.dumps({"updates": update + 1, "position": position, "mean_field": mean_field}))
            if ctx.rank == 0:
                save_adapters(model, cfg.adapter_names, ckpt / "adapters")
                if head is not None:
                    torch.save(head.state_dict(), ckpt / HEAD_FILE)
            backend.save(ckpt, ctx.rank)
        ctx.report(metrics, ckpt)
    if ctx.rank == 0:
        save_adapters(model, cfg.adapter_names, out / "adapters")
        if head is not None:
            torch.save(head.state_dict(), out / HEAD_FILE)


def run_single_process(cfg: TrainConfig, device: str = "cpu") -> list[dict]:
    """Train in this process as a world of one (no Ray); returns the per-update metrics.
    Used on machines without Ray (the GPU check) and by `mfray train --no-ray`."""
    records: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        ctx = WorkerContext(0, 1, device, report=lambda metrics, _ckpt: records.append(metrics), scratch=Path(scratch))
        train_worker(cfg, ctx)
    return records
