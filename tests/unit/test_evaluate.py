"""Per-trajectory metrics and their summary tables, on tiny hand-made annotations."""

from __future__ import annotations

import csv
import math

import pytest

from mfray.eval.annotate import Annotation
from mfray.eval.config import EvaluateConfig
from mfray.eval.evaluate import EvalRange, evaluated, generation_failures, method_failures, summarise, trajectory_metrics
from mfray.eval.labels import DIMENSIONS
from mfray.eval.report import write_metric_table, write_summary
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


# ---- generation failures next to every metric -------------------------------------------------

def test_generation_failures_by_hand():
    # Five evaluated agents: 1 and 3 failed, 2 is an inserted intervention post.
    # simulated = 5 - 1 inserted = 4; failed = 2 (agents 1, 3); rate = 2 / 4 = 0.5.
    out = generation_failures([False, True, False, True, False], [False, False, True, False, False])
    assert out == {"simulated": 4, "failed": 2, "failure_rate": 0.5}
    # Nothing simulated (all inserted): the rate is unknown, not 0.
    nothing = generation_failures([False], [True])
    assert (nothing["simulated"], nothing["failed"]) == (0, 0) and math.isnan(nothing["failure_rate"])
    with pytest.raises(ValueError, match="3 failed flags but 2 inserted flags"):
        generation_failures([False] * 3, [False] * 2)


def failure_rows(counts: dict[tuple[str, str, int], tuple[int, int]], kl: float = 0.1) -> list[dict]:
    """Dimension rows as both paths emit them: the trajectory's counts repeated on each."""
    rows = []
    for (event, method, seed), (simulated, failed) in counts.items():
        for dim in DIMENSIONS:
            rows.append({"event_id": event, "method": method, "seed": seed, "dimension": dim, "kl": kl,
                         "simulated": simulated, "failed": failed, "failure_rate": failed / simulated})
    return rows


def test_method_failures_pool_trajectories_once_each():
    # mf: e1 10 simulated 3 failed, e2 30 simulated 1 failed -> pooled 4 / 40 = 10% (the mean of
    # the two rates, (30% + 3.3%) / 2 = 16.7%, would weigh the short trajectory like the long one).
    # Each trajectory is repeated on 8 dimension rows and still counts once. state: 0 / 20 = 0.
    rows = failure_rows({("e1", "mf", 0): (10, 3), ("e2", "mf", 0): (30, 1), ("e1", "state", 0): (20, 0)})
    out = method_failures(rows)
    assert out["mf"] == {"simulated": 40, "failed": 4, "failure_rate": pytest.approx(0.1)}
    assert out["state"] == {"simulated": 20, "failed": 0, "failure_rate": 0.0}
    _, table = summarise(rows, "kl")
    assert table["mf"]["failure_rate"] == pytest.approx(0.1) and table["state"]["failure_rate"] == 0.0
    # Rows written before the counts existed: the rate is unknown, never 0.
    assert math.isnan(summarise([{"method": "mf", "dimension": "rumor", "kl": 0.1}], "kl")[1]["mf"]["failure_rate"])


def test_metric_tables_show_and_flag_failure_rates(tmp_path):
    # mf fails 4 / 40 = 10% > 5%: flagged in the Markdown, the CSV and the line under the table.
    rows = failure_rows({("e1", "mf", 0): (10, 3), ("e2", "mf", 0): (30, 1), ("e1", "state", 0): (20, 0)})
    md = write_metric_table(rows, "kl", tmp_path, max_failure_rate=0.05)
    assert md.splitlines()[2].endswith("| mean | vs_state | failure rate |")
    assert "| mf |" in md and md.count("⚠") == 2  # the mf cell and the note
    assert next(ln for ln in md.splitlines() if ln.startswith("| mf ")).endswith("| 10.0% ⚠ |")
    assert next(ln for ln in md.splitlines() if ln.startswith("| state ")).endswith("| 0.0% |")
    assert "failure rate above max_failure_rate 5.0%: mf (10.0%)" in md and "computed on fewer agents" in md
    with (tmp_path / "kl.csv").open() as fh:
        table = {r["method"]: r for r in csv.DictReader(fh)}
    assert float(table["mf"]["failure_rate"]) == pytest.approx(0.1) and table["mf"]["failure_over_max"] == "True"
    assert table["state"]["failure_over_max"] == "False"
    # At a 10% limit, 10% is not above it: no flag, no note.
    assert "⚠" not in write_metric_table(rows, "kl", tmp_path, max_failure_rate=0.1)


