"""The rollout state machine's bookkeeping, driven by a scripted LLM behind the project's own
interface (it tests steps, warm-up, retries, failures, checkpoints; not language)."""

from __future__ import annotations

import asyncio

import pytest

from mfray.llm.base import Generation, SamplingParams
from mfray.prompts.render import prompt_hash
from mfray.sim.config import Intervention, RolloutConfig, Signal
from mfray.sim.context import WindowAction, select_popular, select_recent, signal_at
from mfray.sim.driver import counterfactual, forecast, run_event
from mfray.sim.rollout import EventRollout, state_text
from mfray.types import Event, Post, Profile


def is_mean_field_prompt(prompt) -> bool:
    """A mean-field prompt of either style: the chat instruction, or the timeline's open summary."""
    text = prompt if isinstance(prompt, str) else prompt[0]["content"]
    return "summarising" in text or text.endswith(("\nStance:", "\n立场："))


class ScriptedLLM:
    """Answers policy prompts with 'sim<seed>' and mean-field prompts with 'MF<seed>-<prompt hash>'; can be
    told to fail (empty text) for chosen request numbers."""

    def __init__(self, fail_calls=(), fail_all=False):
        self.calls: list[tuple[str, int, int]] = []  # (kind, n prompts, seed)
        self.fail_calls, self.fail_all = set(fail_calls), fail_all

    async def generate(self, prompts, sampling: SamplingParams, adapter=None):
        kind = "mf" if is_mean_field_prompt(prompts[0]) else "policy"
        call = len(self.calls)
        self.calls.append((kind, len(prompts), sampling.seed))
        out = []
        for i, prompt in enumerate(prompts):
            # The summary depends on what it summarises, so interventions visibly propagate.
            tag = f"MF{sampling.seed}-{prompt_hash(prompt)[:6]}" if kind == "mf" else f"sim{sampling.seed + i}"
            text = "" if (self.fail_all or call in self.fail_calls) else tag
            out.append(Generation(text=text, prompt_tokens=10, completion_tokens=3, finish_reason="stop"))
        return out

    async def score(self, prompts, completions, adapter=None):
        return [[-1.0] for _ in prompts]


def make_event(n: int = 40) -> Event:
    def post(i: int) -> Post:
        return Post(post_id=str(i), t=i, text=f"real{i}", raw_text=f"real{i}", is_repost=False,
                    profile=Profile(user_id=str(i), followers_count=i * 10 if i % 3 else None))
    return Event("ev1", "canonical", "en", post(-1), tuple(post(i) for i in range(n)))


def run(coro):
    return asyncio.run(coro)


def cfg(**kw) -> RolloutConfig:
    base = dict(method="mf", agents_per_step=4, sim_start=8, horizon=20, retries=1)
    base.update(kw)
    return RolloutConfig(**base)


