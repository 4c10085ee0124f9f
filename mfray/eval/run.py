"""`mfray evaluate`, single process: read trajectories, annotate, compute metrics, report."""

from __future__ import annotations

import asyncio
from pathlib import Path

from mfray.eval.agreement_record import annotator_agreement
from mfray.eval.annotate import Annotator, CachedAnnotator
from mfray.eval.annotators import LOCAL_ANNOTATORS, build_local_annotator
from mfray.eval.config import EvaluateConfig
from mfray.eval.evaluate import EvalRange, annotate_records, evaluated, generation_failures, trajectory_metrics
from mfray.eval.inputs import evaluable_runs, write_incomplete
from mfray.eval.labels import DIMENSIONS
from mfray.eval.nll import build_scorer, score_records, trajectory_nll
from mfray.eval.noise import evaluation_floor
from mfray.eval.realism import RealismInputs, realism_rows
from mfray.eval.report import plot_trajectories, write_summary
from mfray.llm.base import LLM
from mfray.sim.store import read_runs


def build_annotator(cfg: EvaluateConfig) -> Annotator:
    """The configured annotator behind the text-hash cache."""
    if cfg.annotator in LOCAL_ANNOTATORS:
        inner = build_local_annotator(cfg.annotator)
    else:
        from mfray.eval.llm_annotator import LLMAnnotator
        from mfray.llm import build_llm

        # The model is part of the name, so labels cached from one model never stand in for another's.
        inner = LLMAnnotator(build_llm(None, cfg.endpoint), name=f"llm:{cfg.endpoint.model}", batch_size=cfg.annotator_batch)
    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in inner.name)
    cache = Path(cfg.cache or Path(cfg.out) / f"annotations.{safe}.jsonl")
    return CachedAnnotator(inner, cache)


def evaluate(cfg: EvaluateConfig, annotator: Annotator | None = None, progress=None, scorer: LLM | None = None) -> list[dict]:
    """Metric rows (event, method, seed, dimension, metrics...) for every complete trajectory
    (mfray.eval.inputs.evaluable_runs: incomplete runs are listed in incomplete_runs.txt, runs
    of one method made under different configs are refused), and the report files under cfg.out. Returns the rows. The NLL columns (mfray.eval.nll) are
    present when cfg.nll_model is set; `scorer` replaces the model it names (already loaded).
    With cfg.realism, realism.md/.csv (mfray.eval.realism) come from the same evaluated records.
    The noise floor (mfray.eval.noise.evaluation_floor, cfg.noise_seeds) comes from the real
    posts' labels, each real agent once per event; summary.md shows it with the annotator's
    measured agreement (mfray.eval.agreement_record)."""
    runs, incomplete = evaluable_runs(cfg.trajectories)
    annotator = annotator or build_annotator(cfg)
    if cfg.nll_model is None:
        scorer = None
    elif scorer is None:
        scorer = build_scorer(cfg)
    out = Path(cfg.out)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    write_incomplete(incomplete, out)
    rng = EvalRange(cfg.eval_start, cfg.eval_end)
    rows: list[dict] = []
    per_event: dict[str, dict] = {}  # event -> {"index", "real", "sim": {method: labels}} for plots
    realism = RealismInputs()
    real_posts: dict[str, dict[int, tuple[int, dict]]] = {}  # event -> agent index -> (step, labels)
    for run, records in read_runs(runs):
        records = evaluated(records, rng)
        if not records:
            continue
        realism.add(records)
        real, sim = asyncio.run(annotate_records(records, annotator))
        head = records[0]
        event_posts = real_posts.setdefault(head.event_id, {})
        for r, a in zip(records, real):  # every trajectory of an event shows the same real agents
            event_posts.setdefault(r.agent_index, (r.step, a.labels))
        extra = generation_failures([r.failed for r in records], [r.intervention for r in records])
        if scorer is not None:
            extra.update(trajectory_nll(asyncio.run(score_records(records, scorer, cfg.nll_adapters))))
        for row in trajectory_metrics([r.step for r in records], real, sim):
            rows.append({"event_id": head.event_id, "method": head.method, "seed": head.seed, **row, **extra})
        plot = per_event.setdefault(head.event_id, {"index": [r.agent_index for r in records], "real": real, "sim": {}})
        if [r.agent_index for r in records] == plot["index"]:  # plot one seed per method, same agents
            plot["sim"].setdefault(head.method, sim)
        if progress is not None:
            progress(run)
    if not rows:
        raise ValueError(f"no agent of {cfg.trajectories} falls in the evaluated range {rng.start}..{rng.end}")
    realism_table = realism_rows(realism, cfg.realism_seed, cfg.realism_folds) if cfg.realism else None
    write_summary(rows, out, cfg.max_failure_rate, realism_table, evaluation_floor(real_posts, cfg.noise_seeds),
                  annotator.name, annotator_agreement(annotator.name))
    for event_id, plot in per_event.items():
        for dim in DIMENSIONS:
            sims = {m: [None if a is None else a.labels.get(dim) for a in anns] for m, anns in plot["sim"].items()}
            reals = [a.labels.get(dim) for a in plot["real"]]
            plot_trajectories(event_id, dim, plot["index"], reals, sims, out / "plots" / f"{event_id}__{dim}.png", cfg.plot_window)
    return rows
