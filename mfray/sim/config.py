"""The rollout's typed config (SPEC sections 1-3); every default is the SPEC's."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from mfray.config import EndpointConfig, ModelConfig, SamplingConfig, StrictModel

Method = Literal["state", "recent", "popular", "mf", "sft", "mf_ibtune"]
METHODS: tuple[str, ...] = ("state", "recent", "popular", "mf", "sft", "mf_ibtune")


class Intervention(StrictModel):
    """Posts inserted as the actions of chosen agents at a chosen step. `agents` are offsets
    within the step (default: the first len(posts) agents)."""

    step: int = Field(ge=0)
    posts: list[str] = Field(min_length=1)
    agents: list[int] | None = None

    @model_validator(mode="after")
    def _agents_match_posts(self):
        if self.agents is not None and len(self.agents) != len(self.posts):
            raise ValueError(f"intervention at step {self.step}: {len(self.posts)} posts but {len(self.agents)} agents")
        return self


class Signal(StrictModel):
    """An exogenous signal c_t: from `step` on, every prompt shows `text` (until a later one)."""

    step: int = Field(ge=0)
    text: str = Field(min_length=1)


class RolloutConfig(StrictModel):
    """How one event is simulated."""

    method: Method = "mf"
    agents_per_step: int = Field(16, ge=1)
    sim_start: int = Field(48, ge=0, description="agents before this index act with their real actions")
    horizon: int = Field(300, ge=1, description="number of agents simulated (past the record: sampled states)")
    recent_k: int = Field(5, ge=1)
    popular_k: int = Field(5, ge=1)
    popular_window: int = Field(30, ge=1)
    mean_field_states: bool = False  # also show each action's author state to the mean-field model
    retries: int = Field(2, ge=0, description="extra attempts for a failed or empty generation")
    policy: SamplingConfig = SamplingConfig()
    mean_field: SamplingConfig = SamplingConfig(temperature=0.1, max_new_tokens=200, first_line=False)
    policy_adapter: str | None = None  # None: the method's default (see adapters())
    mean_field_adapter: str | None = None
    interventions: list[Intervention] = Field(default_factory=list)
    signals: list[Signal] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self):
        if self.popular_window < self.popular_k:
            raise ValueError(f"popular_window ({self.popular_window}) < popular_k ({self.popular_k})")
        steps = [s.step for s in self.signals]
        if steps != sorted(set(steps)):
            raise ValueError(f"signal steps must be strictly increasing, got {steps}")
        for iv in self.interventions:
            for a in iv.agents or range(len(iv.posts)):
                if not 0 <= a < self.agents_per_step:
                    raise ValueError(f"intervention at step {iv.step}: agent offset {a} outside 0..{self.agents_per_step - 1}")
        return self

    @property
    def uses_mean_field(self) -> bool:
        return self.method in ("mf", "mf_ibtune")

    def adapters(self) -> tuple[str | None, str | None]:
        """(policy adapter, mean-field adapter) for the method: sft and mf_ibtune use the
        adapters that training writes under these names unless the config names others."""
        policy_default = {"sft": "sft", "mf_ibtune": "ib_policy"}.get(self.method)
        mf_default = "ib_mean_field" if self.method == "mf_ibtune" else None
        return self.policy_adapter or policy_default, self.mean_field_adapter or mf_default


class SimulateConfig(StrictModel):
    """`mfray simulate` / jobs/simulate.py: events x methods x seeds, written as Parquet."""

    events: list[str] = Field(default_factory=list, description="event files or directories")
    methods: list[Method] = Field(default_factory=lambda: ["mf"], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    out: str = "runs/simulate"
    concurrency: int = Field(4, ge=1, description="events in flight at once")
    model: ModelConfig = ModelConfig()
    endpoint: EndpointConfig | None = None
    rollout: RolloutConfig = RolloutConfig()
