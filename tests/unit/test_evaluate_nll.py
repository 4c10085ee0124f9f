"""NLL bookkeeping without a model: the per-trajectory numbers from scored totals, the per-event
table, the note that says why NLL is missing, and the prompt the rollout records for it."""

from __future__ import annotations

import math

import pyarrow.parquet as pq
import pytest

from mfray.eval.evaluate import LOWER_IS_BETTER, summarise_events
from mfray.eval.metrics import nll, nll_from_sums
from mfray.eval.nll import nll_note, trajectory_nll
from mfray.eval.report import plot_radar, write_nll_table
from mfray.llm.base import Generation
from mfray.prompts.render import prompt_hash
from mfray.sim.config import Intervention, RolloutConfig
from mfray.sim.rollout import EventRollout
from mfray.sim.trajectory import decode_prompt, read_trajectory, write_trajectory
from mfray.types import Event, Post, Profile


def test_trajectory_nll_by_hand():
    # Agents: scored [-1, -2] (sum -3, 2 tokens); unscored (no prompt); scored [-3] (sum -3, 1
    # token); scored empty action (0 tokens, in neither mean).
    # Per token: 6 / 3 = 2. Per action: (3 + 3) / 2 = 3.
    out = trajectory_nll([(-3.0, 2), None, (-3.0, 1), (0.0, 0)])
    assert out["nll_token"] == pytest.approx(2.0) and out["nll_action"] == pytest.approx(3.0)
    assert out["nll_actions"] == 2 and out["nll_unscored"] == 1
    assert nll_from_sums([-3.0, -3.0, 0.0], [2, 1, 0]) == nll([[-1.0, -2.0], [-3.0], []])


def test_trajectory_nll_with_nothing_scored_is_missing_not_zero():
    out = trajectory_nll([None, None])
    assert math.isnan(out["nll_token"]) and math.isnan(out["nll_action"])
    assert out["nll_actions"] == 0 and out["nll_unscored"] == 2


def nll_rows(values: dict[tuple[str, str, int], float]) -> list[dict]:
    """Dimension rows as both paths emit them: the trajectory's NLL repeated on each."""
    rows = []
    for (event, method, seed), v in values.items():
        for dim in ("rumor", "sentiment"):
            rows.append({"event_id": event, "method": method, "seed": seed, "dimension": dim,
                         "nll_token": v, "nll_action": 10 * v, "nll_actions": 0 if math.isnan(v) else 5,
                         "nll_unscored": 5 if math.isnan(v) else 0})
    return rows


def test_summarise_events_means_over_seeds_then_events_and_change_against_state():
    # state: e1 seeds 2.0, 4.0 -> 3.0; e2 -> 1.0; mean 2.0.  mf: e1 1.5, e2 NaN (left out) -> 1.5.
    # vs state: (1.5 - 2) / 2 = -25% (lower NLL: the policy finds the real actions likelier).
    rows = nll_rows({("e1", "state", 0): 2.0, ("e1", "state", 1): 4.0, ("e2", "state", 0): 1.0,
                     ("e1", "mf", 0): 1.5, ("e2", "mf", 0): float("nan")})
    methods, events, table = summarise_events(rows, "nll_token")
    assert methods == ["mf", "state"] and events == ["e1", "e2"]
    assert table["state"]["e1"] == pytest.approx(3.0) and table["state"]["mean"] == pytest.approx(2.0)
    assert math.isnan(table["mf"]["e2"]) and table["mf"]["mean"] == pytest.approx(1.5)
    assert table["mf"]["vs_state"] == pytest.approx(-0.25) and table["state"]["vs_state"] == 0
    assert LOWER_IS_BETTER["nll_token"] and LOWER_IS_BETTER["nll_action"]


def test_nll_table_says_lower_is_better_and_why_values_are_missing(tmp_path):
    rows = nll_rows({("e1", "state", 0): 2.0, ("e1", "mf", 0): float("nan")})
    md = write_nll_table(rows, tmp_path)
    assert "NLL per token of the real action (nats) (lower is better)" in md
    assert "| state | 2.0000 | 2.0000 | +0.0% |" in md and "| mf | - | - | - |" in md
    assert "5 evaluated actions have no recorded policy prompt" in md and "1 of 2 trajectories" in md
    assert (tmp_path / "nll.csv").read_text().startswith("metric,method,column,value")


def test_nll_note_when_off_and_when_complete():
    off = [{"event_id": "e", "method": "mf", "seed": 0, "dimension": "rumor", "kl": 0.1}]
    assert "no policy model configured" in nll_note(off)
    assert nll_note(nll_rows({("e1", "state", 0): 2.0})) == ""


def test_radar_refuses_nll(tmp_path):
    with pytest.raises(ValueError, match="no dimensions"):
        plot_radar(nll_rows({("e1", "state", 0): 2.0}), "nll_token", tmp_path / "r.png")


def make_event(n: int = 12) -> Event:
    def post(i: int) -> Post:
        return Post(post_id=str(i), t=i, text=f"real{i}", raw_text=f"real{i}", is_repost=False, profile=Profile(user_id=str(i)))
    return Event("ev1", "canonical", "en", post(-1), tuple(post(i) for i in range(n)))


def test_rollout_records_the_policy_prompt_it_sent_and_old_files_read_as_missing(tmp_path):
    cfg = RolloutConfig(method="mf", agents_per_step=4, sim_start=4, horizon=12,
                        interventions=[Intervention(step=2, posts=["OFFICIAL: false"])])
    rollout = EventRollout(make_event(), cfg, seed=0)
    sent = {}
    while (req := rollout.next_request()) is not None:
        if req.role == "policy":
            sent.update({prompt_hash(p): p for p in req.prompts})
        rollout.submit([Generation(text="x", prompt_tokens=1, completion_tokens=1, finish_reason="stop") for _ in req.prompts])
    path = write_trajectory(rollout.drain(), tmp_path / "t.parquet")
    records = read_trajectory(path)
    for r in records:
        if r.warmup or r.intervention:
            assert r.policy_prompt is None and r.prompt_hash == ""
        else:  # the stored JSON is the very prompt sent, and hashes to the recorded prompt_hash
            assert decode_prompt(r.policy_prompt) == sent[r.prompt_hash]
    assert sum(r.intervention for r in records) == 1 and sum(r.policy_prompt is not None for r in records) == 7
    # A file written before the column existed: read back with policy_prompt None, not an error.
    pq.write_table(pq.read_table(path).drop(["policy_prompt"]), tmp_path / "old.parquet")
    assert all(r.policy_prompt is None for r in read_trajectory(tmp_path / "old.parquet"))
