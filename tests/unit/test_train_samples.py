"""Training samples: step transitions of real events, whole events per worker, nothing dropped
silently, and the same prompts as simulation."""

import random

import pytest

from mfray.prompts.parse import post_text
from mfray.prompts.render import policy_completion, policy_prompt
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
    # 12 agents in steps of 4: two transitions (1, 2) per event; "short" has none
    events = [make_event("b", 12), make_event("a", 12), make_event("c", 12), make_event("short", 3)]
    streams, problems = worker_streams(events, agents_per_step=4, horizon=12, workers=2, seed=0)
    order = ["a", "b", "c", "short"]
    random.Random(0).shuffle(order)  # sorted by id, shuffled with the seed, dealt round-robin
    order.remove("short")
    assert [[s.event_id for s in st][::2] for st in streams] == [order[0::2], order[1::2]]
    assert [[s.step for s in st] for st in streams] == [[1, 2, 1, 2], [1, 2]]  # an event's steps together, in order
    assert worker_streams(events[::-1], agents_per_step=4, horizon=12, workers=2, seed=0)[0] == streams  # file order
    assert len(problems) == 1 and "event short: 3 responses" in problems[0]
    with pytest.raises(ValueError, match="3 usable training events for 4 workers"):
        worker_streams(events, agents_per_step=4, horizon=12, workers=4)


@pytest.mark.parametrize("style", ["chat", "timeline"])
def test_training_prompts_are_the_simulation_prompts(style):
    from mfray.sim.config import RolloutConfig
    from mfray.sim.rollout import EventRollout
    from mfray.train.steps import _policy_prompts

    event = make_event("e", 8)
    rollout = EventRollout(event, RolloutConfig(method="mf", agents_per_step=4, sim_start=0, horizon=8, prompt_style=style))
    request = rollout.next_request()
    sample = event_samples(event, 4, 8)[0]
    # step 0 of the rollout is the first step's agents, i.e. the sample's `previous`
    assert request.prompts[0] == policy_prompt(style, "en", event.topic_text, sample.previous[0].state)
    assert _policy_prompts(sample, style, "")[0] == policy_prompt(style, "en", event.topic_text, sample.current[0].state)


def test_a_timeline_completion_reads_back_as_the_post_it_trains_on():
    prompt = policy_prompt("timeline", "en", "A headline", "a user")
    completion = policy_completion(prompt, "Wow.\nReally?  http://t.co/x")
    assert completion == " Wow. Really? http://t.co/x\n"  # one line, as the timeline shows posts
    assert post_text("timeline", completion) == "Wow. Really? http://t.co/x"
    chat = policy_prompt("chat", "en", "A headline", "a user")
    assert policy_completion(chat, "Wow.") == "Wow."  # a chat answer is the post itself
