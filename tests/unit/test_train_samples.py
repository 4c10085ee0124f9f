"""Training samples: step transitions of real events, whole events per worker, nothing dropped
silently, and the same prompts as simulation."""

import pytest

from mfray.prompts.render import policy_chat
from mfray.train.samples import event_samples, worker_streams
from mfray.types import Event, Post, Profile


def make_event(eid: str, n: int) -> Event:
    def post(i: int) -> Post:
        return Post(str(i), i, f"{eid}-a{i}", f"{eid}-a{i}", False, Profile(followers_count=50))
    return Event(eid, "canonical", "en", post(-1), tuple(post(i) for i in range(n)))


def test_transitions_pair_each_step_with_the_previous_one():
    # 10 agents, N_t 4, horizon 9: steps [0-3] [4-7] [8] -> transitions (0->1), (1->2)
    samples = event_samples(make_event("e", 10), agents_per_step=4, horizon=9)
    assert [s.step for s in samples] == [1, 2]
    assert [a.text for a in samples[0].previous] == ["e-a0", "e-a1", "e-a2", "e-a3"]
    assert [a.text for a in samples[1].current] == ["e-a8"]  # the partial last step is kept, not dropped
    assert samples[0].first_of_event and not samples[1].first_of_event
    assert "very low level of influence" in samples[0].current[0].state  # the state text simulation renders


def test_workers_get_whole_events_in_order_and_short_events_are_reported():
    events = [make_event("b", 8), make_event("a", 8), make_event("c", 8), make_event("short", 3)]
    streams, problems = worker_streams(events, agents_per_step=4, horizon=8, workers=2)
    assert [[s.event_id for s in st] for st in streams] == [["a", "c"], ["b"]]  # sorted by id, dealt round-robin
    assert len(problems) == 1 and "event short: 3 responses" in problems[0]
    with pytest.raises(ValueError, match="3 usable training events for 4 workers"):
        worker_streams(events, agents_per_step=4, horizon=8, workers=4)


def test_training_prompts_are_the_simulation_prompts():
    from mfray.sim.config import RolloutConfig
    from mfray.sim.rollout import EventRollout

    event = make_event("e", 8)
    rollout = EventRollout(event, RolloutConfig(method="mf", agents_per_step=4, sim_start=0, horizon=8))
    request = rollout.next_request()
    sample = event_samples(event, 4, 8)[0]
    assert request.prompts[0] == policy_chat("en", event.topic_text, sample.previous[0].state, mean_field="")
