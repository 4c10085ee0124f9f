"""SPEC section 5 metrics against values worked by hand (the working is in each test)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mfray.eval.metrics import (
    dtw_distance, f1_scores, kl_divergence, label_shares, nearest_windows, nll, relative_change,
    step_windows, wasserstein_1d, window_divergences,
)


def test_label_shares_skip_missing_and_reject_unknown():
    # a, b, a (None left out) -> [2/3, 1/3, 0]
    np.testing.assert_allclose(label_shares(["a", "b", "a", None], ["a", "b", "c"]), [2 / 3, 1 / 3, 0])
    np.testing.assert_allclose(label_shares([None], ["a", "b"]), [0, 0])
    with pytest.raises(ValueError, match="'z'"):
        label_shares(["z"], ["a", "b"])


def test_kl_identical_is_zero():
    assert kl_divergence(np.array([0.3, 0.7]), np.array([0.3, 0.7])) == pytest.approx(0, abs=1e-12)


def test_kl_with_zero_count_label():
    # p = [1, 0] smoothed: [(1+e)/(1+2e), e/(1+2e)] with e = 1e-6; q = [.5, .5] stays [.5, .5].
    # KL = 0.999999 * ln(0.999999 / 0.5) + 9.99998e-7 * ln(9.99998e-7 / 0.5)
    #    = 0.6931455 - 0.0000131 = 0.6931324  (ln 2 minus the smoothing's share)
    assert kl_divergence(np.array([1.0, 0.0]), np.array([0.5, 0.5])) == pytest.approx(0.6931324, abs=1e-6)


def test_kl_general():
    # KL([.25, .75] || [.5, .5]) = .25 ln(.5) + .75 ln(1.5) = -0.1732868 + 0.3040988 = 0.1308120
    # (smoothing moves it by about 1e-6)
    assert kl_divergence(np.array([0.25, 0.75]), np.array([0.5, 0.5])) == pytest.approx(0.1308120, abs=2e-6)


def test_wasserstein_on_ordered_labels():
    # K = 3 labels at 0, 0.5, 1.
    # All mass from 0 to 1: CDFs [1,1,1] vs [0,0,1] -> (1 + 1) / 2 = 1.
    assert wasserstein_1d(np.array([1, 0, 0]), np.array([0, 0, 1])) == pytest.approx(1.0)
    # From 0 to 0.5: CDFs [1,1,1] vs [0,1,1] -> 1 / 2 = 0.5.
    assert wasserstein_1d(np.array([1, 0, 0]), np.array([0, 1, 0])) == pytest.approx(0.5)
    # [.5,.5,0] vs [0,.5,.5]: CDFs [.5,1,1] vs [0,.5,1] -> (.5 + .5) / 2 = 0.5.
    assert wasserstein_1d(np.array([0.5, 0.5, 0]), np.array([0, 0.5, 0.5])) == pytest.approx(0.5)
    # Single-label window on a 2-label dimension: [1, 0] vs [0, 1] -> 1 (labels at 0 and 1).
    assert wasserstein_1d(np.array([1, 0]), np.array([0, 1])) == pytest.approx(1.0)


def test_dtw_unequal_lengths():
    # a = [x, y], b = [x, x, y] with x = [1,0], y = [0,1]: path (0,0),(0,1),(1,2) costs 0 -> 0.
    x, y = [1.0, 0.0], [0.0, 1.0]
    assert dtw_distance(np.array([x, y]), np.array([x, x, y])) == pytest.approx(0.0)
    # a = [x], b = [y, (.5,.5)]: local costs TV = 1 and 0.5, path covers both: 1.5 / 2 = 0.75.
    assert dtw_distance(np.array([x]), np.array([y, [0.5, 0.5]])) == pytest.approx(0.75)


def test_dtw_ties_take_the_shortest_path():
    # a = [x, x], b = [y, x]: costs a0b0 = 1, a0b1 = 0, a1b0 = 1, a1b1 = 0.
    # Diagonal path: 1 + 0 = 1 over 2 cells; (0,0)->(0,1)->(1,1): 1 + 0 + 0 = 1 over 3 cells.
    # Equal cost, the shorter path is taken: 1 / 2 = 0.5.
    x, y = [1.0, 0.0], [0.0, 1.0]
    assert dtw_distance(np.array([x, x]), np.array([y, x])) == pytest.approx(0.5)


def test_windows():
    assert step_windows([0, 0, 1, 1, 1], list("abcde")) == [["a", "b"], ["c", "d", "e"]]
    # 5 agents, 4 nearest: windows start at 0, 0, 0, 1, 1 (shifted inwards at the ends).
    starts = [w[0] for w in nearest_windows(list("01234"), size=4)]
    assert starts == ["0", "0", "0", "1", "1"]


def test_window_divergences_mean_over_windows():
    # Window 1: [a,a] vs [a,a] -> KL 0, W 0. Window 2: [.5,.5] vs [0,1]:
    # q smoothed = [e/(1+2e), (1+e)/(1+2e)], KL = .5 ln(.5/1e-6) + .5 ln(.5) = 6.21461, W = 0.5.
    # Means: KL 3.10730, W 0.25. A window empty on one side is skipped.
    kl, wd = window_divergences([["a", "a"], ["a", "b"], [None]], [["a", "a"], ["b", "b"], ["a"]], ["a", "b"])
    assert kl == pytest.approx(3.1073048, abs=1e-5) and wd == pytest.approx(0.25)


def test_f1_same_agent_pairs():
    # Pairs (missing left out): (a,a) (a,b) (b,b) (b,b).
    # a: tp 1, fp 0, fn 1 -> 2/3;  b: tp 2, fp 1, fn 0 -> 4/5;  macro = (2/3 + 4/5) / 2 = 0.733333
    # micro = accuracy = 3/4.
    macro, micro = f1_scores(["a", "a", "b", "b", None], ["a", "b", "b", "b", "a"])
    assert macro == pytest.approx(11 / 15) and micro == pytest.approx(0.75)
    assert all(math.isnan(v) for v in f1_scores([None], ["a"]))


def test_nll_per_token_and_per_action():
    # Actions with log-probs [-1, -2] and [-3]: per token 6 / 3 = 2; per action (3 + 3) / 2 = 3.
    assert nll([[-1.0, -2.0], [-3.0]]) == pytest.approx((2.0, 3.0))


def test_relative_change():
    assert relative_change(0.5, 1.0) == pytest.approx(-0.5)
    assert math.isnan(relative_change(1.0, 0.0))
