"""The noise floor of the fidelity metrics: what a perfect simulator could score with a given
annotator.

Take the real posts of one event, labelled by the annotator, grouped into windows as the
evaluation groups agents (one window per step). Split every window's posts at random into two
halves, call one half "real" and the other "simulated" (paired position by position), and
compute the metrics of mfray.eval.metrics exactly as mfray.eval.evaluate.trajectory_metrics
does: mean KL and Wasserstein over windows, macro-F1 over the pairs. Both halves come from the
same posts, so any divergence is sampling noise plus the annotator's own noise; averaged over
several seeds and over events it is the best a simulator that draws posts from the real
distribution could score (lower KL/Wasserstein is better, so these are floors; macro-F1 is the
chance agreement of two independent draws, a ceiling for a simulator that only matches the
distribution and knows nothing about the individual agent).

`evaluation_floor(posts, seeds)` is the floor of one evaluation, for its report (noise_floor.csv
and the "Annotator and noise floor" section of summary.md): the real posts it annotated, per
event, through `noise_floor`, averaged with `average_over_events`.

Note on scale: each half holds half a window's posts, so the floor is measured on windows half
the size of the evaluation's (N/2 against N/2 instead of N real against N simulated): sampling
noise is larger, and since metrics.kl_divergence smooths zero counts with eps=1e-6, a label seen
in one half and not in the other costs a lot. Compare simulators against it, not against 0.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import numpy as np

from mfray.eval.labels import DIMENSIONS
from mfray.eval.metrics import f1_scores, step_windows, window_divergences

METRICS = ("kl", "wasserstein", "macro_f1")


def split_halves(steps: Sequence[int], seed: int) -> tuple[list[int], list[int]]:
    """Indices of the two halves: every step's posts shuffled (random.Random(seed), steps in
    order) and cut in two equal halves (an odd post out is dropped; a step with one post gives
    none). The k-th index of one half is paired with the k-th of the other."""
    rng = random.Random(seed)
    by_step: dict[int, list[int]] = {}
    for i, step in enumerate(steps):
        by_step.setdefault(step, []).append(i)
    first: list[int] = []
    second: list[int] = []
    for step in sorted(by_step):
        idx = list(by_step[step])
        rng.shuffle(idx)
        half = len(idx) // 2
        first += idx[:half]
        second += idx[half:2 * half]
    return first, second


def halves_metrics(steps: Sequence[int], labels: Sequence[dict[str, str | None]], seed: int,
                   dimensions: dict[str, tuple[str, ...]] = DIMENSIONS) -> dict[str, dict[str, float]]:
    """{dimension: {kl, wasserstein, macro_f1}} between two random halves (one seed)."""
    if len(steps) != len(labels):
        raise ValueError(f"{len(steps)} steps but {len(labels)} label rows")
    a, b = split_halves(steps, seed)
    out = {}
    for dim, label_set in dimensions.items():
        real = [labels[i].get(dim) for i in a]
        sim = [labels[i].get(dim) for i in b]
        kl, wd = window_divergences(step_windows([steps[i] for i in a], real),
                                    step_windows([steps[i] for i in b], sim), label_set)
        macro, _ = f1_scores(real, sim) if real else (float("nan"), float("nan"))
        out[dim] = {"kl": kl, "wasserstein": wd, "macro_f1": macro}
    return out


def noise_floor(steps: Sequence[int], labels: Sequence[dict[str, str | None]],
                seeds: Sequence[int] = (0, 1, 2, 3, 4),
                dimensions: dict[str, tuple[str, ...]] = DIMENSIONS) -> dict[str, dict[str, float]]:
    """`halves_metrics` of one event averaged over `seeds` (NaNs, e.g. no window with two
    posts, left out)."""
    runs = [halves_metrics(steps, labels, s, dimensions) for s in seeds]
    return {dim: {m: _nanmean([r[dim][m] for r in runs]) for m in METRICS} for dim in dimensions}


def average_over_events(per_event: Sequence[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean of per-event noise floors (each event counts once, whatever its size)."""
    if not per_event:
        raise ValueError("no events")
    dims = per_event[0].keys()
    return {d: {m: _nanmean([e[d][m] for e in per_event]) for m in METRICS} for d in dims}


def _nanmean(values: Sequence[float]) -> float:
    arr = np.array([v for v in values if not math.isnan(v)], dtype=float)
    return float(arr.mean()) if arr.size else float("nan")


Labels = dict[str, str | None]


def evaluation_floor(posts: Mapping[str, Mapping[int, tuple[int, Labels]]], seeds: Sequence[int] = (0, 1, 2, 3, 4),
                     dimensions: dict[str, tuple[str, ...]] = DIMENSIONS) -> list[dict]:
    """The noise floor of an evaluation from its annotated real posts, `posts`: {event: {agent
    index: (step, labels)}} (each real agent once, whatever number of methods and seeds showed it).
    Per event, agents in index order go through `noise_floor(steps, labels, seeds)` (the same
    seeds for every event, as benchmarks/annotator_noise.py does); `average_over_events`. Returns
    one row per dimension: dimension, kl, wasserstein, macro_f1 and events (the events that had a
    window of two posts in that dimension, i.e. a finite KL). No events: a ValueError."""
    per_event = []
    for event in sorted(posts):
        agents = sorted(posts[event])
        per_event.append(noise_floor([posts[event][a][0] for a in agents], [posts[event][a][1] for a in agents],
                                     seeds, dimensions))
    mean = average_over_events(per_event)
    return [{"dimension": d, **mean[d], "events": sum(not math.isnan(e[d]["kl"]) for e in per_event)} for d in mean]
