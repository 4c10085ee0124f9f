"""Records passed between stages: Profile, Post, Event, StepRecord.

Plain frozen dataclasses: cheap to build, hashable where it matters, and free of any Ray or
torch dependency, so every stage (loader, rollout, evaluation, Ray actor) passes the same objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Language = Literal["zh", "en"]
Source = Literal["weibo", "twitter", "canonical"]


@dataclass(frozen=True)
class Profile:
    """The author of a post. Every field may be missing (None): missing is never guessed.

    `activity_count` is the user's own number of posts/interactions (Weibo `statuses_count`).
    """

    user_id: str | None = None
    location: str | None = None
    description: str | None = None
    gender: Literal["m", "f"] | None = None
    friends_count: int | None = None
    followers_count: int | None = None
    activity_count: int | None = None
    verified: bool | None = None
    verified_type: int | None = None
    verified_reason: str | None = None


@dataclass(frozen=True)
class Post:
    """One post of an event. `text` is the action text (a pure repost already carries the
    repost marker); `raw_text` is the text exactly as the source gave it."""

    post_id: str
    t: int  # Unix seconds, UTC
    text: str
    raw_text: str
    is_repost: bool
    profile: Profile = field(default_factory=Profile)
    parent: str | None = None


@dataclass(frozen=True)
class Event:
    """A topic (the source post) and its responses in time order. Response j is agent j."""

    event_id: str
    source: Source
    language: Language
    topic: Post
    responses: tuple[Post, ...]

    @property
    def topic_text(self) -> str:
        return self.topic.text

    def __len__(self) -> int:
        return len(self.responses)


@dataclass(frozen=True)
class StepRecord:
    """One agent action of a rollout, real and simulated side by side (one trajectory row)."""

    event_id: str
    method: str
    seed: int
    language: str  # the event's, so evaluation needs nothing but the trajectory
    topic: str
    step: int
    agent_index: int
    real_text: str | None  # None past the recorded agents (long horizon)
    simulated_text: str | None  # None in warm-up and on failure
    mean_field: str  # the mean field in force when the agent acted
    signal: str | None  # exogenous signal text in force, if any
    state_text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    failed: bool = False
    warmup: bool = False
    intervention: bool = False
    prompt_hash: str = ""
    # The policy prompt as JSON chat messages (mfray.sim.trajectory.encode_prompt), so the NLL of
    # the real action can be scored later; None where no policy acted (warm-up, intervention).
    policy_prompt: str | None = None
    # MF-MDP only (None elsewhere): the agent's latent state drawn from m_t, and m_t itself as
    # JSON {"positive": p, "neutral": p, "negative": p} (mfray.mdp.macro.STATES).
    latent_state: str | None = None
    macro_state: str | None = None
