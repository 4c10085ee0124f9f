"""The paper's findings read from intervals over events: verdicts worked by hand."""

from __future__ import annotations

import math

import pytest

from mfray.eval.findings import CONTRADICTED, HOLDS, UNRESOLVED, findings, findings_markdown, verdict


def test_verdicts_by_the_side_of_zero_the_interval_lies_on():
    assert verdict(-0.3, -0.1, lower_is_better=True) == HOLDS  # KL falls on every resample
    assert verdict(0.1, 0.3, lower_is_better=True) == CONTRADICTED
    assert verdict(-0.1, 0.2, lower_is_better=True) == UNRESOLVED
    assert verdict(0.1, 0.3, lower_is_better=False) == HOLDS  # macro-F1 rises
    assert verdict(math.nan, math.nan, lower_is_better=True) == UNRESOLVED


def rows_for(method, per_event):
    return [{"event_id": e, "method": method, "seed": 0, "dimension": "attitude", "kl": v, "wasserstein": v, "dtw": v}
            for e, v in per_event.items()]


def test_findings_for_the_methods_that_ran():
    # mf half of state's KL on both events: -50% on every resample (holds); mf_ibtune above mf
    # on one event and below on the other: (1.5 + 0.25) / 2 = 0.875 against (1 + 0.5) / 2 = 0.75
    # -> +16.7%, resamples (1.5 - 1) / 1 = +50% and (0.25 - 0.5) / 0.5 = -50%: not resolved.
    rows = (rows_for("state", {"A": 2.0, "B": 1.0}) + rows_for("mf", {"A": 1.0, "B": 0.5})
            + rows_for("mf_ibtune", {"A": 1.5, "B": 0.25}))
    found = findings(rows, metrics=("kl",), draws=2000)
    assert [(f["method"], f["baseline"], f["verdict"]) for f in found] == [("mf", "state", HOLDS), ("mf_ibtune", "mf", UNRESOLVED)]
    assert (found[0]["change"], found[0]["low"], found[0]["high"]) == pytest.approx((-0.5, -0.5, -0.5))
    assert (found[1]["change"], found[1]["low"], found[1]["high"]) == pytest.approx((0.875 / 0.75 - 1, -0.5, 0.5))
    md = findings_markdown(found, "SmolLM2-135M-Instruct")
    assert "| mf vs state: MF-LLM" in md and "| kl | 2 | -50.0% [-50.0%, -50.0%] | **holds** |" in md
    assert '- With SmolLM2-135M-Instruct, "IB-Tune brings MF-LLM closer still" is not resolved here' in md
    assert "rest on 2 events only" in md
