"""LCT-Policy's math (SPEC section 6, paper Eqs. 12-15) against values worked by hand, and its
samples from an all-real mfmdp run."""

from __future__ import annotations

import math

import pytest
import torch

from mfray.mdp.lct import LookaheadHead, future_targets, instance_weights, lct_loss, lookahead_cost
from mfray.mdp.lct_data import run_samples
from mfray.sim.driver import run_event
from tests.unit.test_mfmdp_rollout import WARM, event, mdp_cfg
from tests.unit.test_rollout import ScriptedLLM, run


def test_lookahead_cost_discounts_each_step_and_masks_past_the_end():
    # Two future steps, gamma 0.5, eps 0. Step 1: m* = (1, 0, 0), m_hat = (0.5, 0.25, 0.25):
    # KL = 1 * ln(1 / 0.5) = ln 2. Step 2: m* = (0, 0.5, 0.5), m_hat = (0.25, 0.25, 0.5):
    # KL = 0.5 ln(0.5 / 0.25) + 0.5 ln(0.5 / 0.5) = 0.5 ln 2, discounted by 0.5. V = 1.25 ln 2.
    m_star = torch.tensor([[1.0, 0, 0], [0, 0.5, 0.5], [0, 0, 0]])
    m_hat = torch.tensor([[[0.5, 0.25, 0.25], [0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]]])
    valid = torch.tensor([True, True, False])  # step 3 lies past the event's end
    v = lookahead_cost(m_hat, m_star, valid, gamma=0.5, eps=0.0)
    assert v.shape == (1,) and v.item() == pytest.approx(1.25 * math.log(2), rel=1e-6)
    assert lookahead_cost(m_hat, m_star, torch.tensor([True, False, False]), 0.5, 0.0).item() == pytest.approx(math.log(2), rel=1e-6)


def test_future_targets_pad_with_masked_zero_rows():
    m_star, valid = future_targets([(0.5, 0.25, 0.25)], k=3)
    assert m_star.tolist() == [[0.5, 0.25, 0.25], [0, 0, 0], [0, 0, 0]] and valid.tolist() == [True, False, False]
    m_star, valid = future_targets([(1, 0, 0)] * 5, k=2)  # more future than K: the first K
    assert m_star.shape == (2, 3) and valid.tolist() == [True, True]


def test_weights_favour_the_lower_cost_and_carry_no_gradient():
    # V = (ln 2, 0) for one agent, beta 1: w = softmax(-ln 2, 0) = (1/3, 2/3).
    v = torch.tensor([[math.log(2)], [0.0]], requires_grad=True)
    w = instance_weights(v, beta=1.0)
    assert w[:, 0].tolist() == pytest.approx([1 / 3, 2 / 3]) and not w.requires_grad
    assert instance_weights(v, beta=0.0)[:, 0].tolist() == [0.5, 0.5]  # beta 0: plain mean over instances


def test_lct_loss_is_the_weighted_cost_plus_the_text_nll():
    # One agent, V = (ln 2, 0): L_pred = (1/3) ln 2; NLL (1, 3) -> mean 2; L = 0.5 L_pred + 0.5 * 2.
    v = torch.tensor([[math.log(2)], [0.0]], requires_grad=True)
    loss, pred = lct_loss(v, torch.tensor([1.0, 3.0]), beta=1.0, pred_weight=0.5, text_weight=0.5)
    assert pred.item() == pytest.approx(math.log(2) / 3) and loss.item() == pytest.approx(0.5 * math.log(2) / 3 + 1.0)
    loss.backward()
    assert v.grad[:, 0].tolist() == pytest.approx([0.5 / 3, 0.5 * 2 / 3])  # d/dV_j = pred_weight * w_j (w fixed)


def test_head_predicts_k_distributions_and_dropout_makes_instances_differ():
    torch.manual_seed(0)
    head = LookaheadHead(hidden=8, k=4, width=16, dropout=0.5)
    h = torch.randn(3, 8)
    out = head.eval()(h)
    assert out.shape == (3, 4, 3) and torch.allclose(out.sum(-1), torch.ones(3, 4))
    assert torch.equal(out, head(h))  # eval: deterministic
    head.train()
    assert not torch.equal(head(h), head(h))  # train: a new dropout mask per pass


def test_samples_of_an_all_real_run_hold_prompts_states_and_the_real_future():
    records = run(run_event(event(), ScriptedLLM(), mdp_cfg(sim_start=24, horizon=24)))  # 6 all-real steps of 4
    samples = run_samples(records, k=3, annotator="offline")
    assert [s.step for s in samples] == [0, 1, 2, 3, 4]  # every step with a later one
    first = samples[0]
    # step 0's actions WARM[0:4]: labels positive, negative, neutral, positive (test_mfmdp_rollout)
    assert [a.text for a in first.agents] == WARM[:4]
    assert [a.latent for a in first.agents] == ["positive", "negative", "neutral", "positive"]
    assert first.m == (0.5, 0.25, 0.25) and first.future[0] == (0.25, 0.5, 0.25) and len(first.future) == 3
    assert len(samples[-1].future) == 1  # the event ends: one future step left
    assert first.mean_field == "" and samples[1].mean_field == records[4].mean_field != ""
    prompt = first.prompts("timeline")[0]
    assert "Attitudes so far: positive 50%, neutral 25%, negative 25%." in prompt
    assert "Attitude of the next post: positive." in prompt
    simulated = run(run_event(event(), ScriptedLLM(), mdp_cfg()))
    with pytest.raises(ValueError, match="not real actions of an mfmdp run"):
        run_samples(simulated, k=3, annotator="offline")