def test_summary_and_nll_tables_carry_the_rates(tmp_path):
    rows = failure_rows({("e1", "mf", 0): (10, 3), ("e1", "state", 0): (20, 0)})
    for r in rows:
        r.update({m: 0.1 for m in ("wasserstein", "dtw", "macro_f1", "micro_f1")})
        r.update({"nll_token": 2.0, "nll_action": 20.0, "nll_actions": 5, "nll_unscored": 0})
    write_summary(rows, tmp_path, max_failure_rate=0.2)
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    # The head table: mf 3 / 10 = 30% > 20%; state 0 / 20.
    assert "| mf | 10 | 3 | 30.0% ⚠ |" in summary and "| state | 20 | 0 | 0.0% |" in summary
    # Every metric table (5 per-dimension, 2 NLL) flags mf, and says so under it; plus the head table.
    assert summary.count("| 30.0% ⚠ |") == 1 + 5 + 2 and summary.count("max_failure_rate 20.0%: mf (30.0%)") == 1 + 5 + 2
    nll_csv = (tmp_path / "nll.csv").read_text()
    assert "nll_token,mf,failure_rate,0.3" in nll_csv and "nll_token,mf,failure_over_max,True" in nll_csv
    raw = (tmp_path / "metrics_raw.csv").read_text().splitlines()[0].split(",")
    assert {"simulated", "failed", "failure_rate"} <= set(raw)


def test_summary_annotator_and_noise_floor_section(tmp_path):
    # KL means over dimensions: mf 0.3, state 0.1 (every dimension row). Floor rows for two
    # dimensions: KL (0.2 + 0.4) / 2 = 0.3, Wasserstein (0.1 + 0.3) / 2 = 0.2, macro-F1 (0.6 + 0.8) / 2 = 0.7.
    rows = failure_rows({("e1", "mf", 0): (10, 0), ("e1", "state", 0): (10, 0)})
    for r in rows:
        r.update({"kl": 0.3 if r["method"] == "mf" else 0.1, "wasserstein": 0.5, "dtw": 0.1, "macro_f1": 0.4,
                  "micro_f1": 0.4})
    floor = [{"dimension": "rumor", "kl": 0.2, "wasserstein": 0.1, "macro_f1": 0.6, "events": 2},
             {"dimension": "stance", "kl": 0.4, "wasserstein": 0.3, "macro_f1": 0.8, "events": 1}]
    write_summary(rows, tmp_path, floor=floor, annotator="llm:m", agreement={})
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "## Annotator and noise floor" in summary and "Annotator: **llm:m**" in summary
    assert "compare methods against it, not against 0" in summary and "half-size windows" in summary
    assert "| rumor | 0.2000 | 0.1000 | 0.6000 | 2 |" in summary and "| stance | 0.4000 | 0.3000 | 0.8000 | 1 |" in summary
    assert "| **mean** | **0.3000** | **0.2000** | **0.7000** | |" in summary
    assert "- KL divergence (lower is better): mf 0.3000, state 0.1000; floor 0.3000" in summary
    assert "- Wasserstein distance (lower is better): mf 0.5000, state 0.5000; floor 0.2000" in summary
    assert "- Macro-F1 (higher is better): mf 0.4000, state 0.4000; floor 0.7000" in summary
    assert "**Not measured**: llm:m" in summary and "- weibo_train: not measured: run `" in summary
    # The closing section: KL (0.3 - 0.1) / 0.1 = +200% on the one event, every resample alike.
    assert "## Changes over events, with 95% bootstrap intervals" in summary
    assert "| mf vs state | 1 | " + " | ".join(["+200.0% [+200.0%, +200.0%]"] * 9) + " |" in summary
    with (tmp_path / "intervals.csv").open() as fh:
        means = [r for r in csv.DictReader(fh) if r["dimension"] == "mean"]
    assert [(r["metric"], r["method"], r["baseline"], float(r["change"])) for r in means][:2] == [
        ("kl", "mf", "state", pytest.approx(2.0)), ("wasserstein", "mf", "state", 0.0)]
    with (tmp_path / "noise_floor.csv").open() as fh:
        assert list(csv.DictReader(fh)) == [
            {"dimension": "rumor", "kl": "0.2", "wasserstein": "0.1", "macro_f1": "0.6", "events": "2"},
            {"dimension": "stance", "kl": "0.4", "wasserstein": "0.3", "macro_f1": "0.8", "events": "1"}]
    write_summary(rows, tmp_path)  # no floor: no section, no stale CSV
    assert not (tmp_path / "noise_floor.csv").exists()
    assert "Annotator and noise floor" not in (tmp_path / "summary.md").read_text(encoding="utf-8")


