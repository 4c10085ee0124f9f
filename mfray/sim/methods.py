"""The simulation methods, each declared once (SPEC sections 2-3): what the policy sees of the
population besides its own profile, whether a mean-field model summarises each step, and which
LoRA adapters it runs by default. Everything that branches on a method (the config, the rollout,
the adapters training writes, the CLI and the endpoint's choices) reads this table, so a new
method is one entry here plus its own modules.

| method | the policy sees | mean field | adapters (policy, mean field) |
|---|---|---|---|
| state | its profile only | no | base model |
| recent | the last recent_k actions | no | base model |
| popular | the popular_k most-followed authors' actions of the last popular_window | no | base model |
| mf | the mean field (MF-LLM) | yes | base model |
| sft | its profile only | no | sft, base model |
| mf_ibtune | the mean field | yes | ib_policy, ib_mean_field (IB-Tune) |
| ibtune_policy_only | the mean field | yes | ib_policy, base model (ablation: IB-Tune without its mean-field part) |
| ibtune_mf_only | the mean field | yes | base model, ib_mean_field (ablation: IB-Tune without its policy part) |
| mfmdp | the mean field, m_t and its own state drawn from m_t (MF-MDP) | yes | base model (the paper's "w/o LCT-Policy") |
| mfmdp_lct | as mfmdp | yes | lct_policy (LCT-Policy), base model |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Context = Literal["none", "recent", "popular", "mean_field"]


@dataclass(frozen=True)
class MethodSpec:
    """One method. `context`: what of the population the policy prompt shows (none, the recent
    actions, the popular ones, or the mean field); `policy_adapter`, `mean_field_adapter`: the
    adapters it runs unless a config names others (None: the base model, whatever a config
    names); `summary`: one line for people (CLI help, the endpoint's method list)."""

    name: str
    context: Context
    policy_adapter: str | None
    mean_field_adapter: str | None
    summary: str
    macro_state: bool = False  # MF-MDP: an explicit distribution m_t over latent states (mfray.mdp)

    @property
    def uses_mean_field(self) -> bool:
        """Whether a mean-field model summarises the population after each step."""
        return self.context == "mean_field"


REGISTRY: dict[str, MethodSpec] = {spec.name: spec for spec in (
    MethodSpec("state", "none", None, None, "each agent posts from its own profile only"),
    MethodSpec("recent", "recent", None, None, "each agent sees the most recent posts"),
    MethodSpec("popular", "popular", None, None, "each agent sees the most-followed authors' recent posts"),
    MethodSpec("mf", "mean_field", None, None, "MF-LLM: each agent sees a summary of the population (mean field)"),
    MethodSpec("sft", "none", "sft", None, "the policy fine-tuned on real posts (SFT), profile only"),
    MethodSpec("mf_ibtune", "mean_field", "ib_policy", "ib_mean_field",
               "MF-LLM with policy and mean-field models trained by IB-Tune"),
    # The paper's Table 2 ablations of IB-Tune: one of its two trained models, the other untrained.
    MethodSpec("ibtune_policy_only", "mean_field", "ib_policy", None,
               "ablation: MF-LLM with the IB-Tune policy and the untrained mean-field model"),
    MethodSpec("ibtune_mf_only", "mean_field", None, "ib_mean_field",
               "ablation: MF-LLM with the IB-Tune mean-field model and the untrained policy"),
    MethodSpec("mfmdp", "mean_field", None, None,
               "MF-MDP: the mean field plus an attitude distribution m_t that f_psi carries forward; each agent "
               "draws its own state from it", macro_state=True),
    MethodSpec("mfmdp_lct", "mean_field", "lct_policy", None,
               "MF-MDP with its policy trained by LCT-Policy (lookahead against future attitude histograms)",
               macro_state=True),
)}
METHODS: tuple[str, ...] = tuple(REGISTRY)
Method = Literal[METHODS]  # the config field's type: one of the registry's names
ADAPTER_NAMES: tuple[str, ...] = tuple(dict.fromkeys(
    name for spec in REGISTRY.values() for name in (spec.policy_adapter, spec.mean_field_adapter) if name))


def method_spec(name: str) -> MethodSpec:
    """The registry's entry for `name`; KeyError listing the methods for an unknown one."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; methods: {', '.join(METHODS)}") from None
