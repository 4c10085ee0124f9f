"""Bootstrap intervals over events, against values worked by hand (the working is in each test)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mfray.eval.intervals import MEAN, change_intervals, comparisons, paired_bootstrap_change, paired_events


def test_a_change_equal_on_every_event_has_no_width():
    # every event 0.8 x the baseline: any resample's means keep the ratio, so -20% [-20%, -20%]
    change, low, high = paired_bootstrap_change(np.array([0.8, 1.6, 2.4]), np.array([1.0, 2.0, 3.0]), draws=500)
    assert (change, low, high) == pytest.approx((-0.2, -0.2, -0.2))


def test_two_events_interval_spans_the_resamples():
    # method [1, 3], baseline [2, 2]: change (2 - 2) / 2 = 0. Resamples of two events:
    # (e1, e1) w.p. 1/4 -> (1 - 2) / 2 = -0.5; mixed w.p. 1/2 -> 0; (e2, e2) w.p. 1/4 -> +0.5.
    # 2.5% and 97.5% of that distribution: -0.5 and +0.5.
    assert paired_bootstrap_change(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == pytest.approx((0.0, -0.5, 0.5))
    # method [1, 3], baseline [2, 4]: change (2 - 3) / 3 = -1/3; resamples: (e1, e1) (1 - 2) / 2 = -0.5,
    # mixed -1/3, (e2, e2) (3 - 4) / 4 = -0.25: interval [-0.5, -0.25], and it is paired (an unpaired
    # draw could give (1 - 4) / 4 = -0.75)
    assert paired_bootstrap_change(np.array([1.0, 3.0]), np.array([2.0, 4.0])) == pytest.approx((-1 / 3, -0.5, -0.25))


def test_bootstrap_is_seeded_and_rejects_unpaired_input():
    a, b = np.array([1.0, 2.0, 5.0, 3.0]), np.array([2.0, 2.0, 2.0, 2.5])
    assert paired_bootstrap_change(a, b, seed=3) == paired_bootstrap_change(a, b, seed=3)
    assert all(math.isnan(v) for v in paired_bootstrap_change(np.array([]), np.array([])))
    with pytest.raises(ValueError, match="one length"):
        paired_bootstrap_change(np.array([1.0]), np.array([1.0, 2.0]))


def row(event, method, seed, dimension, kl):
    return {"event_id": event, "method": method, "seed": seed, "dimension": dimension, "kl": kl}


def test_paired_events_average_seeds_and_use_only_dimensions_both_sides_have():
    rows = [
        row("A", "mf", 0, "attitude", 0.2), row("A", "mf", 1, "attitude", 0.4),  # A, mf, attitude: 0.3
        row("A", "mf", 0, "sentiment", 1.0),
        row("A", "state", 0, "attitude", 0.6), row("A", "state", 0, "sentiment", float("nan")),
        row("B", "mf", 0, "attitude", 0.5),  # B: no state row, so not an event of the pair
    ]
    events, a, b = paired_events(rows, "kl", "mf", "state", "attitude")
    assert events == ["A"] and a == pytest.approx([0.3]) and b == pytest.approx([0.6])
    # MEAN over the dimensions both have on A: attitude only (state has no sentiment value)
    events, a, b = paired_events(rows, "kl", "mf", "state", MEAN)
    assert events == ["A"] and a == pytest.approx([0.3]) and b == pytest.approx([0.6])


def test_comparisons_and_rows():
    assert comparisons(["mf", "mf_ibtune", "state"]) == [("mf", "state"), ("mf_ibtune", "state"), ("mf_ibtune", "mf")]
    assert comparisons(["mf", "sft"]) == []
    rows = [row("A", "mf", 0, "attitude", 0.5), row("A", "state", 0, "attitude", 1.0),
            row("B", "mf", 0, "attitude", 1.5), row("B", "state", 0, "attitude", 1.0)]
    out = [r for r in change_intervals(rows, ["kl"], draws=2000) if r["dimension"] in ("attitude", MEAN)]
    # attitude: mf [0.5, 1.5] vs state [1, 1]: change 0, interval [-0.5, +0.5] as above; MEAN equals it
    for r in out:
        assert (r["metric"], r["method"], r["baseline"], r["events"]) == ("kl", "mf", "state", 2)
        assert (r["change"], r["low"], r["high"]) == pytest.approx((0.0, -0.5, 0.5))