def test_noise_seeds_config_field():
    assert EvaluateConfig(trajectories="t").noise_seeds == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="noise_seeds is empty"):
        EvaluateConfig(trajectories="t", noise_seeds=[])
    with pytest.raises(ValueError, match="repeats a seed"):
        EvaluateConfig(trajectories="t", noise_seeds=[1, 1])


def test_max_failure_rate_is_a_checked_config_field():
    assert EvaluateConfig(trajectories="t").max_failure_rate == 0.05
    with pytest.raises(ValueError, match="max_failure_rate"):
        EvaluateConfig(trajectories="t", max_failure_rate=1.5)


def test_evaluate_reports_failure_rates_of_its_trajectories(tmp_path):
    # One event, agents 0..11, steps of 4, warm-up 0..3, evaluated 4..11 (8 agents).
    # mf: agents 5 and 9 failed, agent 8 an inserted post -> 2 / 7 = 28.6%. state: 0 / 8.
    from mfray.eval.run import evaluate
    from tests.unit.test_run_store import publish_records

    texts = ["This is a hoax", "I am so angry about this", "Really? Source?", "Police confirmed it"] * 3
    for method, failed, inserted in (("mf", {5, 9}, {8}), ("state", set(), set())):
        records = [StepRecord(event_id="e", method=method, seed=0, language="en", topic="A claim", step=j // 4,
                              agent_index=j, real_text=texts[j],
                              simulated_text=None if j < 4 or j in failed else texts[(j + 1) % 12],
                              mean_field="", signal=None, state_text="", warmup=j < 4, failed=j in failed,
                              intervention=j in inserted) for j in range(12)]
        publish_records(tmp_path / "traj", records)
    cfg = EvaluateConfig(trajectories=str(tmp_path / "traj"), out=str(tmp_path / "out"), eval_start=0, eval_end=12,
                         nll_model=None, max_failure_rate=0.05)
    rows = {r["method"]: r for r in evaluate(cfg)}
    assert (rows["mf"]["simulated"], rows["mf"]["failed"]) == (7, 2) and rows["mf"]["failure_rate"] == pytest.approx(2 / 7)
    assert (rows["state"]["simulated"], rows["state"]["failed"], rows["state"]["failure_rate"]) == (8, 0, 0.0)
    kl = (tmp_path / "out" / "kl.md").read_text(encoding="utf-8")
    assert "| 28.6% ⚠ |" in kl and "max_failure_rate 5.0%: mf (28.6%)" in kl
    # The annotator and noise floor section: the floor of the real posts (3 windows of 4 posts: halves
    # of 2) and the default annotator's recorded agreement (mfray/eval/gold/agreement.json).
    summary = (tmp_path / "out" / "summary.md").read_text(encoding="utf-8")
    assert "## Annotator and noise floor" in summary and "Annotator: **hybrid-v2**" in summary
    assert "- KL divergence (lower is better): mf " in summary and "#### twitter_third (432 posts" in summary
    with (tmp_path / "out" / "noise_floor.csv").open() as fh:
        floor = list(csv.DictReader(fh))
    assert [r["dimension"] for r in floor] == list(DIMENSIONS) and all(r["events"] == "1" for r in floor)
    assert all(math.isfinite(float(r[m])) for r in floor for m in ("kl", "wasserstein", "macro_f1"))


