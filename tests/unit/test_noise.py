"""The noise floor (mfray.eval.noise): two random halves of the same posts, hand-worked."""

from __future__ import annotations

import math

import pytest

from mfray.eval.metrics import EPS
from mfray.eval.noise import (
    average_over_events,
    evaluation_floor,
    halves_metrics,
    noise_floor,
    split_halves,
)

RUMOR = {"rumor": ("spread", "counter")}


def test_split_halves_per_step_equal_and_disjoint():
    steps = [0, 0, 0, 0, 0, 1, 1, 2]
    a, b = split_halves(steps, seed=3)
    assert len(a) == len(b) == 3  # step 0: 2+2 (one dropped), step 1: 1+1, step 2: none
    assert not set(a) & set(b)
    assert [steps[i] for i in a] == [steps[i] for i in b] == [0, 0, 1]  # pairs share a step
    assert split_halves(steps, seed=3) == (a, b)  # seeded
    assert {tuple(split_halves(steps, s)[0]) for s in range(20)} != {tuple(a)}  # seeds differ


def test_identical_posts_have_a_zero_floor():
    labels = [{"rumor": "spread"}] * 6
    got = noise_floor([0, 0, 0, 1, 1, 1], labels, seeds=(0, 1), dimensions=RUMOR)
    assert got["rumor"] == {"kl": pytest.approx(0.0, abs=1e-12), "wasserstein": 0.0, "macro_f1": 1.0}


def test_one_pair_that_disagrees_hand_worked():
    # One window of two posts: one half is "spread", the other "counter" (whatever the seed).
    # Smoothed shares p = (1+e, e)/(1+2e), q = (e, 1+e)/(1+2e):
    # KL(p||q) = [(1+e) log((1+e)/e) + e log(e/(1+e))] / (1+2e) = log((1+e)/e) / (1+2e).
    # Wasserstein over two ordered labels = |CDF difference| at the first = 1. Macro-F1 over
    # {spread, counter}: both 0.
    labels = [{"rumor": "spread"}, {"rumor": "counter"}]
    for seed in range(4):
        got = halves_metrics([0, 0], labels, seed, RUMOR)["rumor"]
        assert got["kl"] == pytest.approx(math.log((1 + EPS) / EPS) / (1 + 2 * EPS))
        assert got["wasserstein"] == pytest.approx(1.0)
        assert got["macro_f1"] == 0.0


def test_average_over_events_counts_each_event_once():
    e1 = {"rumor": {"kl": 0.0, "wasserstein": 0.0, "macro_f1": 1.0}}
    e2 = {"rumor": {"kl": 2.0, "wasserstein": 1.0, "macro_f1": float("nan")}}
    got = average_over_events([e1, e2])
    assert got["rumor"] == {"kl": 1.0, "wasserstein": 0.5, "macro_f1": 1.0}  # NaN left out
    with pytest.raises(ValueError):
        average_over_events([])


def test_lengths_must_match():
    with pytest.raises(ValueError):
        halves_metrics([0, 0], [{"rumor": "spread"}], 0, RUMOR)


def test_evaluation_floor_hand_worked():
    # e1: four "spread" posts in one window -> KL 0, W 0, F1 1 (any seed). e2: one "spread" and
    # one "counter" in one window -> KL log((1+e)/e)/(1+2e) = L, W 1, F1 0 (as above). e3: one
    # post per step, so no window has two posts -> NaN, left out of the means and of "events".
    # Mean over e1, e2: KL L/2, W 0.5, F1 0.5, from 2 events.
    posts = {
        "e2": {6: (0, {"rumor": "counter"}), 5: (0, {"rumor": "spread"})},  # agent order does not matter
        "e1": {j: (0, {"rumor": "spread"}) for j in range(4)},
        "e3": {0: (0, {"rumor": "spread"}), 1: (1, {"rumor": "counter"})},
    }
    [row] = evaluation_floor(posts, seeds=[0, 1, 2], dimensions=RUMOR)
    big_l = math.log((1 + EPS) / EPS) / (1 + 2 * EPS)
    assert row == {"dimension": "rumor", "kl": pytest.approx(big_l / 2), "wasserstein": pytest.approx(0.5),
                   "macro_f1": pytest.approx(0.5), "events": 2}
    with pytest.raises(ValueError, match="no events"):
        evaluation_floor({}, seeds=[0], dimensions=RUMOR)
