"""MF-MDP's distribution part (mfray.mdp.macro), against values worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from mfray.mdp.macro import STATES, describe, draw_state, histogram, initial_distribution, percentages, state_name


def test_histograms_leave_missing_labels_out_and_an_empty_step_has_none():
    # 2 positive, 1 neutral, 1 negative among 4 labelled (one missing): 0.5, 0.25, 0.25
    assert histogram(["positive", None, "neutral", "positive", "negative"]).tolist() == [0.5, 0.25, 0.25]
    assert histogram([None, None]) is None and histogram([]) is None
    with pytest.raises(ValueError, match="not one of"):
        histogram(["happy"])


def test_m0_is_the_warm_up_frequencies_and_needs_a_label():
    assert initial_distribution(["negative", "negative", "neutral", "negative"]).tolist() == [0.0, 0.25, 0.75]
    with pytest.raises(ValueError, match="m_0 needs at least one"):
        initial_distribution([None] * 3)


def test_each_agent_draws_its_own_state_seeded():
    m = [0.2, 0.5, 0.3]
    draws = [draw_state(m, seed) for seed in range(3000)]
    assert draws == [draw_state(m, seed) for seed in range(3000)]  # same seeds, same states
    shares = [draws.count(s) / len(draws) for s in STATES]
    assert np.allclose(shares, m, atol=0.03)  # independent draws follow m, not its argmax
    assert {draw_state([0, 0, 1], s) for s in range(50)} == {"negative"}
    with pytest.raises(ValueError, match="non-negative"):
        draw_state([0.5, 0.5], 0)


def test_the_distribution_as_prompts_show_it():
    # 1/3 each: 33.33 -> 33, 33, 33 and the one left over goes to the first largest remainder.
    assert percentages([1, 1, 1]) == [34, 33, 33]
    assert percentages([0.125, 0.5, 0.375]) == [13, 50, 37]  # 12.5 and 37.5: ties go to the first
    assert describe([0.2, 0.5, 0.3]) == "positive 20%, neutral 50%, negative 30%"
    assert describe([0.2, 0.5, 0.3], "zh") == "积极 20%、中立 50%、消极 30%"
    assert state_name("negative", "zh") == "消极"
