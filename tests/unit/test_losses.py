"""IB-Tune / SFT losses against values worked by hand."""

import math

import pytest
import torch

from mfray.train.losses import (
    ib_rewards,
    leave_one_out_advantages,
    per_sequence_mean,
    policy_nll,
    score_function_loss,
    token_mean,
)


def t(*values):
    return torch.tensor(values, dtype=torch.float64)


def test_policy_nll_pools_tokens_not_sequences():
    # Two actions: [-1, -3] and [-2]. Pooled: (1 + 3 + 2) / 3 = 2.0.
    # (A mean of per-action means would be (2 + 2) / 2 = 2.0 too, so use an asymmetric case:)
    # [-1, -1, -1] and [-4]: pooled (3 + 4) / 4 = 1.75; per-action mean would be (1 + 4) / 2 = 2.5.
    assert policy_nll([t(-1, -3), t(-2)]).item() == pytest.approx(2.0)
    assert policy_nll([t(-1, -1, -1), t(-4)]).item() == pytest.approx(1.75)


def test_token_mean_rejects_no_tokens():
    with pytest.raises(ValueError, match="no completion tokens"):
        token_mean([t(), t()])


def test_per_sequence_mean():
    # [-1, -3] -> -2; [-0.5] -> -0.5
    assert per_sequence_mean([t(-1, -3), t(-0.5)]).tolist() == pytest.approx([-2.0, -0.5])
    with pytest.raises(ValueError, match="sequence 1 has no tokens"):
        per_sequence_mean([t(-1), t()])


def test_ib_rewards_by_hand():
    # beta 2. Summary 0: action -1.0, posterior -0.5, prior -1.5 -> 2*(-1) - (-0.5 + 1.5) = -3.0
    # Summary 1: action -2.0, posterior -1.0, prior -1.0 -> -4 - 0 = -4.0
    r = ib_rewards(t(-1.0, -2.0), t(-0.5, -1.0), t(-1.5, -1.0), beta=2.0)
    assert r.tolist() == pytest.approx([-3.0, -4.0])


def test_ib_rewards_are_detached():
    action = t(-1.0, -2.0).requires_grad_()
    assert not ib_rewards(action, t(0, 0), t(0, 0), 2.0).requires_grad


def test_leave_one_out_by_hand():
    # R = [1, 2, 6]: baselines (2+6)/2 = 4, (1+6)/2 = 3.5, (1+2)/2 = 1.5 -> A = [-3, -1.5, 4.5]
    assert leave_one_out_advantages(t(1, 2, 6)).tolist() == pytest.approx([-3.0, -1.5, 4.5])
    with pytest.raises(ValueError, match="at least 2"):
        leave_one_out_advantages(t(1))


def test_score_function_loss_value_and_gradient():
    # A = [1, -1], log mu = [-2, -3]: loss = -(1*(-2) + (-1)*(-3)) / 2 = -(-2 + 3)/2 = -0.5
    logp = t(-2.0, -3.0).requires_grad_()
    loss = score_function_loss(t(1.0, -1.0), logp)
    assert loss.item() == pytest.approx(-0.5)
    loss.backward()
    # d loss / d logp_j = -A_j / J: [-0.5, 0.5]. Descent raises the log-prob of the better summary.
    assert logp.grad.tolist() == pytest.approx([-0.5, 0.5])


def test_estimator_prefers_the_summary_that_explains_the_actions():
    # Constructed case: two summaries with equal divergence; summary 0 makes the actions
    # e^4 times likelier per token (action log-prob -1 vs -3, beta 2 -> rewards -2 vs -6).
    r = ib_rewards(t(-1.0, -3.0), t(-1.0, -1.0), t(-1.0, -1.0), beta=2.0)
    adv = leave_one_out_advantages(r)
    assert adv.tolist() == pytest.approx([4.0, -4.0])
    # One gradient step on free logits of a 2-way categorical moves mass to summary 0.
    logits = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    score_function_loss(adv, torch.log_softmax(logits, -1)).backward()
    with torch.no_grad():
        after = torch.softmax(logits - 0.1 * logits.grad, -1)
    assert after[0] > 0.5 > after[1]
    assert math.isclose(after.sum().item(), 1.0)
