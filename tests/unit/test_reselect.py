"""Simulation-time reselection (SPEC section 6's optional extension, mfray.mdp.reselect): the
candidate's distribution, the cost of its f_psi rollout against the forecast, the draw, and the
rollout asking J candidates per agent and keeping the one the weights pick. Values worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mfray.llm.base import Generation
from mfray.mdp.reselect import candidate_distribution, pick, rollout_cost
from mfray.sim.config import RolloutConfig
from mfray.sim.driver import run_event
from tests.unit.test_mfmdp_rollout import WARM, event, mdp_cfg
from tests.unit.test_rollout import ScriptedLLM, run

M = (0.25, 0.5, 0.25)


def test_a_candidate_moves_m_by_one_agents_share():
    # n = 4: m_c = 0.75 m + 0.25 e_s
    assert candidate_distribution(M, "positive", 4).tolist() == [0.4375, 0.375, 0.1875]
    assert candidate_distribution(M, "neutral", 4).tolist() == [0.1875, 0.625, 0.1875]


def test_cost_is_the_discounted_kl_of_forecast_to_candidate():
    # Persistence: every step of both rollouts repeats its start. KL(m || m_c(positive)) =
    # .25 ln(.25/.4375) + .5 ln(.5/.375) + .25 ln(.25/.1875) = 0.075858; KL(m || m_c(neutral)) =
    # .5 ln(.25/.1875) + .5 ln(.5/.625) = 0.032269. Two steps, gamma 0.5: V = 1.5 KL.
    forecast = [np.array(M)] * 2
    pos, neu = ([candidate_distribution(M, s, 4)] * 2 for s in ("positive", "neutral"))
    assert rollout_cost(forecast, pos, 0.5) == pytest.approx(1.5 * 0.0758575, rel=1e-4)
    assert rollout_cost(forecast, neu, 0.5) == pytest.approx(1.5 * 0.0322690, rel=1e-4)


def test_the_draw_follows_softmax_of_minus_beta_v_and_skips_unlabelled_candidates():
    costs = {"positive": math.log(3), "neutral": 0.0}  # beta 1: weights 1/3 : 1, i.e. 1/4 : 3/4
    picks = [pick(["positive", "neutral", None], costs, 1.0, seed) for seed in range(4000)]
    assert picks.count(2) == 0 and picks.count(1) / 4000 == pytest.approx(0.75, abs=0.03)
    assert pick([None, None], costs, 1.0, seed=5) in (0, 1)  # no state anywhere: uniform


class Candidates(ScriptedLLM):
    """Answers each pair of policy copies with a positive post, then a neutral one."""

    async def generate(self, prompts, sampling, adapter=None):
        out = await super().generate(prompts, sampling, adapter)
        if self.calls[-1][0] != "policy":
            return out
        return [Generation(text=WARM[0] if i % 2 == 0 else WARM[2], prompt_tokens=10, completion_tokens=3,
                           finish_reason="stop") for i in range(len(prompts))]


def test_the_rollout_asks_j_candidates_and_keeps_the_one_that_moves_the_forecast_least():
    c = mdp_cfg(horizon=40, mdp={"reselect": {"candidates": 2, "k": 2, "beta": 200.0}})
    llm = Candidates()
    records = run(run_event(event(), llm, c))
    assert {n for kind, n, _ in llm.calls if kind == "policy"} == {8}  # 4 agents x 2 candidates per request
    chosen = [r.simulated_text for r in records if not r.warmup]
    # m_t = (.25, .5, .25) after warm-up (persistence): the neutral candidate costs less, and
    # V(positive) - V(neutral) = (1 + 0.9) * (0.075858 - 0.032269) = 0.0828, so beta 200 leaves
    # the positive candidate a weight of exp(-16.6) ~ 6e-8: every agent keeps the neutral one.
    assert len(chosen) == 32 and chosen.count(WARM[2]) == 32
    off = run(run_event(event(), Candidates(), mdp_cfg(horizon=40)))
    kept = [r.simulated_text for r in off if not r.warmup]  # J 1: each agent's one answer, as it came
    assert kept == [WARM[0], WARM[2]] * 16
    assert "reselect" not in RolloutConfig(method="mfmdp").model_dump()["mdp"]  # off: identities unchanged
