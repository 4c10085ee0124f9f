"""The mfmdp method in the rollout (SPEC section 6): m_0 and the warm-up m*_t from the real posts'
attitude labels, each agent's own state drawn from m_t and shown in its prompt with m_t, the
summariser shown m_t, m_t and the states recorded, f_psi fed back after warm-up, and a resume that
equals the uninterrupted run. Driven by the scripted LLM behind the project's interface
(bookkeeping: it answers with texts that name their prompts' seeds)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mfray.mdp.macro import STATES
from mfray.mdp.transition import StateTransition, TransitionConfig
from mfray.mdp.transition_train import save_checkpoint
from mfray.sim.driver import advance, run_event
from mfray.sim.rollout import EventRollout
from mfray.types import Event, Post, Profile
from tests.unit.test_rollout import ScriptedLLM, cfg, run

# Attitudes the offline annotator gives these (checked in the first test): 3 positive, 2 negative,
# 3 neutral over the 8 warm-up agents, so m_0 = (3/8, 3/8, 2/8); per 4-agent warm-up step:
# step 0 = positive, negative, neutral, positive -> (2/4, 1/4, 1/4); step 1 = neutral, negative,
# positive, neutral -> (1/4, 2/4, 1/4), in the order positive, neutral, negative.
WARM = ["I love this, great news! So happy :)", "This is terrible and disgusting, shame on them",
        "Officials report the bridge closed http://x.co/a", "What a wonderful day, thank god they are safe",
        "Officials report the bridge closed again http://x.co/b", "Idiots. Pathetic lies from them",
        "I love it, wonderful :)", "Officials report a second closure http://x.co/c"]


def event(n: int = 40) -> Event:
    def post(i: int) -> Post:
        text = WARM[i] if i < len(WARM) else f"real{i}"
        return Post(post_id=str(i), t=i, text=text, raw_text=text, is_repost=False,
                    profile=Profile(user_id=str(i), location=f"city {i % 5}", followers_count=i * 10))
    return Event("ev1", "canonical", "en", post(-1), tuple(post(i) for i in range(n)))


def mdp_cfg(**kw):
    return cfg(**{"method": "mfmdp", "prompt_style": "timeline", "horizon": 24, **kw})


def macro(record) -> list[float]:
    return [json.loads(record.macro_state)[s] for s in STATES]


def test_warm_up_histograms_m0_and_persistence_after_it():
    records = run(run_event(event(), ScriptedLLM(), mdp_cfg()))
    by_step = {r.step: macro(r) for r in records}
    assert by_step[0] == [0.5, 0.25, 0.25] and by_step[1] == [0.25, 0.5, 0.25]  # m*_0, m*_1 (positive, neutral, negative order)
    # No f_psi checkpoint: the persistence baseline carries m_1 forward unchanged.
    assert all(by_step[t] == by_step[1] for t in range(2, 6))
    warm, simulated = records[:8], records[8:]
    assert all(r.latent_state is None for r in warm) and all(r.latent_state in STATES for r in simulated)
    assert all(r.macro_state is not None for r in records)


def test_each_agent_draws_its_own_state_and_its_prompt_shows_it_with_m():
    rollout = EventRollout(event(200), mdp_cfg(horizon=200), seed=3)
    assert rollout.macro.m0.tolist() == [3 / 8, 3 / 8, 2 / 8]
    records = run(run_event(event(200), ScriptedLLM(), mdp_cfg(horizon=200), seed=3))
    states = [r.latent_state for r in records if not r.warmup]
    # m_t = (0.25, 0.5, 0.25) throughout: 192 independent draws, not 192 copies of the argmax.
    shares = [states.count(s) / len(states) for s in STATES]
    assert np.allclose(shares, [0.25, 0.5, 0.25], atol=0.1) and len(set(states)) == 3
    first = next(r for r in records if not r.warmup)
    assert "Attitudes so far: positive 25%, neutral 50%, negative 25%." in first.policy_prompt
    assert f"Attitude of the next post: {first.latent_state}." in first.policy_prompt


def test_the_summariser_sees_m_t():
    llm = ScriptedLLM()
    seen = []
    generate = llm.generate

    async def spy(prompts, sampling, adapter=None):
        seen.extend(p for p in prompts if isinstance(p, str) and p.rstrip().endswith("Stance:"))
        return await generate(prompts, sampling, adapter)

    llm.generate = spy
    run(run_event(event(), llm, mdp_cfg()))
    assert seen and "Attitudes now: positive 50%, neutral 25%, negative 25%." in seen[0]


@pytest.fixture
def fpsi(tmp_path):
    """A randomly initialised f_psi over 8-wide hashing encodings: its predictions move m."""
    torch.manual_seed(0)
    model = StateTransition(TransitionConfig(encoder_dim=8, d_model=16, heads=2, layers=1, ffn=32, window=64))
    path = tmp_path / "fpsi.pt"
    save_checkpoint(model, path)
    return str(path)


def test_f_psi_is_fed_back_and_a_resume_equals_the_whole_run(fpsi):
    c = mdp_cfg(mdp={"transition": fpsi, "encoder_dim": 8})
    whole = run(run_event(event(), ScriptedLLM(), c, seed=1))
    after = [macro(r) for r in whole if r.step >= 2]
    assert after[0] != macro(whole[4]) and all(abs(sum(m) - 1) < 1e-5 for m in after)  # predicted, not persisted
    # Stop after step 3, resume from the state dict: the same records, m_t included.
    first = EventRollout(event(), c, seed=1)
    head = run(advance(first, ScriptedLLM(), 3))
    state = json.loads(json.dumps(first.state_dict()))
    tail = run(advance(EventRollout.from_state(event(), c, 1, state), ScriptedLLM(), None))
    assert head + tail == whole
    with pytest.raises(ValueError, match="encoder_dim 8"):
        EventRollout(event(), mdp_cfg(mdp={"transition": fpsi, "encoder_dim": 16}), seed=1)


def test_a_long_run_state_keeps_the_window_without_profiles_and_resumes_past_the_record(fpsi):
    """Past the event's 40 posts agents get seeded profiles; the state keeps `window` steps of
    (t, m_{t-1}, m_t, r_{t-1}, c_t) and rebuilds the tokens' profiles from t."""
    c = mdp_cfg(horizon=80, mdp={"transition": fpsi, "encoder_dim": 8, "window": 4})
    whole = run(run_event(event(), ScriptedLLM(), c, seed=2))
    first = EventRollout(event(), c, seed=2)
    head = run(advance(first, ScriptedLLM(), 14))
    state = json.loads(json.dumps(first.state_dict()))
    assert [h[0] for h in state["macro"]["history"]] == [10, 11, 12, 13]
    assert "city" not in json.dumps(state["macro"])  # no profile text in the checkpoint
    tail = run(advance(EventRollout.from_state(event(), c, 2, state), ScriptedLLM(), None))
    assert head + tail == whole


