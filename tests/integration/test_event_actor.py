"""The event actor on a real local Ray with a real tiny model: step by step on a real Twitter
event, interventions and a signal land exactly on the steps asked for, a snapshot resumes in a
new actor and continues exactly as the original does."""

from __future__ import annotations

import dataclasses

import pytest

pytestmark = pytest.mark.integration

CFG = {"method": "mf", "horizon": 64, "agents_per_step": 8, "sim_start": 16, "policy": {"max_new_tokens": 4},
       "mean_field": {"temperature": 0.1, "max_new_tokens": 8, "first_line": False}}


def untimed(records):
    return [dataclasses.replace(r, latency_s=0.0) for r in records]  # wall-clock differs run to run


def test_step_intervene_signal_and_resume(local_ray, data_dir, tiny_model_dir):
    from mfray.ray.event_actor import EventActor

    ray = local_ray
    backend = {"llm": "local", "model": {"path": str(tiny_model_dir)}}
    actor = EventActor.remote(str(data_dir / "twitter_rumdect/E102.json"), CFG, seed=3, backend=backend)
    info = ray.get(actor.info.remote())
    assert (info["event_id"], info["step"], info["steps"], info["done"]) == ("E102", 0, 8, False)

    # Steps 0 and 1 are warm-up (agents 0..15 act with their real posts); mf summarises each.
    first = ray.get(actor.step.remote())
    assert [r.agent_index for r in first] == list(range(8)) and all(r.warmup for r in first)
    ray.get(actor.step.remote())

    # Insert two posts into step 2 at agent offsets 0 and 3; the other six agents use the policy.
    info = ray.get(actor.intervene.remote(["It is a hoax.", "Confirmed by police."], agents=[0, 3]))
    assert info["interventions"] == [{"step": 2, "posts": ["It is a hoax.", "Confirmed by police."], "agents": [0, 3]}]
    step2 = ray.get(actor.step.remote())
    assert [r.step for r in step2] == [2] * 8
    inserted = {r.agent_index - 16: r.simulated_text for r in step2 if r.intervention}
    assert inserted == {0: "It is a hoax.", 3: "Confirmed by police."}
    assert not any(r.warmup for r in step2)

    # A signal from step 3 on; a past step is refused with a message naming the fix.
    ray.get(actor.set_signal.remote("Officials: the photo is fake."))
    with pytest.raises(ValueError, match=r"intervene at step 1: steps up to 2 are already simulated; use step >= 3"):
        ray.get(actor.intervene.remote(["late"], step=1))
    steps34 = ray.get(actor.run.remote(2))
    assert sorted({r.step for r in steps34}) == [3, 4]
    assert {r.signal for r in steps34} == {"Officials: the photo is fake."}
    trajectory = ray.get(actor.trajectory.remote())
    assert [r.agent_index for r in trajectory] == list(range(40))
    assert {r.signal for r in trajectory[:24]} == {None}

    # Snapshot, resume in a second actor, and run both to the end: the same continuation.
    saved = ray.get(actor.state_dict.remote())
    assert saved["rollout"]["step"] == 5 and len(saved["records"]) == 40
    twin = EventActor.remote(str(data_dir / "twitter_rumdect/E102.json"), backend=backend, state=saved)
    rest, twin_rest = ray.get([actor.run.remote(), twin.run.remote()])
    assert [r.step for r in rest] == [5] * 8 + [6] * 8 + [7] * 8
    assert untimed(rest) == untimed(twin_rest)
    assert untimed(ray.get(twin.trajectory.remote())) == untimed(ray.get(actor.trajectory.remote()))
    final = ray.get(twin.info.remote())
    assert final["done"] and final["records"] == 64 and final["signals"] == [{"step": 3, "text": "Officials: the photo is fake."}]
    assert ray.get(twin.step.remote()) == []  # nothing left to simulate


def test_bad_inputs_are_refused(local_ray, data_dir, tiny_model_dir, tmp_path):
    from mfray.ray.event_actor import EventActor
    from mfray.sim.session import load_event

    with pytest.raises(ValueError, match="bad.json"):
        bad = tmp_path / "bad.json"
        bad.write_text("[", encoding="utf-8")
        load_event(str(bad))
    with pytest.raises(ValueError, match="need event 'E999'"):
        load_event(str(data_dir / "twitter_rumdect/E102.json"), event_id="E999")
    ray = local_ray
    actor = EventActor.remote(str(data_dir / "twitter_rumdect/E102.json"), CFG,
                              backend={"llm": "local", "model": {"path": str(tiny_model_dir)}})
    with pytest.raises(ValueError, match="agent offset 9 outside 0..7"):
        ray.get(actor.intervene.remote(["x"], agents=[9]))
    with pytest.raises(ValueError, match="steps must be >= 0"):
        ray.get(actor.run.remote(-1))
    # 8 agents a step, sim_start 16, horizon 64: only agents 16..63 (steps 2..7) are generated.
    with pytest.raises(ValueError, match=r"agent offset 0 is agent 8, a warm-up agent \(before sim_start 16\)"):
        ray.get(actor.intervene.remote(["x"], step=1))
    with pytest.raises(ValueError, match="agent 64, beyond the horizon .64: the last simulated agent is 63, step 7 offset 7"):
        ray.get(actor.intervene.remote(["x"], step=8))
    with pytest.raises(ValueError, match=r"intervention at step 4 names agent offset\(s\) \[1\] more than once"):
        ray.get(actor.intervene.remote(["a", "b"], agents=[1, 1], step=4))
    assert ray.get(actor.info.remote())["interventions"] == []  # a refused plan changes nothing
    # A second post for an agent already planned is refused, naming both interventions.
    ray.get(actor.intervene.remote(["first"], agents=[2], step=3))
    with pytest.raises(ValueError, match=r"interventions\[0\] \(step 3\) and interventions\[1\] \(step 3\) both insert "
                                         r"a post for agent offset 2 \(agent 26\)"):
        ray.get(actor.intervene.remote(["second"], agents=[2], step=3))
    assert ray.get(actor.info.remote())["interventions"] == [{"step": 3, "posts": ["first"], "agents": [2]}]