def test_steps_warmup_and_mean_field_in_force():
    llm = ScriptedLLM()
    recs = run(run_event(make_event(), llm, cfg()))
    assert [r.agent_index for r in recs] == list(range(20))
    assert [r.step for r in recs] == [j // 4 for j in range(20)]
    # Warm-up: agents 0..7 act for real, nothing simulated for them.
    assert all(r.warmup and r.simulated_text is None for r in recs[:8])
    assert all(not r.warmup and r.simulated_text.startswith("sim") for r in recs[8:])
    # m_0 is the empty string; step 1 acts under the summary of step 0, and so on.
    assert all(r.mean_field == "" for r in recs[:4])
    assert len({r.mean_field for r in recs[4:8]}) == 1 and "MF" in recs[4].mean_field
    assert recs[8].mean_field != recs[4].mean_field
    # Calls: mean field after steps 0..3 (not after the last), policy for steps 2..4.
    kinds = [k for k, _, _ in llm.calls]
    assert kinds == ["mf", "mf", "policy", "mf", "policy", "mf", "policy"]


def test_baselines_never_call_the_mean_field_model():
    for method in ("state", "recent", "popular", "sft"):
        llm = ScriptedLLM()
        recs = run(run_event(make_event(), llm, cfg(method=method)))
        assert {k for k, _, _ in llm.calls} == {"policy"}
        assert all(r.mean_field == "" for r in recs)


def test_failed_generation_is_retried_then_recorded_never_filled_with_real_text():
    llm = ScriptedLLM(fail_all=True)
    recs = run(run_event(make_event(), llm, cfg(method="state")))
    simulated = [r for r in recs if not r.warmup]
    assert simulated and all(r.failed and r.simulated_text is None for r in simulated)
    assert all(r.simulated_text != r.real_text for r in recs)
    policy_calls = [c for c in llm.calls if c[0] == "policy"]
    assert len(policy_calls) == 3 * 2  # 3 simulated steps x (first try + 1 retry)


class ProfileEchoLLM(ScriptedLLM):
    """Its first policy call writes out each agent's profile (as a small model shown "Next post
    by: <profile>" may), later calls answer normally."""

    async def generate(self, prompts, sampling: SamplingParams, adapter=None):
        out = await super().generate(prompts, sampling, adapter)
        if [k for k, _, _ in self.calls].count("policy") == 1 and self.calls[-1][0] == "policy":
            out = [Generation(text=PROFILE + " " + g.text, prompt_tokens=10, completion_tokens=3, finish_reason="stop")
                   for g in out]
        return out


PROFILE = "A user with a very low level of influence based on followers."


def test_a_generation_that_writes_out_the_profile_is_retried_as_no_post():
    from mfray.prompts.parse import echoes_profile

    event = make_event()
    assert state_text(event.responses[1].profile, "en") == PROFILE
    llm = ProfileEchoLLM()
    recs = run(run_event(event, llm, cfg(method="state")))
    first_step = [r for r in recs if not r.warmup][:4]  # the step whose first answers echo
    echoed = [r for r in first_step if echoes_profile(PROFILE, r.state_text)]
    kept = [r for r in first_step if not r.state_text]  # no profile shown: nothing to echo
    assert echoed and kept and len(echoed) + len(kept) == len(first_step)
    assert all(not r.failed and PROFILE not in r.simulated_text for r in echoed)  # the retry's post
    assert all(r.simulated_text.startswith(PROFILE) for r in kept)
    policy = [c for c in llm.calls if c[0] == "policy"]
    # first try, the retry of only the echoing agents, then one call per later step
    assert [n for _, n, _ in policy] == [4, len(echoed), 4, 4]


def test_retry_succeeds_on_second_attempt_with_a_new_seed():
    llm = ScriptedLLM(fail_calls={0})  # the first policy call fails
    recs = run(run_event(make_event(), llm, cfg(method="state", sim_start=16)))
    first, retry = llm.calls[0], llm.calls[1]
    assert first[1] == retry[1] == 4 and first[2] != retry[2]
    assert not any(r.failed for r in recs)


def test_interventions_insert_posts_and_signals_show_in_records():
    c = cfg(interventions=[Intervention(step=3, posts=["OFFICIAL: false"], agents=[2])], signals=[Signal(step=2, text="news")])
    recs = run(run_event(make_event(), ScriptedLLM(), c))
    hit = recs[14]
    assert hit.intervention and hit.simulated_text == "OFFICIAL: false" and hit.prompt_hash == ""
    assert [r.signal for r in recs[:8]] == [None] * 8 and all(r.signal == "news" for r in recs[8:])


def test_counterfactual_pair_is_identical_before_the_intervention():
    iv = [Intervention(step=3, posts=["debunk"])]
    base, treated = run(counterfactual(make_event(), ScriptedLLM(), cfg(), iv))
    assert base[:12] == treated[:12]
    assert treated[12].simulated_text == "debunk" and base[12].simulated_text != "debunk"
    assert base[16].mean_field != treated[16].mean_field  # the intervention reached the mean field


def test_forecast_moves_the_warmup_boundary():
    recs = run(forecast(make_event(), ScriptedLLM(), cfg(), start_agent=12))
    assert [r.warmup for r in recs] == [True] * 12 + [False] * 8


def test_resume_from_checkpoint_equals_uninterrupted_run():
    event, c = make_event(), cfg(method="recent")
    full = run(run_event(event, ScriptedLLM(), c, seed=5))
    first = EventRollout(event, c, seed=5)
    llm = ScriptedLLM()
    part = []
    while first.step < 3:
        req = first.next_request()
        first.submit(run(llm.generate(req.prompts, req.sampling, req.adapter)))
        part += first.drain()
    state = first.state_dict()
    resumed = EventRollout.from_state(event, c, 5, state)
    rest = run(_drive(resumed))
    assert part + rest == full
    with pytest.raises(ValueError, match="another config or seed"):
        EventRollout.from_state(event, c, 6, state)


async def _drive(rollout):
    from mfray.sim.driver import drive
    return await drive(rollout, ScriptedLLM())


def test_long_horizon_samples_states_and_streams_records():
    event, c = make_event(10), cfg(method="mf", horizon=400, sim_start=4)
    rollout = EventRollout(event, c, seed=1)
    llm = ScriptedLLM()
    seen = 0
    while (req := rollout.next_request()) is not None:
        rollout.submit(run(llm.generate(req.prompts, req.sampling, req.adapter)))
        out = rollout.drain()
        seen += len(out)
        assert len(rollout.window) <= max(c.recent_k, c.popular_window)  # bounded memory
        for r in out:
            if r.agent_index >= 10:
                assert r.real_text is None and r.simulated_text.startswith("sim")
    assert seen == 400


def test_same_seed_same_run_other_seed_other_run():
    a = run(run_event(make_event(), ScriptedLLM(), cfg(), seed=1))
    b = run(run_event(make_event(), ScriptedLLM(), cfg(), seed=1))
    c = run(run_event(make_event(), ScriptedLLM(), cfg(), seed=2))
    assert a == b and a != c


def test_select_recent_and_popular_by_hand():
    window = [WindowAction("a", 5), WindowAction("b", None), WindowAction("c", 50), WindowAction("d", 50), WindowAction("e", 1)]
    assert select_recent(window, 2) == ["d", "e"]
    # Among the last 4 (b..e): d and c tie on 50 -> the more recent (d) first; unknown b last.
    assert select_popular(window, 3, last=4) == ["d", "c", "e"]
    assert select_popular(window, 5, last=5) == ["d", "c", "a", "e", "b"]


def test_signal_in_force():
    signals = [Signal(step=2, text="x"), Signal(step=5, text="y")]
    assert [signal_at(signals, s) for s in (0, 2, 4, 5, 9)] == [None, "x", "x", "y", "y"]


@pytest.mark.parametrize("bad", [
    dict(popular_window=3, popular_k=5),
    dict(signals=[Signal(step=3, text="a"), Signal(step=1, text="b")]),
    dict(interventions=[Intervention(step=0, posts=["x"], agents=[9])]),
    dict(method="nope"),
])
def test_bad_rollout_config_is_rejected(bad):
    with pytest.raises(ValueError):
        cfg(**bad)


def test_trajectory_schema_matches_records(tmp_path):
    import dataclasses

    from mfray.sim.trajectory import SCHEMA, read_trajectory, write_trajectory
    from mfray.types import StepRecord

    assert SCHEMA.names == [f.name for f in dataclasses.fields(StepRecord)]
    recs = run(run_event(make_event(), ScriptedLLM(), cfg()))
    assert read_trajectory(write_trajectory(recs, tmp_path / "t.parquet")) == recs
    assert recs[0].topic == "real-1" and recs[0].language == "en"


@pytest.mark.parametrize("style", ["chat", "timeline"])
def test_prompt_style_shapes_prompts_and_reads_generations_back(style):
    """chat: chat messages, the text kept as generated. timeline: raw strings ending with the
    agent's profile (when known) and its open post line, recorded as sent; the post is the open line (a speaker label the model
    repeats is dropped) and the mean field its aspect lines."""
    from mfray.sim.trajectory import decode_prompt

    rollout = EventRollout(make_event(), cfg(prompt_style=style, horizon=16), seed=0)
    sent = []
    while (req := rollout.next_request()) is not None:
        if req.role == "policy":
            sent += req.prompts
            texts = ["\n@user: RT @a: b"] * len(req.prompts)
        else:
            texts = [" most users doubt it.\nEmotions: calm.\n\nStory: next"]
        rollout.submit([Generation(text=t, prompt_tokens=1, completion_tokens=1, finish_reason="stop") for t in texts])
    recs = rollout.drain()
    simulated = [r for r in recs if not r.warmup]
    assert [decode_prompt(r.policy_prompt) for r in simulated] == sent
    if style == "chat":
        assert all(isinstance(p, list) and p[0]["role"] == "user" for p in sent)
        assert {r.simulated_text for r in simulated} == {"@user: RT @a: b"}
        assert recs[-1].mean_field == "most users doubt it.\nEmotions: calm.\n\nStory: next"
    else:
        lines = [f"\nNext post by: {r.state_text}\n@user:" if r.state_text else "\n@user:" for r in simulated]
        assert all(isinstance(p, str) and p.endswith(line) for p, line in zip(sent, lines))
        assert any(r.state_text for r in simulated) and any(not r.state_text for r in simulated)
        assert {r.simulated_text for r in simulated} == {"RT @a: b"}
        assert recs[-1].mean_field == "Stance: most users doubt it.\nEmotions: calm."


def test_adapter_names_apply_to_the_methods_that_use_adapters_only():
    from mfray.sim.config import RolloutConfig

    named = {"policy_adapter": "p", "mean_field_adapter": "m"}
    assert RolloutConfig(method="mf_ibtune").adapters() == ("ib_policy", "ib_mean_field")
    assert RolloutConfig(method="mf_ibtune", **named).adapters() == ("p", "m")
    assert RolloutConfig(method="sft").adapters() == ("sft", None)
    assert RolloutConfig(method="sft", **named).adapters() == ("p", None)
    for method in ("state", "recent", "popular", "mf"):  # the base model, whatever a sweep's config names
        assert RolloutConfig(method=method, **named).adapters() == (None, None)
