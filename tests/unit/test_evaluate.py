"""Per-trajectory metrics and their summary tables, on tiny hand-made annotations."""

from __future__ import annotations

import math

import pytest

from mfray.eval.annotate import Annotation
from mfray.eval.evaluate import EvalRange, evaluated, summarise, trajectory_metrics
from mfray.eval.labels import DIMENSIONS
from mfray.types import StepRecord


def ann(**labels) -> Annotation:
    full = {d: labels.get(d, DIMENSIONS[d][0]) for d in DIMENSIONS}
    return Annotation(labels=full)


def test_trajectory_metrics_by_hand():
    # Two steps of two agents. behavior real: [comment, share | share, share];
    # sim: [comment, comment | share, <failed>].
    # Step 0: p = [.5, .5], q = [1, 0]: W = 0.5 (labels at 0 and 1).
    # Step 1: p = [0, 1], q = [0, 1] (the failed agent is left out): W = 0. Mean W = 0.25.
    # F1 over the 3 pairs (comment,comment) (share,comment) (share,share):
    #   comment: tp 1 fp 1 fn 0 -> 2/3; share: tp 1 fp 0 fn 1 -> 2/3; macro 2/3, micro 2/3.
    real = [ann(behavior="comment"), ann(behavior="share"), ann(behavior="share"), ann(behavior="share")]
    sim = [ann(behavior="comment"), ann(behavior="comment"), ann(behavior="share"), None]
    rows = {r["dimension"]: r for r in trajectory_metrics([0, 0, 1, 1], real, sim)}
    b = rows["behavior"]
    assert b["wasserstein"] == pytest.approx(0.25)
    assert b["macro_f1"] == pytest.approx(2 / 3) and b["micro_f1"] == pytest.approx(2 / 3)
    assert b["agents"] == 4 and b["missing_sim"] == 1 and b["missing_real"] == 0
    # DTW between [[.5,.5],[0,1]] and [[1,0],[0,1]]: diagonal costs TV .5 then 0 -> 0.5 / 2 cells.
    assert b["dtw"] == pytest.approx(0.25)
    # Every other dimension is identical on both sides: zero divergence, perfect F1.
    assert rows["rumor"]["wasserstein"] == 0 and rows["rumor"]["macro_f1"] == 1.0
    assert set(rows) == set(DIMENSIONS)


def test_summarise_means_and_change_against_state():
    rows = []
    for method, kl in [("state", 1.0), ("mf", 0.5)]:
        for dim in DIMENSIONS:
            rows.append({"method": method, "dimension": dim, "kl": kl if dim != "intent" else float("nan")})
    methods, table = summarise(rows, "kl")
    assert methods == ["mf", "state"]
    assert table["mf"]["mean"] == pytest.approx(0.5) and math.isnan(table["mf"]["intent"])
    assert table["mf"]["vs_state"] == pytest.approx(-0.5) and table["state"]["vs_state"] == 0


def test_evaluated_range_skips_warmup_and_unrecorded_agents():
    def rec(j, warm=False, real="x"):
        return StepRecord(event_id="e", method="mf", seed=0, language="en", topic="t", step=j // 4, agent_index=j,
                          real_text=real, simulated_text="y", mean_field="", signal=None, state_text="", warmup=warm)
    records = [rec(0, warm=True), rec(50), rec(51, real=None), rec(299), rec(300)]
    assert [r.agent_index for r in evaluated(records, EvalRange(0, 300))] == [50, 299]