# ---- realism in the report --------------------------------------------------------------------

def test_evaluate_writes_realism_like_the_ray_driver(tmp_path, data_dir):
    # Two real Twitter events, agents 0..39 (eval 8..39, warm-up 0..7). "narrate" posts third-person
    # narration on even agents and real tweets of later agents on odd ones, with a mean field;
    # "state" reposts later agents' real tweets and fails on agent 9.
    from mfray.data import load_events
    from mfray.eval.inputs import evaluable_runs
    from mfray.eval.report import write_realism
    from mfray.eval.run import evaluate
    from mfray.ray.eval_stages import driver_realism
    from tests.unit.test_run_store import publish_records

    events, _ = load_events([data_dir / "twitter_rumdect/E102.json", data_dir / "twitter_rumdect/E117.json"])
    for event in events:
        texts = [p.text for p in event.responses]
        for method in ("narrate", "state"):
            records = []
            for j in range(40):
                if method == "narrate":
                    sim = f"The user posts their response to the news ({j})." if j % 2 == 0 else texts[j + 40]
                else:
                    sim = None if j == 9 else texts[j + 80]
                records.append(StepRecord(
                    event_id=event.event_id, method=method, seed=0, language="en", topic=event.topic_text, step=j // 8,
                    agent_index=j, real_text=texts[j], simulated_text=None if j < 8 else sim,
                    mean_field="Users mostly support it, with doubt; most repost." if method == "narrate" else "",
                    signal=None, state_text="", warmup=j < 8, failed=method == "state" and j == 9))
            publish_records(tmp_path / "traj", records)
    cfg = EvaluateConfig(trajectories=str(tmp_path / "traj"), out=str(tmp_path / "out"), eval_start=0, eval_end=40,
                         nll_model=None, realism_seed=3)
    evaluate(cfg)
    with (tmp_path / "out" / "realism.csv").open() as fh:
        table = {r["method"]: r for r in csv.DictReader(fh)}
    # narrate: 2 events x 32 simulated agents, 16 descriptive each -> 50%; discriminator over 2 folds.
    n = table["narrate"]
    assert (n["simulated"], n["descriptive"], n["events"], n["folds"]) == ("64", "32", "2", "2")
    assert float(n["descriptive_share"]) == 0.5 and float(n["mf_aspects_share"]) == 1.0
    assert float(n["auc"]) > float(table["state"]["auc"])  # narration is told apart better than real tweets
    # state: agent 9 failed in each event: 2 of 64; no mean field.
    assert table["state"]["failed"] == "2" and float(table["state"]["empty_failed_share"]) == pytest.approx(2 / 64)
    assert table["state"]["mean_fields"] == "0"
    kl = (tmp_path / "out" / "kl.md").read_text(encoding="utf-8")
    assert "| failure rate | realism AUC | descriptive |" in kl and "| 50.0% |" in kl
    # The Ray job's driver computes the same rows from the same runs (in any order): identical files.
    runs = evaluable_runs(cfg.trajectories)[0]
    write_realism(driver_realism(runs[::-1], cfg), tmp_path)
    for name in ("realism.csv", "realism.md"):
        assert (tmp_path / name).read_text() == (tmp_path / "out" / name).read_text()
    # Realism off: neither file, and no columns.
    evaluate(cfg.model_copy(update={"realism": False}))
    assert not (tmp_path / "out" / "realism.csv").exists()
    assert "realism AUC" not in (tmp_path / "out" / "kl.md").read_text(encoding="utf-8")


def test_realism_config_fields():
    cfg = EvaluateConfig(trajectories="t")
    assert (cfg.realism, cfg.realism_seed, cfg.realism_folds) == (True, 0, 5)
    with pytest.raises(ValueError, match="realism_folds"):
        EvaluateConfig(trajectories="t", realism_folds=1)
