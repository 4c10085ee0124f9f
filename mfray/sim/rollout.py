"""The per-event MF-LLM rollout as a pure, seeded state machine (SPEC section 2).

The rollout never calls a model: `next_request()` says what it needs (a batch of policy prompts,
or one mean-field prompt) and `submit()` takes the generations. A driver can therefore batch the
requests of many events into one engine call, run it in a Ray actor, or behind an endpoint.

Per step t (agents t*N .. t*N+N-1):
1. each agent acts: a real action in warm-up, an inserted post under an intervention, otherwise a
   policy generation (failed, empty or profile-echoing ones are retried, then recorded as failures, never
   replaced by the real action). The config admits interventions only on generated agents, one
   post per agent (mfray.sim.config.intervention_problems), so none replaces a warm-up action,
   falls past the horizon or overwrites another;
2. for mean-field methods, m_{t+1} = mu(topic, m_t, step actions), replacing m_t;
3. the step's records are streamed out with the mean field that was in force when they acted.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from mfray.data.state import state_text
from mfray.llm.base import Generation, Prompt, SamplingParams
from mfray.mdp.macro import STATES, describe, draw_state, prompt_fields
from mfray.prompts.parse import echoes_profile, mean_field_text, post_text
from mfray.prompts.render import encoded_prompt_hash, mean_field_prompt, policy_prompt
from mfray.sim.config import RolloutConfig
from mfray.sim.context import WindowAction, derive_seed, select_popular, select_recent, signal_at
from mfray.sim.methods import method_spec
from mfray.sim.trajectory import encode_prompt
from mfray.types import Event, Profile, StepRecord

STATE_VERSION = 2  # 2: MF-MDP's macro history keeps step numbers, not profile texts


@dataclass(frozen=True)
class LLMRequest:
    """What the rollout needs next: prompts for one role, with sampling and adapter."""

    role: Literal["policy", "mean_field"]
    prompts: list[Prompt]
    sampling: SamplingParams
    adapter: str | None


@dataclass
class _Agent:
    index: int
    profile: Profile
    state: str
    real_text: str | None
    text: str | None = None  # the action taken (real, inserted or generated)
    source: Literal["real", "intervention", "policy"] = "policy"
    prompt: Prompt | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    failed: bool = False
    latent: str | None = None  # MF-MDP: the state this agent drew from m_t


@dataclass
class RolloutStats:
    """Counts of one rollout. `retries`/`failures`: the rollout's own re-requests of failed or
    empty generations and the agents still failed after them. `llm_retries`/`llm_errors`: the
    backend's extra attempts (HTTP or Serve handle) and the generations it gave up on."""

    policy_requests: int = 0
    mean_field_requests: int = 0
    retries: int = 0
    failures: int = 0
    mean_field_failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_retries: int = 0
    llm_errors: int = 0


