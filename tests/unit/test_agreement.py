"""Scoring an annotator against hand labels (mfray.eval.agreement): the majority floor of the
scored set, strict "beats", event-grouped folds, and cross-validation that never fits on an event
it scores."""

from __future__ import annotations

import pytest

from mfray.eval.agreement import (
    agreement,
    averages,
    cross_validate,
    event_folds,
    majority,
    per_label_f1,
)
from mfray.eval.labels import GoldLabel

BASE = {"rumor": "spread", "sentiment": "calm", "attitude": "neutral", "behavior": "share",
        "stance": "support", "belief": "believe", "subjectivity": "objective", "intent": "promotion"}


def row(event: str, i: int, **labels: str) -> GoldLabel:
    return GoldLabel(event, str(i), "topic", f"text {event} {i}", {**BASE, **labels})


def test_majority_floor_and_verdicts_hand_worked():
    # rumor: 3 spread, 1 counter -> majority spread, 0.75.
    gold = [row("a", 0), row("a", 1), row("b", 2), row("b", 3, rumor="counter")]
    assert majority(gold, "rumor") == ("spread", 3)
    always_spread = [dict(BASE) for _ in gold]
    s = agreement(gold, always_spread)
    assert s["rumor"].accuracy == 0.75 and s["rumor"].majority_accuracy == 0.75
    assert s["rumor"].verdict == "tie" and not s["rumor"].beats_majority  # a tie is not above
    # macro-F1 over the labels in gold or predictions: spread F1 = 2*3/(6+1) = 6/7, counter 0.
    assert s["rumor"].macro_f1 == pytest.approx((6 / 7 + 0) / 2)
    perfect = [dict(g.labels) for g in gold]
    s = agreement(gold, perfect)
    assert s["rumor"].verdict == "yes" and s["rumor"].macro_f1 == 1.0
    # every other dimension is constant: perfect = majority = 1.0, a tie
    assert s["sentiment"].verdict == "tie"
    wrong = [{**p, "rumor": "counter"} for p in perfect]
    assert agreement(gold, wrong)["rumor"].verdict == "no"
    acc, f1, floor = averages(agreement(gold, perfect))
    assert f1 == 1.0
    assert acc == 1.0 and floor == pytest.approx((0.75 + 7) / 8)


def test_majority_tie_breaks_in_label_set_order():
    gold = [row("a", 0, rumor="counter"), row("a", 1)]
    assert majority(gold, "rumor") == ("spread", 1)  # spread comes first in DIMENSIONS


def test_missing_prediction_is_wrong_for_accuracy():
    gold = [row("a", 0), row("a", 1)]
    preds = [dict(BASE), {**BASE, "rumor": None}]
    assert agreement(gold, preds)["rumor"].accuracy == 0.5


def test_per_label_f1_counts():
    gold = [row("a", 0), row("a", 1, rumor="counter")]
    got = per_label_f1(gold, [dict(BASE), dict(BASE)], "rumor")
    assert got == {"spread": (pytest.approx(2 / 3), 1), "counter": (0.0, 1)}


def test_event_folds_group_events():
    gold = [row(e, i) for i, e in enumerate("aabbccddee")]
    folds = event_folds(gold, k=2, seed=0)
    assert set(folds) == set("abcde") and set(folds.values()) == {0, 1}
    assert event_folds(gold, k=2, seed=0) == folds  # deterministic
    assert sorted(event_folds(gold, k=0).values()) == [0, 1, 2, 3, 4]  # one per event
    assert sorted(event_folds(gold, k=99).values()) == [0, 1, 2, 3, 4]


def test_cross_validate_never_fits_on_a_scored_event():
    gold = [row(e, i, rumor="counter" if i % 3 == 0 else "spread") for i, e in enumerate("aabbccddeeff")]
    seen = []

    def fit(train):
        fitted = {g.event for g in train}

        def predict(rows):
            scored = {g.event for g in rows}
            seen.append((fitted, scored))
            assert not fitted & scored
            return [{**BASE, "stance": "neutral"} for _ in rows]
        return predict

    preds = cross_validate(fit, gold, k=3, seed=1)
    assert len(preds) == len(gold) and all(p["stance"] == "neutral" for p in preds)
    assert len(seen) == 3
    assert set().union(*(s for _, s in seen)) == set("abcdef")  # every event scored once
    for fitted, scored in seen:
        assert fitted | scored == set("abcdef")
