"""The rollout's typed config (SPEC sections 1-3); every default is the SPEC's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field, model_serializer, model_validator

from mfray.config import EndpointConfig, ModelConfig, SamplingConfig, StrictModel

from mfray.sim.methods import METHODS, Method, method_spec  # noqa: F401 - re-exported: the names configs use


class Intervention(StrictModel):
    """Posts inserted as the actions of chosen agents at a chosen step (SPEC section 3). `agents`
    are offsets within the step (default: the first len(posts) agents), so post k becomes the
    action of agent step * agents_per_step + agents[k]. An intervention names each agent once;
    which agents a rollout lets it name is RolloutConfig's rule (`intervention_problems`)."""

    step: int = Field(ge=0)
    posts: list[str] = Field(min_length=1)
    agents: list[int] | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.agents is not None and len(self.agents) != len(self.posts):
            raise ValueError(f"intervention at step {self.step}: {len(self.posts)} posts but {len(self.agents)} agents")
        twice = sorted({a for a in self.offsets if self.offsets.count(a) > 1})
        if twice:
            raise ValueError(f"intervention at step {self.step} names agent offset(s) {twice} more than once "
                             f"(agents {self.agents}): give each agent one post")
        return self

    @property
    def offsets(self) -> list[int]:
        """The agent offsets the posts go to, in post order."""
        return list(self.agents) if self.agents is not None else list(range(len(self.posts)))


def intervention_problems(interventions: Sequence[Intervention], agents_per_step: int, sim_start: int, horizon: int) -> list[str]:
    """Every reason `interventions` cannot be applied by a rollout of this shape (empty: none).

    Post k of an intervention goes to agent j = step * agents_per_step + offset. The rollout
    generates exactly the agents sim_start <= j < horizon (steps of agents_per_step agents, the
    last one cut at the horizon), so an intervention may name only those:
    - an offset outside 0..agents_per_step-1 is no agent of the step;
    - j >= horizon is never simulated (this includes the missing tail of a last partial step);
    - j < sim_start is a warm-up agent: it acts with its real action, the observed history the
      simulation starts from (SPEC section 1), which an inserted post would silently rewrite.
      This holds whether or not the event records agent j, so that one config is valid or not
      for every event of a sweep alike;
    - two interventions at the same step naming the same offset would overwrite one another.
    """
    problems = []
    last = horizon - 1
    claimed: dict[tuple[int, int], int] = {}  # (step, offset) -> index of the first intervention naming it
    for i, iv in enumerate(interventions):
        where = f"interventions[{i}] (step {iv.step})"
        for offset in iv.offsets:
            j = iv.step * agents_per_step + offset
            if not 0 <= offset < agents_per_step:
                problems.append(f"{where}: agent offset {offset} outside 0..{agents_per_step - 1} "
                                f"(agents_per_step {agents_per_step})")
            elif j >= horizon:
                problems.append(f"{where}: agent offset {offset} is agent {j}, beyond the horizon ({horizon}: the last "
                                f"simulated agent is {last}, step {last // agents_per_step} offset {last % agents_per_step}); "
                                f"raise horizon or name an earlier agent")
            elif j < sim_start:
                problems.append(f"{where}: agent offset {offset} is agent {j}, a warm-up agent (before sim_start "
                                f"{sim_start}) that acts with its real action; the first simulated agent is {sim_start}, "
                                f"step {sim_start // agents_per_step} offset {sim_start % agents_per_step}: name it or a "
                                f"later one, or lower sim_start")
            elif (iv.step, offset) in claimed:
                first = claimed[(iv.step, offset)]
                problems.append(f"interventions[{first}] (step {interventions[first].step}) and {where} both insert a post "
                                f"for agent offset {offset} (agent {j}): merge them into one intervention or name "
                                f"another agent")
            else:
                claimed[(iv.step, offset)] = i
    return problems


class Signal(StrictModel):
    """An exogenous signal c_t: from `step` on, every prompt shows `text` (until a later one)."""

    step: int = Field(ge=0)
    text: str = Field(min_length=1)


# The repetition penalty each prompt style samples with unless a config gives one. chat: SPEC
# section 2's 1.2. timeline: 1.0, since the prompt holds the headline a post mostly repeats and the
# aspect labels a summary repeats, and the penalty counts prompt tokens (as HF and vLLM do): at 1.2
# reposts come out garbled and summaries stop after one line (benchmarks/post_style.py).
STYLE_REPETITION_PENALTY = {"chat": 1.2, "timeline": 1.0}


class Reselection(StrictModel):
    """Simulation-time reselection, this project's optional extension of MF-MDP (SPEC section 6;
    off by default, reported apart from the paper's method): `candidates` posts per agent (1:
    off), each weighted by how little its state moves f_psi's K-step forecast,
    softmax(-beta * sum_k gamma^(k-1) KL(forecast_k || candidate_k)), and one drawn by weight
    (mfray.mdp.reselect)."""

    candidates: int = Field(1, ge=1, le=16)
    k: int = Field(8, ge=1)
    beta: float = Field(1.0, ge=0)
    gamma: float = Field(0.9, gt=0, le=1)

    @property
    def on(self) -> bool:
        return self.candidates > 1


