"""The method registry (mfray.sim.methods): each method declared once, and the config, the rollout's
prompts and the adapters all read it."""

from __future__ import annotations

import pytest

from mfray.sim.config import RolloutConfig
from mfray.sim.methods import ADAPTER_NAMES, METHODS, REGISTRY, method_spec


def test_the_table_as_the_spec_gives_it():
    table = {m: (s.context, s.uses_mean_field, s.policy_adapter, s.mean_field_adapter, s.macro_state)
             for m, s in REGISTRY.items()}
    assert table == {
        "state": ("none", False, None, None, False),
        "recent": ("recent", False, None, None, False),
        "popular": ("popular", False, None, None, False),
        "mf": ("mean_field", True, None, None, False),
        "sft": ("none", False, "sft", None, False),
        "mf_ibtune": ("mean_field", True, "ib_policy", "ib_mean_field", False),
        "ibtune_policy_only": ("mean_field", True, "ib_policy", None, False),
        "ibtune_mf_only": ("mean_field", True, None, "ib_mean_field", False),
        "mfmdp": ("mean_field", True, None, None, True),
        "mfmdp_lct": ("mean_field", True, "lct_policy", None, True),
    }
    assert METHODS == tuple(table) and ADAPTER_NAMES == ("sft", "ib_policy", "ib_mean_field", "lct_policy")


def test_the_config_reads_the_registry():
    for name, spec in REGISTRY.items():
        cfg = RolloutConfig(method=name, policy_adapter="mine", mean_field_adapter="mine_mf")
        assert (cfg.uses_mean_field, cfg.context) == (spec.uses_mean_field, spec.context)
        # A config's adapter names replace a method's own; methods without adapters ignore them.
        assert cfg.adapters() == ("mine" if spec.policy_adapter else None, "mine_mf" if spec.mean_field_adapter else None)
    with pytest.raises(ValueError, match="Input should be 'state'"):
        RolloutConfig.model_validate({"method": "mdp"})
    with pytest.raises(KeyError, match="methods: state, recent, popular, mf, sft, mf_ibtune, ibtune_policy_only, ibtune_mf_only, mfmdp, mfmdp_lct"):
        method_spec("mdp")
