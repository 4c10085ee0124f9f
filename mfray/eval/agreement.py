"""An annotator against hand labels: per-dimension accuracy and macro-F1 beside the majority
floor, and leave-events-out cross-validation for annotators fitted on the labels.

Used by benchmarks/annotator_gold.py. Pure functions, no I/O.

- `agreement(gold, preds)`: per dimension, accuracy, macro-F1 (mfray.eval.metrics.f1_scores:
  averaged over the labels present in gold or predictions; a missing prediction counts as wrong
  for accuracy and is left out of F1), the majority label *of the scored set* and its accuracy,
  and whether the annotator's accuracy is above it (a tie is not above).
- `event_folds(gold, k, seed)`: fold index per event (events shuffled with `seed`, dealt round
  robin); k=0 gives one fold per event (leave-one-event-out).
- `cross_validate(fit, gold, k, seed)`: for each fold, `fit(rows of the other folds)` returns a
  predictor that labels the fold's rows; no event's posts are ever both fitted and scored.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mfray.eval.labels import DIMENSIONS, GoldLabel
from mfray.eval.metrics import f1_scores

Labels = dict[str, str | None]
Predictor = Callable[[list[GoldLabel]], list[Labels]]


@dataclass(frozen=True)
class DimensionScore:
    accuracy: float
    macro_f1: float
    majority_label: str
    majority_accuracy: float
    n: int

    @property
    def beats_majority(self) -> bool:
        """Strictly above the majority floor (counted in posts, so float noise cannot tie-break)."""
        return round(self.accuracy * self.n) > round(self.majority_accuracy * self.n)

    @property
    def verdict(self) -> str:
        right, floor = round(self.accuracy * self.n), round(self.majority_accuracy * self.n)
        return "yes" if right > floor else "tie" if right == floor else "no"


def majority(gold: Sequence[GoldLabel], dim: str) -> tuple[str, int]:
    """The most frequent label of `dim` in `gold` and its count (ties: label-set order)."""
    counts = Counter(g.labels[dim] for g in gold)
    best = max(DIMENSIONS[dim], key=lambda label: (counts[label], -DIMENSIONS[dim].index(label)))
    return best, counts[best]


def agreement(gold: Sequence[GoldLabel], preds: Sequence[Labels]) -> dict[str, DimensionScore]:
    if len(gold) != len(preds):
        raise ValueError(f"{len(gold)} gold rows but {len(preds)} predictions")
    if not gold:
        raise ValueError("nothing to score")
    out = {}
    for dim in DIMENSIONS:
        real = [g.labels[dim] for g in gold]
        pred = [p.get(dim) for p in preds]
        right = sum(r == p for r, p in zip(real, pred, strict=True))
        macro, _ = f1_scores(real, pred)
        label, count = majority(gold, dim)
        out[dim] = DimensionScore(right / len(gold), macro, label, count / len(gold), len(gold))
    return out


def averages(scores: dict[str, DimensionScore]) -> tuple[float, float, float]:
    """(mean accuracy, mean macro-F1, mean majority accuracy) over the dimensions."""
    n = len(scores)
    return (sum(s.accuracy for s in scores.values()) / n, sum(s.macro_f1 for s in scores.values()) / n,
            sum(s.majority_accuracy for s in scores.values()) / n)


def per_label_f1(gold: Sequence[GoldLabel], preds: Sequence[Labels], dim: str) -> dict[str, tuple[float, int]]:
    """{label: (F1, count in gold)} for every label of `dim` (F1 0 for a label never right)."""
    real = [g.labels[dim] for g in gold]
    pred = [p.get(dim) for p in preds]
    out = {}
    for label in DIMENSIONS[dim]:
        tp = sum(r == label and p == label for r, p in zip(real, pred))
        fp = sum(r != label and p == label for r, p in zip(real, pred))
        fn = sum(r == label and p != label for r, p in zip(real, pred))
        out[label] = (2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0, real.count(label))
    return out


def event_folds(gold: Sequence[GoldLabel], k: int = 10, seed: int = 0) -> dict[str, int]:
    """{event: fold}: events sorted, shuffled with `seed`, dealt round robin into k folds
    (k=0 or k >= the number of events: one fold per event)."""
    events = sorted({g.event for g in gold})
    random.Random(seed).shuffle(events)
    k = len(events) if k <= 0 or k > len(events) else k
    return {event: i % k for i, event in enumerate(events)}


def cross_validate(fit: Callable[[list[GoldLabel]], Predictor], gold: Sequence[GoldLabel],
                   k: int = 10, seed: int = 0) -> list[Labels]:
    """Predictions for every row of `gold`, each made by a predictor fitted on the rows of the
    other folds (folds grouped by event, `event_folds`)."""
    gold = list(gold)
    folds = event_folds(gold, k, seed)
    out: list[Labels | None] = [None] * len(gold)
    for fold in sorted(set(folds.values())):
        train = [g for g in gold if folds[g.event] != fold]
        test_idx = [i for i, g in enumerate(gold) if folds[g.event] == fold]
        if {g.event for g in train} & {gold[i].event for i in test_idx}:
            raise AssertionError("an event is both fitted and scored")  # cannot happen: grouped
        preds = fit(train)([gold[i] for i in test_idx])
        for i, p in zip(test_idx, preds, strict=True):
            out[i] = p
    return out  # type: ignore[return-value]
