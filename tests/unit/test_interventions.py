"""Which agents an intervention may name (mfray.sim.config.intervention_problems), worked by hand,
and the same rule on every path that plans one: the config, the counterfactual driver, a forecast
that moves the warm-up boundary."""

from __future__ import annotations

import asyncio

import pytest

from mfray.sim.config import Intervention, RolloutConfig, intervention_problems
from mfray.sim.driver import counterfactual, forecast, run_event
from tests.unit.test_rollout import ScriptedLLM, make_event


def iv(step: int, *agents: int) -> Intervention:
    return Intervention(step=step, posts=[f"post{a}" for a in agents], agents=list(agents))


def problems(*ivs: Intervention, n: int = 4, sim_start: int = 8, horizon: int = 18) -> list[str]:
    return intervention_problems(ivs, agents_per_step=n, sim_start=sim_start, horizon=horizon)


def test_only_generated_agents_may_be_named():
    # 4 agents a step, sim_start 8, horizon 18: steps 0-1 (agents 0..7) are warm-up, steps 2-3
    # (8..15) are generated, step 4 is partial: agents 16, 17 only (offsets 0, 1).
    assert problems(iv(2, 0), iv(3, 3), iv(4, 0, 1)) == []
    (past_partial,) = problems(iv(4, 2))  # 4 * 4 + 2 = agent 18 = horizon: never simulated
    assert past_partial.startswith("interventions[0] (step 4): agent offset 2 is agent 18, beyond the horizon (18")
    assert "last simulated agent is 17, step 4 offset 1" in past_partial
    (past_end,) = problems(iv(5, 0))  # agent 20
    assert "agent offset 0 is agent 20, beyond the horizon" in past_end
    (warm,) = problems(iv(1, 3))  # agent 7 < sim_start 8: acts with its real action
    assert "agent offset 3 is agent 7, a warm-up agent (before sim_start 8) that acts with its real action" in warm
    assert "first simulated agent is 8, step 2 offset 0" in warm
    (outside,) = problems(iv(2, 4))
    assert outside == "interventions[0] (step 2): agent offset 4 outside 0..3 (agents_per_step 4)"


def test_warmup_boundary_inside_a_step():
    # sim_start 10 with 4 agents a step: step 2 is agents 8, 9 (warm-up) then 10, 11 (generated).
    found = problems(iv(2, 0, 1, 2, 3), sim_start=10)
    assert len(found) == 2 and "agent 8, a warm-up agent" in found[0] and "agent 9, a warm-up agent" in found[1]
    assert "first simulated agent is 10, step 2 offset 2" in found[0]


def test_overlapping_interventions_name_both_and_the_offset():
    # interventions[0] takes offsets 0, 1 of step 3 (default agents); [1] names offset 1 again;
    # [2] names offset 1 of another step (no overlap).
    default = Intervention(step=3, posts=["a", "b"])
    (clash,) = problems(default, iv(3, 1), iv(2, 1))
    assert clash == ("interventions[0] (step 3) and interventions[1] (step 3) both insert a post for agent offset 1 "
                     "(agent 13): merge them into one intervention or name another agent")


def test_one_intervention_naming_an_agent_twice_is_refused():
    with pytest.raises(ValueError, match=r"intervention at step 3 names agent offset\(s\) \[2\] more than once"):
        Intervention(step=3, posts=["a", "b", "c"], agents=[2, 0, 2])


def test_config_reports_every_problem_at_once():
    with pytest.raises(ValueError) as err:
        RolloutConfig(agents_per_step=4, sim_start=8, horizon=18, interventions=[iv(1, 0), iv(2, 0), iv(2, 0), iv(5, 0)])
    text = str(err.value)
    assert "agent 4, a warm-up agent" in text and "beyond the horizon" in text
    assert "interventions[1] (step 2) and interventions[2] (step 2) both insert a post for agent offset 0" in text


def cfg(**kw) -> RolloutConfig:
    return RolloutConfig(**{"method": "mf", "agents_per_step": 4, "sim_start": 8, "horizon": 20, "retries": 1, **kw})


def test_two_interventions_at_one_step_both_land():
    c = cfg(interventions=[iv(3, 0), iv(3, 2)])
    recs = asyncio.run(run_event(make_event(), ScriptedLLM(), c))
    assert {r.agent_index: r.simulated_text for r in recs if r.intervention} == {12: "post0", 14: "post2"}


def test_counterfactual_refuses_an_intervention_that_overlaps_the_plan():
    planned = cfg(interventions=[iv(3, 0)])
    with pytest.raises(ValueError, match=r"interventions\[0\] \(step 3\) and interventions\[1\] \(step 3\) both insert "
                                         r"a post for agent offset 0 \(agent 12\)"):
        asyncio.run(counterfactual(make_event(), ScriptedLLM(), planned, [Intervention(step=3, posts=["other"])]))


def test_counterfactual_refuses_warmup_and_past_horizon_agents():
    with pytest.raises(ValueError, match="agent 4, a warm-up agent"):
        asyncio.run(counterfactual(make_event(), ScriptedLLM(), cfg(), [iv(1, 0)]))
    with pytest.raises(ValueError, match="agent 20, beyond the horizon"):
        asyncio.run(counterfactual(make_event(), ScriptedLLM(), cfg(), [iv(5, 0)]))


def test_forecast_refuses_a_planned_intervention_it_turns_into_warmup():
    # Agent 12 (step 3 offset 0) is generated with sim_start 8, but a forecast from agent 16 makes
    # it a warm-up agent acting with its real action.
    planned = cfg(interventions=[iv(3, 0)])
    with pytest.raises(ValueError, match="agent 12, a warm-up agent"):
        asyncio.run(forecast(make_event(), ScriptedLLM(), planned, start_agent=16))
    recs = asyncio.run(forecast(make_event(), ScriptedLLM(), planned, start_agent=12))
    assert [r.agent_index for r in recs if r.intervention] == [12]
