"""Trajectories -> annotations -> per-dimension metrics (SPEC section 5), single process.

The Ray Data stages in mfray/ray/ call the same functions (`annotation_items`,
`trajectory_metrics`, `generation_failures`), so both paths compute identical numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from mfray.eval.annotate import Annotation, AnnotationItem, Annotator
from mfray.eval.labels import DIMENSIONS
from mfray.eval.metrics import dtw_distance, f1_scores, label_shares, relative_change, step_windows, window_divergences
from mfray.types import StepRecord

METRICS = ("kl", "wasserstein", "dtw", "macro_f1", "micro_f1")  # one value per dimension
TRAJECTORY_METRICS = ("nll_token", "nll_action")  # one value per trajectory (mfray.eval.nll)
LOWER_IS_BETTER = {"kl": True, "wasserstein": True, "dtw": True, "macro_f1": False, "micro_f1": False,
                   "nll_token": True, "nll_action": True}
DEFAULT_MAX_FAILURE_RATE = 0.05  # EvaluateConfig.max_failure_rate's default; the report flags rates above it


@dataclass(frozen=True)
class EvalRange:
    """Agents start <= j < end are evaluated (SPEC: 50..300); warm-up agents never are."""

    start: int = 50
    end: int = 300


def evaluated(records: Sequence[StepRecord], rng: EvalRange) -> list[StepRecord]:
    """The records that enter the metrics: in range, past warm-up, with a real action to compare."""
    return [r for r in records if rng.start <= r.agent_index < rng.end and not r.warmup and r.real_text is not None]


def annotation_items(records: Sequence[StepRecord]) -> tuple[list[AnnotationItem], list[AnnotationItem | None]]:
    """(real items, simulated items) aligned with `records`; a failed generation has no item."""
    real = [AnnotationItem(r.real_text, r.topic, r.language) for r in records]
    sim = [None if r.failed or r.simulated_text is None else AnnotationItem(r.simulated_text, r.topic, r.language) for r in records]
    return real, sim


async def annotate_records(records: Sequence[StepRecord], annotator: Annotator) -> tuple[list[Annotation], list[Annotation | None]]:
    """Annotate both sides of `records` in one batch (the annotator's cache removes repeats)."""
    real, sim = annotation_items(records)
    present = [item for item in sim if item is not None]
    out = await annotator.annotate(real + present)
    real_ann, sim_iter = out[: len(real)], iter(out[len(real) :])
    return real_ann, [None if item is None else next(sim_iter) for item in sim]


def generation_failures(failed: Sequence[bool], inserted: Sequence[bool]) -> dict:
    """Generation failures of one trajectory, over its evaluated agents (`evaluated()`: in the
    range, past warm-up, with a real action), one flag pair per agent: `failed` (the policy's
    generation failed after its retries) and `inserted` (an intervention post took its place).

    simulated = evaluated agents that are not inserted (the policy had to generate them);
    failed = those of them whose generation failed; failure_rate = failed / simulated (NaN when
    nothing was simulated). Warm-up agents are never evaluated and inserted posts cannot fail, so
    neither enters the rate. A failed agent has no simulated label and drops out of every metric
    window and F1 pair, so the rate says how many fewer agents the metrics stand on. Both
    evaluation paths put these columns on each of the trajectory's dimension rows."""
    if len(failed) != len(inserted):
        raise ValueError(f"{len(failed)} failed flags but {len(inserted)} inserted flags: one of each per agent")
    simulated = sum(1 for i in inserted if not i)
    n_failed = sum(1 for f, i in zip(failed, inserted) if f and not i)
    return {"simulated": simulated, "failed": n_failed, "failure_rate": n_failed / simulated if simulated else float("nan")}


def method_failures(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Per method, the `generation_failures` columns pooled over its trajectories (events and
    seeds): summed simulated and failed agents, and their ratio. Each trajectory counts once, however many
    dimension rows repeat its counts; rows without the counts (written before them) give NaN."""
    per_trajectory = {(r.get("event_id"), r["method"], r.get("seed")): (r.get("simulated"), r.get("failed")) for r in rows}
    out: dict[str, dict[str, float]] = {}
    for method in sorted({m for _, m, _ in per_trajectory}):
        counts = [c for (_, m, _), c in per_trajectory.items() if m == method and c[0] is not None]
        simulated, failed = sum(int(s) for s, _ in counts), sum(int(f) for _, f in counts)
        rate = failed / simulated if simulated else float("nan")
        out[method] = {"simulated": simulated, "failed": failed, "failure_rate": rate}
    return out


def trajectory_metrics(
    steps: Sequence[int], real: Sequence[Annotation], sim: Sequence[Annotation | None]
) -> list[dict]:
    """One row per dimension: KL and Wasserstein over step windows, DTW between the step
    distribution sequences, macro/micro-F1 over same-agent pairs, and the counts behind them."""
    rows = []
    for dim, label_set in DIMENSIONS.items():
        real_labels = [a.labels.get(dim) for a in real]
        sim_labels = [None if a is None else a.labels.get(dim) for a in sim]
        real_w, sim_w = step_windows(steps, real_labels), step_windows(steps, sim_labels)
        kl, wd = window_divergences(real_w, sim_w, label_set)
        paired = [(label_shares(r, label_set), label_shares(s, label_set)) for r, s in zip(real_w, sim_w)]
        paired = [(p, q) for p, q in paired if p.sum() and q.sum()]
        dtw = dtw_distance(np.array([p for p, _ in paired]), np.array([q for _, q in paired])) if paired else float("nan")
        macro, micro = f1_scores(real_labels, sim_labels)
        rows.append({
            "dimension": dim, "kl": kl, "wasserstein": wd, "dtw": dtw, "macro_f1": macro, "micro_f1": micro,
            "agents": len(real_labels),
            "missing_real": sum(lbl is None for lbl in real_labels),
            "missing_sim": sum(lbl is None for lbl in sim_labels),
        })
    return rows


def summarise(rows: list[dict], metric: str) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Mean of `metric` per method and dimension over events and seeds, plus the mean over
    dimensions ("mean") and, when the `state` baseline is present, the relative change of that
    mean against it ("vs_state"). NaNs (nothing to compare) are left out of the means. Each
    method's pooled generation failure rate ("failure_rate", `method_failures`) goes with it: a
    method that fails more is scored on fewer agents."""
    methods = sorted({r["method"] for r in rows})
    failures = method_failures(rows)
    table: dict[str, dict[str, float]] = {}
    for method in methods:
        cells = {}
        for dim in DIMENSIONS:
            values = [r[metric] for r in rows if r["method"] == method and r["dimension"] == dim and not np.isnan(r[metric])]
            cells[dim] = float(np.mean(values)) if values else float("nan")
        dims = [v for v in cells.values() if not np.isnan(v)]
        cells["mean"] = float(np.mean(dims)) if dims else float("nan")
        cells["failure_rate"] = failures[method]["failure_rate"]
        table[method] = cells
    if "state" in table and table["state"]["mean"]:
        base = table["state"]["mean"]
        for method in methods:
            table[method]["vs_state"] = (table[method]["mean"] - base) / abs(base)
    return methods, table


def summarise_events(rows: list[dict], metric: str) -> tuple[list[str], list[str], dict[str, dict[str, float]]]:
    """For a per-trajectory metric (repeated on each dimension row of its trajectory): the mean
    over seeds per method and event, the mean over events ("mean") and its relative change
    against `state` ("vs_state"), and the method's pooled generation failure rate
    ("failure_rate", `method_failures`). Returns (methods, events, table). NaNs are left out."""
    failures = method_failures(rows)
    per_trajectory = {(r["event_id"], r["method"], r["seed"]): r.get(metric, float("nan")) for r in rows}
    methods = sorted({m for _, m, _ in per_trajectory})
    events = sorted({e for e, _, _ in per_trajectory})
    table: dict[str, dict[str, float]] = {}
    for method in methods:
        cells = {}
        for event in events:
            values = [v for (e, m, _), v in per_trajectory.items() if (e, m) == (event, method) and not np.isnan(v)]
            cells[event] = float(np.mean(values)) if values else float("nan")
        present = [v for v in cells.values() if not np.isnan(v)]
        cells["mean"] = float(np.mean(present)) if present else float("nan")
        cells["failure_rate"] = failures[method]["failure_rate"]
        table[method] = cells
    base = table.get("state", {}).get("mean", float("nan"))
    for method in methods:
        table[method]["vs_state"] = relative_change(table[method]["mean"], base)  # NaN without a state baseline
    return methods, events, table