def test_other_methods_keep_their_dumps_and_records():
    plain = cfg(method="mf")
    assert "mdp" not in plain.model_dump()  # identities made before MF-MDP stay valid
    records = run(run_event(event(), ScriptedLLM(), plain))
    assert all(r.latent_state is None and r.macro_state is None for r in records)


def test_training_tokens_are_the_tokens_the_simulation_builds():
    """f_psi's inputs at training (mfray.mdp.data, from an all-real mfmdp run) and at inference
    (the tracker of a simulation) are the same tokens, step for step, up to the first simulated step."""
    from mfray.mdp.data import event_sequence
    from mfray.mdp.encoder import HashingEncoder

    real = run(run_event(event(), ScriptedLLM(), mdp_cfg(sim_start=24), seed=2))
    data = event_sequence(real, HashingEncoder(256), warmup_agents=8)
    assert data.x.shape == (6, 3 + 3 * 256) and data.m.shape == (6, 3)
    assert data.m[:2].tolist() == [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25]]
    simulation = EventRollout(event(), mdp_cfg(), seed=2)
    run(advance(simulation, ScriptedLLM(), 3))
    assert np.allclose(np.stack(simulation.macro._tokens), data.x[:3].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="not real actions of an mfmdp run"):
        event_sequence(run(run_event(event(), ScriptedLLM(), mdp_cfg(), seed=2)), HashingEncoder(256))
