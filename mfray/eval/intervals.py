"""How sure a change between two methods is, given the events it was measured on.

Events differ far more from each other than seeds of one event do, so the interval that answers
"does method A track the real population better than B on events like these?" resamples events:
a paired percentile bootstrap over the events both methods ran, each event's value the mean over
its seeds (and, for the "mean" column, over the dimensions both methods have on that event).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from mfray.eval.labels import DIMENSIONS

MEAN = "mean"  # the column that averages the dimensions


def paired_bootstrap_change(values: np.ndarray, baseline: np.ndarray, draws: int = 10_000, seed: int = 0,
                            level: float = 0.95) -> tuple[float, float, float]:
    """(change, low, high): change = (mean(values) - mean(baseline)) / |mean(baseline)| over events
    (values[i] and baseline[i] are one event), and the `level` percentile interval of that change
    when the events are drawn with replacement, the same draw for both sides. NaN when there are
    no events or the baseline's mean is 0."""
    values, baseline = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if values.shape != baseline.shape or values.ndim != 1:
        raise ValueError(f"values and baseline must be 1-D and of one length, got {values.shape} and {baseline.shape}")
    if values.size == 0 or baseline.mean() == 0:
        return float("nan"), float("nan"), float("nan")
    picks = np.random.default_rng(seed).integers(0, values.size, size=(draws, values.size))
    drawn_base = baseline[picks].mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        changes = (values[picks].mean(axis=1) - drawn_base) / np.abs(drawn_base)
    changes = changes[np.isfinite(changes)]  # a draw whose baseline mean is 0 has no relative change
    tail = (1 - level) / 2
    change = (values.mean() - baseline.mean()) / abs(baseline.mean())
    return float(change), float(np.quantile(changes, tail)), float(np.quantile(changes, 1 - tail))


def per_event(rows: Sequence[dict], metric: str, method: str, dimension: str) -> dict[str, float]:
    """{event: mean of `metric` over its seeds} for one method and dimension; NaNs left out."""
    values: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r["method"] == method and r["dimension"] == dimension and not np.isnan(r[metric]):
            values[r["event_id"]].append(float(r[metric]))
    return {event: float(np.mean(v)) for event, v in values.items()}


def paired_events(rows: Sequence[dict], metric: str, method: str, baseline: str,
                  dimension: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(events, method's values, baseline's values) over the events both have; for MEAN each
    event's value is the mean over the dimensions both methods have on it, so that a dimension one
    side could not score never tilts the comparison."""
    dims = list(DIMENSIONS) if dimension == MEAN else [dimension]
    mine = {d: per_event(rows, metric, method, d) for d in dims}
    theirs = {d: per_event(rows, metric, baseline, d) for d in dims}
    events, a, b = [], [], []
    for event in sorted({e for d in dims for e in mine[d].keys() & theirs[d].keys()}):
        both = [d for d in dims if event in mine[d] and event in theirs[d]]
        events.append(event)
        a.append(np.mean([mine[d][event] for d in both]))
        b.append(np.mean([theirs[d][event] for d in both]))
    return events, np.array(a), np.array(b)


def comparisons(methods: Sequence[str]) -> list[tuple[str, str]]:
    """The (method, baseline) pairs a report answers: every method against `state` (the paper's
    baseline), and IB-Tune against untuned MF-LLM (mf_ibtune vs mf), each where both ran."""
    pairs = [(m, "state") for m in methods if m != "state" and "state" in methods]
    if "mf_ibtune" in methods and "mf" in methods:
        pairs.append(("mf_ibtune", "mf"))
    return pairs


def pair_interval(rows: Sequence[dict], metric: str, method: str, baseline: str, dimension: str = MEAN,
                  draws: int = 10_000, seed: int = 0) -> dict:
    """One comparison: the events both ran, the relative change of `method` against `baseline`
    over them and its 95% paired bootstrap interval over events."""
    events, a, b = paired_events(rows, metric, method, baseline, dimension)
    change, low, high = paired_bootstrap_change(a, b, draws, seed)
    return {"metric": metric, "method": method, "baseline": baseline, "dimension": dimension,
            "events": len(events), "change": change, "low": low, "high": high}


def change_intervals(rows: Sequence[dict], metrics: Sequence[str], draws: int = 10_000,
                     seed: int = 0) -> list[dict]:
    """`pair_interval` for every (metric, pair of `comparisons`, dimension or MEAN)."""
    methods = sorted({r["method"] for r in rows})
    return [pair_interval(rows, metric, method, baseline, dimension, draws, seed)
            for metric in metrics for method, baseline in comparisons(methods) for dimension in [*DIMENSIONS, MEAN]]
