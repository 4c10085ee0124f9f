"""Request bodies of the simulation endpoint, with the limits that keep one request from taking
the server down: upload and text sizes, horizon, posts per intervention. Unknown fields are
refused, so a misspelt option is an error instead of a silent default."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mfray.llm.base import SEED_MAX
from mfray.sim.config import Method

MAX_UPLOAD_BYTES = 8 << 20  # an event file sent inline; the largest shared Twitter event is about 2 MiB
MAX_BODY_BYTES = MAX_UPLOAD_BYTES * 2  # base64 grows a file by a third; JSON escapes add a little more
MAX_TEXT_CHARS = 2000  # an inserted post or a signal
MAX_POSTS = 64  # posts in one intervention (at most one per agent of a step)
MAX_HORIZON = 5000  # agents per simulation: a live session is interactive, sweeps are for more
MAX_AGENTS_PER_STEP = 64
SIM_ID = re.compile(r"^[0-9a-f]{12}$")
EVENT_SUFFIXES = (".json", ".jsonl", ".parquet")


class Body(BaseModel):
    """A request body: unknown fields are refused (422), values are not coerced from strings."""

    model_config = ConfigDict(extra="forbid", strict=True)


class Upload(Body):
    """An event file sent inline: a Weibo or Twitter .json, a canonical .jsonl, or a canonical
    .parquet as base64. `filename` only chooses the format by its suffix and names the file in
    messages; the server stores the upload under a name of its own."""

    filename: str = Field(min_length=1, max_length=200)
    content: str = Field(min_length=1, max_length=MAX_UPLOAD_BYTES * 4 // 3 + 4)
    encoding: Literal["text", "base64"] = "text"

    @property
    def suffix(self) -> str:
        return "." + self.filename.rsplit(".", 1)[-1].lower() if "." in self.filename else ""

    @model_validator(mode="after")
    def _check(self):
        if self.suffix not in EVENT_SUFFIXES:
            raise ValueError(f"upload.filename must end in one of {', '.join(EVENT_SUFFIXES)}")
        if self.suffix == ".parquet" and self.encoding != "base64":
            raise ValueError("a .parquet upload is binary: send its content with encoding 'base64'")
        return self


class Sampling(Body):
    """Decoding options of one model role; left out: the method's defaults (SPEC section 2)."""

    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int | None = Field(None, ge=1, le=512)

    def overrides(self) -> dict:
        return self.model_dump(exclude_none=True)


class CreateSimulation(Body):
    """A new simulation of a stored event (`event_id`, from GET /api/events) or an uploaded one.
    `pick` chooses the event of a file that holds several. With `start` it runs at once (`steps`:
    only that many steps, then it pauses); otherwise it waits, paused, for POST .../resume."""

    event_id: str | None = Field(None, min_length=1, max_length=200)
    upload: Upload | None = None
    pick: str | None = Field(None, min_length=1, max_length=200)
    method: Method = "mf"
    seed: int = Field(0, ge=0, le=SEED_MAX)
    horizon: int = Field(112, ge=1, le=MAX_HORIZON, description="agents simulated, warm-up included")
    sim_start: int = Field(48, ge=0, le=MAX_HORIZON, description="agents before it act with their real posts")
    agents_per_step: int = Field(16, ge=1, le=MAX_AGENTS_PER_STEP)
    prompt_style: Literal["chat", "timeline"] | None = None
    policy: Sampling = Sampling()
    mean_field: Sampling = Sampling()
    start: bool = True
    steps: int | None = Field(None, ge=1, le=MAX_HORIZON)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.event_id is None) == (self.upload is None):
            raise ValueError("give exactly one of event_id (a stored event, GET /api/events) and upload")
        return self

    def rollout_config(self) -> dict:
        """The RolloutConfig dict of this request (validated by the caller: a plan that
        RolloutConfig's own rules refuse answers 422 there)."""
        cfg = {"method": self.method, "horizon": self.horizon, "sim_start": self.sim_start,
               "agents_per_step": self.agents_per_step}
        if self.prompt_style is not None:
            cfg["prompt_style"] = self.prompt_style
        for role in ("policy", "mean_field"):
            if getattr(self, role).overrides():
                cfg[role] = getattr(self, role).overrides()
        return cfg


class Resume(Body):
    """Run on: every step left (`steps` absent) or that many, then pause."""

    steps: int | None = Field(None, ge=1, le=MAX_HORIZON)


class Intervene(Body):
    """Insert posts as the actions of agents of a coming step (default: the next one), agents
    given as offsets within the step (default: the first len(posts))."""

    posts: list[str] = Field(min_length=1, max_length=MAX_POSTS)
    agents: list[int] | None = Field(None, max_length=MAX_POSTS)
    step: int | None = Field(None, ge=0, le=MAX_HORIZON)

    @model_validator(mode="after")
    def _check(self):
        for i, post in enumerate(self.posts):
            if not post.strip() or len(post) > MAX_TEXT_CHARS:
                raise ValueError(f"posts[{i}] must hold 1..{MAX_TEXT_CHARS} characters, not only spaces")
        return self


class SetSignal(Body):
    """Show `text` as the exogenous signal in every prompt from `step` (default: the next)."""

    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS)
    step: int | None = Field(None, ge=0, le=MAX_HORIZON)


class Fork(Body):
    """A what-if: a new simulation from the start of `step` of this one (its past shared, its
    future its own), started at once unless `start` is false."""

    step: int = Field(ge=0, le=MAX_HORIZON)
    start: bool = True
    steps: int | None = Field(None, ge=1, le=MAX_HORIZON)
