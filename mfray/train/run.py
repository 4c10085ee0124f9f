"""What a training run does around the loop, wherever the loop runs (Ray Train, or one process):
check the data before any worker starts, and afterwards score the held-out real actions under
the policy before vs after, plot the curves and write <out>/summary.json."""

from __future__ import annotations

import json
from pathlib import Path

from mfray.data.validate import load_events
from mfray.train.config import TrainConfig
from mfray.train.samples import worker_streams
from mfray.types import Event


def check_data(cfg: TrainConfig) -> tuple[list[Event], list[Event]]:
    """Load training and held-out events, print every problem, and fail early on what would
    fail in every worker: too few usable events, or held-out events that are also trained on."""
    train, problems = load_events(cfg.train_events)
    heldout, heldout_problems = load_events(cfg.heldout_events) if cfg.heldout_events else ([], [])
    for problem in problems + heldout_problems:
        print(f"[data] {problem}", flush=True)
    if cfg.mode == "lct":
        from mfray.mdp.lct_data import lct_streams

        for line in lct_streams({e.event_id for e in train}, cfg.lct, cfg.workers, cfg.seed)[1]:
            print(f"[data] {line}", flush=True)
    else:
        worker_streams(train, cfg.agents_per_step, cfg.horizon, cfg.workers, cfg.seed)
    overlap = sorted({e.event_id for e in train} & {e.event_id for e in heldout})
    if overlap:
        raise ValueError(f"held-out events also in the training set: {overlap[:5]}{' ...' if len(overlap) > 5 else ''}")
    print(f"[train] {cfg.mode}: {len(train)} training events, {len(heldout)} held-out, {cfg.workers} workers, "
          f"{cfg.steps} updates", flush=True)
    return train, heldout


def finish_run(cfg: TrainConfig, heldout: list[Event], device: str = "auto") -> dict:
    """Curves, held-out policy NLL before vs after, summary.json; returns the summary."""
    from mfray.llm.local import LocalEngine
    from mfray.train.heldout import heldout_nll
    from mfray.train.report import plot_training

    out = Path(cfg.out).resolve()
    summary: dict = {"mode": cfg.mode, "updates": cfg.steps, "prompt_style": cfg.prompt_style, "adapters": {n: str(out / "adapters" / n) for n in cfg.adapter_names},
                     "curves": str(plot_training(out, out / "training_curves.png"))}
    if heldout and cfg.mode == "lct":
        summary.update(_heldout_lct(cfg, heldout, LocalEngine.load(cfg.model, device=device, adapters=summary["adapters"])))
    elif heldout:
        engine = LocalEngine.load(cfg.model, device=device, adapters=summary["adapters"])
        summary["heldout_before"] = heldout_nll(engine, heldout, cfg, tuned=False)
        summary["heldout_after"] = heldout_nll(engine, heldout, cfg, tuned=True)
        print(f"[heldout] policy NLL per token: before {summary['heldout_before']['nll_per_token']:.4f}, "
              f"after {summary['heldout_after']['nll_per_token']:.4f} "
              f"({summary['heldout_after']['actions']} real actions of {len(heldout)} events)", flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _heldout_lct(cfg: TrainConfig, heldout: list[Event], engine) -> dict:
    """Before/after on the held-out events' steps heldout_start // N_t .. + heldout_steps: policy
    NLL, and the trained head's lookahead cost against persistence's."""
    import torch

    from mfray.mdp.lct import LookaheadHead
    from mfray.mdp.lct_data import load_samples
    from mfray.train.heldout import heldout_lct
    from mfray.train.loop import HEAD_FILE

    found, missing = load_samples(cfg.lct.runs, {e.event_id for e in heldout}, cfg.lct.k, cfg.lct.annotator, cfg.seed)
    for event_id in missing:
        print(f"[heldout] event {event_id}: no all-real mfmdp run in {', '.join(cfg.lct.runs)}; not scored", flush=True)
    first = cfg.heldout_start // cfg.agents_per_step
    samples = [s for event_id in sorted(found) for s in found[event_id] if first <= s.step < first + cfg.heldout_steps]
    head = LookaheadHead(engine.model.config.hidden_size, cfg.lct.k, cfg.lct.head_width, cfg.lct.head_dropout)
    head.load_state_dict(torch.load(Path(cfg.out) / HEAD_FILE, weights_only=True))
    before, after = heldout_lct(engine, samples, cfg), heldout_lct(engine, samples, cfg, head)
    print(f"[heldout] LCT-Policy on {len(samples)} steps of {len(found)} events: policy NLL per token "
          f"{before['nll_per_token']:.4f} -> {after['nll_per_token']:.4f}; lookahead cost V: head "
          f"{after['lookahead_cost_head']:.4f}, persistence {after['lookahead_cost_persistence']:.4f}", flush=True)
    return {"heldout_before": before, "heldout_after": after}