class MdpConfig(StrictModel):
    """MF-MDP's settings (SPEC section 6), read only by methods with a macro state (mfmdp).
    `transition`: f_psi's checkpoint (mfray.mdp.transition_train.save_checkpoint); None runs the
    persistence baseline m_t = m_{t-1}, which results must name as such. `encoder_dim`: the
    hashing encoder's width, the one f_psi was trained with. `annotator`: labels the real warm-up
    actions' attitudes (m_0 and the warm-up m*_t)."""

    transition: str | None = None
    encoder_dim: int = Field(256, ge=8)
    annotator: Literal["offline", "learned", "hybrid"] = "offline"
    window: int = Field(4096, ge=1, description="steps of macro history kept (f_psi's window)")
    reselect: Reselection = Reselection()

    @model_serializer(mode="wrap")
    def _reselection_only_when_on(self, handler):
        """Reselection off leaves it out of the dump: identities of runs made before it existed
        (and resumable runs in progress) stay valid."""
        data = handler(self)
        if not self.reselect.on:
            data.pop("reselect", None)
        return data


class RolloutConfig(StrictModel):
    """How one event is simulated. Interventions may name only agents the rollout generates
    (sim_start <= agent < horizon), each at most once over all interventions; any other plan is
    refused with every problem named (`intervention_problems`)."""

    method: Method = "mf"
    agents_per_step: int = Field(16, ge=1)
    sim_start: int = Field(48, ge=0, description="agents before this index act with their real actions")
    horizon: int = Field(300, ge=1, description="number of agents simulated (past the record: sampled states)")
    recent_k: int = Field(5, ge=1)
    popular_k: int = Field(5, ge=1)
    popular_window: int = Field(30, ge=1)
    mean_field_states: bool = False  # also show each action's author state to the mean-field model
    prompt_style: Literal["chat", "timeline"] = Field(
        "timeline",
        description="how the policy and mean-field prompts are written (mfray.prompts.render): 'chat', an "
        "instruction in a chat message; 'timeline', raw text the model continues: fixed example posts of "
        "training events, the story, its context, then an open '@user:' post line or an open 'Stance:' summary "
        "(benchmarks/post_style.py measures both). It also sets the repetition penalty of `policy` and "
        "`mean_field` where they do not give one: STYLE_REPETITION_PENALTY",
    )
    retries: int = Field(2, ge=0, description="extra attempts for a failed or empty generation")
    policy: SamplingConfig = SamplingConfig()
    mean_field: SamplingConfig = SamplingConfig(temperature=0.1, max_new_tokens=200, first_line=False)
    policy_adapter: str | None = None  # None: the method's default (see adapters())
    mean_field_adapter: str | None = None
    interventions: list[Intervention] = Field(default_factory=list)
    signals: list[Signal] = Field(default_factory=list)
    mdp: MdpConfig = MdpConfig()

    @model_serializer(mode="wrap")
    def _mdp_only_where_used(self, handler):
        """A method without a macro state leaves `mdp` out of its dump, so its run identities and
        rollout fingerprints are those it had before MF-MDP existed."""
        data = handler(self)
        if not method_spec(self.method).macro_state:
            data.pop("mdp", None)
        return data

    @model_validator(mode="before")
    @classmethod
    def _style_repetition_penalty(cls, data):
        """Fill the repetition penalty of `policy` and `mean_field` from the prompt style where they
        leave it out (absent, or a mapping without it); a value given anywhere is kept as given."""
        if not isinstance(data, dict):
            return data
        penalty = STYLE_REPETITION_PENALTY.get(data.get("prompt_style", cls.model_fields["prompt_style"].default))
        if penalty is None:  # an unknown style: the field's own validation names it
            return data
        data = dict(data)
        for key in ("policy", "mean_field"):
            value = data.get(key, cls.model_fields[key].default.model_dump(exclude={"repetition_penalty"}))
            if isinstance(value, dict) and "repetition_penalty" not in value:
                data[key] = {**value, "repetition_penalty": penalty}
        return data

    @model_validator(mode="after")
    def _check(self):
        if self.popular_window < self.popular_k:
            raise ValueError(f"popular_window ({self.popular_window}) < popular_k ({self.popular_k})")
        steps = [s.step for s in self.signals]
        if steps != sorted(set(steps)):
            raise ValueError(f"signal steps must be strictly increasing, got {steps}")
        problems = intervention_problems(self.interventions, self.agents_per_step, self.sim_start, self.horizon)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def uses_mean_field(self) -> bool:
        return method_spec(self.method).uses_mean_field

    @property
    def context(self) -> str:
        """What the policy prompt shows of the population (mfray.sim.methods)."""
        return method_spec(self.method).context

    def adapters(self) -> tuple[str | None, str | None]:
        """(policy adapter, mean-field adapter) for the method: a method with adapters in the
        registry (sft, mf_ibtune) uses those that training writes under these names unless the
        config names others; the other methods run the base model whatever the config names."""
        spec = method_spec(self.method)
        return (spec.policy_adapter and (self.policy_adapter or spec.policy_adapter),
                spec.mean_field_adapter and (self.mean_field_adapter or spec.mean_field_adapter))


class SimulateConfig(StrictModel):
    """`mfray simulate` / jobs/simulate.py: events x methods x seeds, written as Parquet."""

    events: list[str] = Field(default_factory=list, description="event files or directories")
    methods: list[Method] = Field(default_factory=lambda: ["mf"], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    out: str = "runs/simulate"
    concurrency: int = Field(4, ge=1, description="events in flight at once")
    # A finished run made under another config/model/version is refused unless this is set
    # (then it is redone); runs made like this one are skipped either way.
    overwrite: bool = False
    model: ModelConfig = ModelConfig()
    endpoint: EndpointConfig | None = None
    rollout: RolloutConfig = RolloutConfig()