@dataclass
class EventRollout:
    """One event's simulation. Build with `EventRollout(event, cfg, seed)`; resume with
    `EventRollout.from_state(event, cfg, state)`."""

    event: Event
    cfg: RolloutConfig
    seed: int = 0
    step: int = 0
    mean_field: str = ""  # m_0 is the empty string, never a placeholder
    stats: RolloutStats = field(default_factory=RolloutStats)
    window: deque = field(init=False)
    _agents: list[_Agent] = field(default_factory=list, init=False)
    _phase: Literal["idle", "policy", "mean_field"] = field(default="idle", init=False)
    _attempt: int = field(default=0, init=False)
    _waiting: list[int] = field(default_factory=list, init=False)  # agent offsets awaiting policy
    _out: list[StepRecord] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.window = deque(maxlen=max(self.cfg.recent_k, self.cfg.popular_window))
        self.event_seed = derive_seed(self.seed, self.event.event_id)
        self.policy_adapter, self.mean_field_adapter = self.cfg.adapters()
        self._profiles = [p.profile for p in self.event.responses] or [Profile()]
        # MF-MDP's macro state (mfray.mdp.tracker): m_t beside the text mean field r_t.
        self.macro = None
        if method_spec(self.cfg.method).macro_state:
            from mfray.mdp.tracker import build_tracker

            self.macro = build_tracker(self.cfg.mdp, self.event, self.cfg.sim_start, self.cfg.agents_per_step)
        self._candidates = self.cfg.mdp.reselect.candidates if self.macro is not None else 1

    # ---- the driver's side -------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self._phase == "idle" and self.step * self.cfg.agents_per_step >= self.cfg.horizon

    @property
    def at_step_boundary(self) -> bool:
        """True between steps, the only time state_dict() is defined."""
        return self._phase == "idle"

    def next_request(self) -> LLMRequest | None:
        """The next batch of prompts to generate, or None when the rollout is finished. Steps
        that need no model (pure warm-up of a non-mean-field method) complete here."""
        while self._phase == "idle":
            if self.done:
                return None
            self._begin_step()
        if self._phase == "policy":
            agents = [self._agents[i] for i in self._waiting]
            sampling = self.cfg.policy.params(derive_seed(self.event_seed, "policy", self.step, self._attempt))
            # J copies of each prompt under reselection: the request's per-prompt seeds make them differ
            return LLMRequest("policy", [a.prompt for a in agents for _ in range(self._candidates)], sampling,
                              self.policy_adapter)
        sampling = self.cfg.mean_field.params(derive_seed(self.event_seed, "mean_field", self.step, self._attempt))
        return LLMRequest("mean_field", [self._mean_field_prompt()], sampling, self.mean_field_adapter)

    def submit(self, generations: list[Generation]) -> None:
        """Hand in the generations for the request last returned by next_request()."""
        if self._phase == "policy":
            self._take_policy(generations)
        elif self._phase == "mean_field":
            self._take_mean_field(generations)
        else:
            raise RuntimeError("submit() called with no request outstanding")

    def drain(self) -> list[StepRecord]:
        """Records of the steps finished since the last call (the rollout keeps none)."""
        out, self._out = self._out, []
        return out

    # ---- checkpointing -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Everything needed to resume, between steps: a small JSON-able dict."""
        if self._phase != "idle":
            raise RuntimeError("state_dict() is only defined between steps")
        return {
            "version": STATE_VERSION,
            "fingerprint": self._fingerprint(),
            "step": self.step,
            "mean_field": self.mean_field,
            "window": [[a.text, a.followers] for a in self.window],
            "stats": vars(self.stats).copy(),
            **({"macro": self.macro.state_dict()} if self.macro is not None else {}),
        }

    @classmethod
    def from_state(cls, event: Event, cfg: RolloutConfig, seed: int, state: dict) -> "EventRollout":
        """Resume a rollout; the continuation equals the uninterrupted run (same seed)."""
        rollout = cls(event, cfg, seed)
        version = state.get("version")
        # Version 1 differs only in MF-MDP's macro history: its states of other methods still load.
        if version != STATE_VERSION and not (version == 1 and "macro" not in state):
            raise ValueError(f"rollout state version {version!r}, expected {STATE_VERSION}")
        if state["fingerprint"] != rollout._fingerprint():
            raise ValueError(f"rollout state of event {event.event_id} was saved with another config or seed")
        rollout.step = state["step"]
        rollout.mean_field = state["mean_field"]
        rollout.window.extend(WindowAction(text, followers) for text, followers in state["window"])
        rollout.stats = RolloutStats(**state["stats"])
        if rollout.macro is not None:
            rollout.macro.load_state(state["macro"], rollout._step_states)
        return rollout

    def _fingerprint(self) -> str:
        blob = json.dumps([self.event.event_id, self.seed, self.cfg.model_dump(mode="json")], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # ---- one step ------------------------------------------------------------------------------
    def _begin_step(self) -> None:
        n = self.cfg.agents_per_step
        first = self.step * n
        inserted = {}
        for iv in self.cfg.interventions:
            if iv.step == self.step:
                inserted.update(zip(iv.offsets, iv.posts))
        self._agents = []
        for j in range(first, min(first + n, self.cfg.horizon)):
            agent = self._make_agent(j)
            offset = j - first
            if offset in inserted:
                agent.text, agent.source = inserted[offset], "intervention"
            elif j < self.cfg.sim_start and agent.real_text is not None:
                agent.text, agent.source = agent.real_text, "real"
            self._agents.append(agent)
        if self.macro is not None:  # m_t first: the step's prompts show it
            warmup = all(a.source == "real" for a in self._agents)
            m = self.macro.start_step(self.step, self.mean_field, [a.state for a in self._agents],
                                      signal_at(self.cfg.signals, self.step), warmup)
            for a in self._agents:
                if a.source == "policy":  # each agent's own state, drawn independently (never the argmax)
                    a.latent = draw_state(m, derive_seed(self.event_seed, "latent", a.index))
        for agent in self._agents:
            if agent.source == "policy":
                agent.prompt = self._policy_prompt(agent)
        self._waiting = [i for i, a in enumerate(self._agents) if a.source == "policy"]
        self._attempt = 0
        if self._waiting:
            self._phase = "policy"
        else:
            self._after_policy()

    def _step_states(self, step: int) -> list[str]:
        """The state texts of step `step`'s agents, as the step began (they depend on the index only)."""
        first = step * self.cfg.agents_per_step
        return [self._make_agent(j).state for j in range(first, min(first + self.cfg.agents_per_step, self.cfg.horizon))]

    def _make_agent(self, j: int) -> _Agent:
        if j < len(self.event.responses):
            post = self.event.responses[j]
            profile, real = post.profile, post.text
        else:  # long horizon: a state drawn from the event's own profiles, keyed by agent index
            rng = random.Random(derive_seed(self.event_seed, "state", j))
            profile, real = rng.choice(self._profiles), None
        return _Agent(index=j, profile=profile, state=state_text(profile, self.event.language), real_text=real)

    def _take_policy(self, generations: list[Generation]) -> None:
        j = self._candidates
        if len(generations) != len(self._waiting) * j:
            raise ValueError(f"expected {len(self._waiting) * j} policy generations, got {len(generations)}")
        self.stats.policy_requests += 1
        still, offered = [], {}
        for n, i in enumerate(self._waiting):
            agent = self._agents[i]
            texts = []
            for gen in generations[n * j: (n + 1) * j]:
                self._account(gen)
                agent.prompt_tokens += gen.prompt_tokens
                agent.completion_tokens += gen.completion_tokens
                agent.latency_s += gen.latency_s
                text = post_text(self.cfg.prompt_style, gen.text) if gen.finish_reason != "error" else ""
                if text and not echoes_profile(text, agent.state):
                    texts.append(text)
            if not texts:
                still.append(i)
            elif j == 1:
                agent.text = texts[0]
            else:
                offered[i] = texts
        if offered:
            self._reselect(offered)
        if still and self._attempt < self.cfg.retries:
            self._attempt += 1
            self.stats.retries += len(still)
            self._waiting = still
            return
        for i in still:  # recorded as failures: the real action is never used in their place
            self._agents[i].failed = True
            self.stats.failures += 1
        self._waiting = []
        self._after_policy()

    def _reselect(self, offered: dict[int, list[str]]) -> None:
        """Simulation-time reselection (mfray.mdp.reselect): each agent's post drawn from its
        candidates by how little their states move f_psi's K-step forecast."""
        from mfray.mdp.reselect import candidate_distribution, pick, rollout_cost
        from mfray.mdp.tracker import attitude_labels

        settings, macro = self.cfg.mdp.reselect, self.macro
        texts = [t for candidates in offered.values() for t in candidates]
        labels = iter(attitude_labels(texts, self.event.topic_text, self.event.language, self.cfg.mdp.annotator))
        states = {i: [next(labels) for _ in candidates] for i, candidates in offered.items()}
        args = (self.mean_field, [a.state for a in self._agents], signal_at(self.cfg.signals, self.step), settings.k)
        forecast = macro.forecast(macro.m, *args)
        costs = {s: rollout_cost(forecast, macro.forecast(candidate_distribution(macro.m, s, len(self._agents)), *args),
                                 settings.gamma)
                 for s in {s for found in states.values() for s in found if s is not None}}
        for i, candidates in offered.items():
            agent = self._agents[i]
            agent.text = candidates[pick(states[i], costs, settings.beta, derive_seed(self.event_seed, "reselect", agent.index))]

    def _after_policy(self) -> None:
        last_step = (self.step + 1) * self.cfg.agents_per_step >= self.cfg.horizon
        acted = any(a.text is not None for a in self._agents)
        if self.cfg.uses_mean_field and acted and not last_step:
            self._phase, self._attempt = "mean_field", 0
        else:
            self._finish_step(self.mean_field)

    def _take_mean_field(self, generations: list[Generation]) -> None:
        if len(generations) != 1:
            raise ValueError(f"expected 1 mean-field generation, got {len(generations)}")
        (gen,) = generations
        self.stats.mean_field_requests += 1
        self._account(gen)
        text = "" if gen.finish_reason == "error" else mean_field_text(
            self.cfg.prompt_style, self.event.language, gen.text, truncated=gen.finish_reason == "length")
        if text:
            self._finish_step(text)
        elif self._attempt < self.cfg.retries:
            self._attempt += 1
            self.stats.retries += 1
        else:  # keep m_t: a failed summary must not erase what the population has shown so far
            self.stats.mean_field_failures += 1
            self._finish_step(self.mean_field)

    def _finish_step(self, next_mean_field: str) -> None:
        signal = signal_at(self.cfg.signals, self.step)
        macro = json.dumps(dict(zip(STATES, self.macro.m.round(6).tolist()))) if self.macro is not None else None
        for a in self._agents:
            stored = encode_prompt(a.prompt) if a.prompt is not None else None
            self._out.append(
                StepRecord(
                    event_id=self.event.event_id,
                    method=self.cfg.method,
                    seed=self.seed,
                    language=self.event.language,
                    topic=self.event.topic_text,
                    step=self.step,
                    agent_index=a.index,
                    real_text=a.real_text,
                    simulated_text=None if a.source == "real" else a.text,
                    mean_field=self.mean_field,
                    signal=signal,
                    state_text=a.state,
                    prompt_tokens=a.prompt_tokens,
                    completion_tokens=a.completion_tokens,
                    latency_s=a.latency_s,
                    failed=a.failed,
                    warmup=a.source == "real",
                    intervention=a.source == "intervention",
                    prompt_hash=encoded_prompt_hash(stored) if stored is not None else "",
                    policy_prompt=stored,
                    latent_state=a.latent,
                    macro_state=macro,
                )
            )
            if a.text is not None:
                self.window.append(WindowAction(a.text, a.profile.followers_count))
        self.mean_field = next_mean_field
        self.step += 1
        self._agents, self._phase = [], "idle"

    def _account(self, gen: Generation) -> None:
        self.stats.prompt_tokens += gen.prompt_tokens
        self.stats.completion_tokens += gen.completion_tokens
        self.stats.llm_retries += gen.retries
        self.stats.llm_errors += gen.error is not None

    # ---- prompts -----------------------------------------------------------------------------
    def _policy_prompt(self, agent: _Agent) -> Prompt:
        context = self.cfg.context  # what the method shows of the population (mfray.sim.methods)
        language = self.event.language
        latent = {} if self.macro is None else prompt_fields(self.macro.m, agent.latent, language)
        return policy_prompt(
            self.cfg.prompt_style,
            self.event.language,
            self.event.topic_text,
            agent.state,
            mean_field=self.mean_field if context == "mean_field" else "",
            signal=signal_at(self.cfg.signals, self.step),
            recent=select_recent(self.window, self.cfg.recent_k) if context == "recent" else [],
            popular=select_popular(self.window, self.cfg.popular_k, self.cfg.popular_window) if context == "popular" else [],
            **latent,
        )

    def _mean_field_prompt(self) -> Prompt:
        comments = [
            {"text": a.text, "state": a.state if self.cfg.mean_field_states else ""}
            for a in self._agents
            if a.text is not None
        ]
        return mean_field_prompt(
            self.cfg.prompt_style, self.event.language, self.event.topic_text, self.mean_field, comments,
            signal=signal_at(self.cfg.signals, self.step),
            distribution=describe(self.macro.m, self.event.language) if self.macro is not None else None,
        )
