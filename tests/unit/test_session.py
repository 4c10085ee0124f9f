"""LiveSession (mfray.sim.session), Ray-free: stepping by hand gives the uninterrupted run,
interventions and signals land between steps, a snapshot resumes exactly, and a fork from a past
step repeats the original until its own change. Driven by the scripted LLM behind the project's
interface (bookkeeping: its answers name their seeds and what the mean field summarised)."""

from __future__ import annotations

import pytest

from mfray.sim.driver import run_event
from mfray.sim.session import LiveSession
from tests.unit.test_rollout import ScriptedLLM, cfg, make_event, run


def test_stepping_by_hand_gives_the_uninterrupted_run():
    event, c = make_event(), cfg(horizon=24)  # 6 steps of 4: warm-up 0..1, simulated 2..5
    whole = run(run_event(event, ScriptedLLM(), c, seed=3))
    session = LiveSession(event, ScriptedLLM(), c, seed=3)
    first = run(session.step())
    assert [r.step for r in first] == [0] * 4  # mf summarises after warm-up steps too: one step
    rest = run(session.run(2)) + run(session.run(None))
    assert first + rest == whole == run(session.trajectory())
    assert run(session.info())["done"] and run(session.step()) == []


def test_interventions_and_signals_land_between_steps_and_the_past_is_refused():
    event, c = make_event(), cfg(horizon=24)
    session = LiveSession(event, ScriptedLLM(), c)
    run(session.run(3))
    with pytest.raises(ValueError, match="steps up to 2 are already simulated"):
        run(session.intervene(["too late"], step=2))
    with pytest.raises(ValueError, match="intervene: "):  # agent 7 is not in a 4-agent step
        run(session.intervene(["x"], agents=[7]))
    info = run(session.intervene(["Officials: fake."], agents=[1]))
    assert info["step"] == 3 and info["interventions"][0]["posts"] == ["Officials: fake."]
    run(session.set_signal("Police statement"))
    records = run(session.step())
    assert [r.intervention for r in records] == [False, True, False, False]
    assert records[1].simulated_text == "Officials: fake." and all(r.signal == "Police statement" for r in records)


def test_a_snapshot_resumes_exactly_and_a_fork_changes_only_its_future():
    event, c = make_event(), cfg(horizon=24)
    original = LiveSession(event, ScriptedLLM(), c, seed=5)
    run(original.run(None))
    everything = run(original.trajectory())
    # A fork from the start of step 3 with no change repeats steps 3..5 exactly.
    again = LiveSession(event, ScriptedLLM(), state=original.snapshot(step=3))
    assert run(again.trajectory()) == everything[:12]
    assert run(again.run(None)) == everything[12:]
    # The same fork with an inserted post: identical before step 3, different from it on.
    what_if = LiveSession(event, ScriptedLLM(), state=original.snapshot(step=3))
    run(what_if.intervene(["Officials: fake."]))
    changed = run(what_if.run(None))
    assert changed[0].simulated_text == "Officials: fake." and changed != everything[12:]
    assert [r.mean_field for r in changed[:4]] == [r.mean_field for r in everything[12:16]]  # m_3 predates it
    assert changed[4].mean_field != everything[16].mean_field  # the summary of step 3 saw the post
    # state_dict() is the snapshot of now; a step never reached has none.
    resumed = LiveSession(event, ScriptedLLM(), state=run(original.state_dict()))
    assert run(resumed.trajectory()) == everything and run(resumed.info())["done"]
    # ... and carries the start of every step, so the resumed session still forks from the past.
    assert resumed.snapshot(step=3) == original.snapshot(step=3) == run(original.snapshot_at(3))
    refork = LiveSession(event, ScriptedLLM(), state=resumed.snapshot(step=3))
    assert run(refork.run(None)) == everything[12:]
    with pytest.raises(ValueError, match="no snapshot at step 9"):
        original.snapshot(step=9)
    with pytest.raises(ValueError, match="state is of event 'ev1', not 'other'"):
        LiveSession(make_event().__class__("other", "canonical", "en", event.topic, event.responses), ScriptedLLM(),
                    state=original.snapshot(step=0))
