"""Training samples from real events (SPEC section 7).

A sample is one step transition of one event: the real (state, action) pairs of step t-1 (what
the mean field summarises) and of step t (what the policy must predict). Samples of an event stay
in order, so the trainer can carry the mean field from step to step and reset it to "" at each
event's first sample: a mean field never crosses events. Nothing is dropped silently: events too
short for one transition are returned as problems with their id.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mfray.data.state import state_text
from mfray.types import Event


@dataclass(frozen=True)
class Action:
    state: str
    text: str


@dataclass(frozen=True)
class StepSample:
    event_id: str
    language: str
    topic: str
    step: int  # t: `current` are step t's actions, `previous` step t-1's
    previous: tuple[Action, ...]
    current: tuple[Action, ...]

    @property
    def first_of_event(self) -> bool:
        return self.step == 1


def mean_field_comments(actions, with_states: bool) -> list[dict]:
    """The mean-field template's comment list for real actions (states shown only when asked)."""
    return [{"text": a.text, "state": a.state if with_states else ""} for a in actions]


def event_actions(event: Event, horizon: int) -> list[Action]:
    """The event's first `horizon` real actions with their authors' states."""
    return [Action(state_text(p.profile, event.language), p.text) for p in event.responses[:horizon]]


def event_samples(event: Event, agents_per_step: int, horizon: int) -> list[StepSample]:
    """Transitions (t-1 -> t) for t = 1 .. last full-or-partial step within the horizon."""
    actions = event_actions(event, horizon)
    steps = [tuple(actions[i : i + agents_per_step]) for i in range(0, len(actions), agents_per_step)]
    return [
        StepSample(event.event_id, event.language, event.topic_text, t, steps[t - 1], steps[t])
        for t in range(1, len(steps))
    ]


def deal(groups: dict[str, list], workers: int, seed: int = 0) -> list[list]:
    """Deal each event's samples (`groups`: event id -> its samples in order) round-robin to
    `workers` streams: an event's samples stay on one worker, in order. Events are sorted by id,
    then shuffled with `seed`: the split does not depend on file order, and a run shorter than its
    stream sees a mix of events (sorted ids put one dataset's events first, e.g. all Weibo ids
    before every Twitter "E..." id). Events with no samples take part in the shuffle, then are
    left out (so a split does not change when one becomes unusable). ValueError when fewer
    events than workers have samples."""
    ordered = sorted(groups)
    random.Random(seed).shuffle(ordered)
    ordered = [event_id for event_id in ordered if groups[event_id]]
    if len(ordered) < workers:
        raise ValueError(f"{len(ordered)} usable training events for {workers} workers; give more events or fewer workers")
    streams: list[list] = [[] for _ in range(workers)]
    for i, event_id in enumerate(ordered):
        streams[i % workers].extend(groups[event_id])
    return streams


def worker_streams(
    events: list[Event], agents_per_step: int, horizon: int, workers: int, seed: int = 0
) -> tuple[list[list[StepSample]], list[str]]:
    """Deal whole events to workers (`deal`); return (one sample stream per worker, problems)."""
    problems, groups = [], {}
    for event in events:
        groups[event.event_id] = samples = event_samples(event, agents_per_step, horizon)
        if not samples:
            problems.append(
                f"event {event.event_id}: {len(event)} responses, fewer than the 2 steps of {agents_per_step} "
                "agents a training transition needs; not used for training"
            )
    return deal(groups, workers, seed), problems
