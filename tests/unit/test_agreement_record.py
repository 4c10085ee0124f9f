"""The record of annotators' measured agreement on the hand-labelled test sets
(mfray.eval.agreement_record): entries written by benchmarks/annotator_gold.py --out, looked up by
annotator name for the evaluation report; an annotator never measured is said to be so."""

from __future__ import annotations

import pytest

from mfray.eval.agreement import DimensionScore
from mfray.eval.agreement_record import (
    agreement_entry,
    agreement_rows,
    annotator_agreement,
    load_agreement,
    measure_command,
    measured_agreement,
    merge_entry,
)
from mfray.eval.labels import GoldLabel
from mfray.eval.report import annotator_section


def gold(event: str, i: int) -> GoldLabel:
    return GoldLabel(event, str(i), "topic", f"text {i}", {})


# rumor: 3 of 4 right, majority also 3 of 4 (a tie: not above); stance: 4 of 4 against 2 of 4.
SCORES = {"rumor": DimensionScore(0.75, 0.4, "spread", 0.75, 4),
          "stance": DimensionScore(1.0, 1.0, "support", 0.5, 4)}
SCORED = [gold("a", 0), gold("a", 1), gold("b", 2), gold("b", 3)]


def test_entry_merge_and_lookup(tmp_path):
    entry = agreement_entry("offline-v2", "twitter_unseen", "en", SCORED, SCORES, "cmd --x", "2026-01-02")
    # Means: accuracy (0.75 + 1) / 2 = 0.875, macro-F1 (0.4 + 1) / 2 = 0.7, majority (0.75 + 0.5) / 2
    # = 0.625; 1 dimension above the majority (stance); 4 posts, 2 events.
    assert (entry["mean_accuracy"], entry["mean_macro_f1"], entry["mean_majority_accuracy"]) == (0.875, 0.7, 0.625)
    assert (entry["above_majority"], entry["n"], entry["events"]) == (1, 4, 2)
    path = tmp_path / "agreement.json"
    merge_entry(path, entry)
    merge_entry(path, {**entry, "test_set": "weibo_train", "language": "zh"})
    merge_entry(path, {**entry, "annotator": "learned-v2"})
    merge_entry(path, {**entry, "command": "rerun"})  # a rerun replaces its own entry only
    data = load_agreement(path)
    assert sorted(data) == ["learned-v2", "offline-v2"] and sorted(data["offline-v2"]) == ["twitter_unseen", "weibo_train"]
    found = annotator_agreement("offline-v2", path)
    assert found["twitter_unseen"]["command"] == "rerun" and found["weibo_train"]["command"] == "cmd --x"
    assert agreement_rows(found["twitter_unseen"]) == [
        {"dimension": "rumor", "macro_f1": 0.4, "accuracy": 0.75, "majority_accuracy": 0.75, "above_majority": "no (tie)"},
        {"dimension": "stance", "macro_f1": 1.0, "accuracy": 1.0, "majority_accuracy": 0.5, "above_majority": "yes"},
    ]
    assert measured_agreement(data, "llm:gpt-4o-mini") == {}
    assert load_agreement(tmp_path / "absent.json") == {}
    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="bad.json: not JSON"):
        load_agreement(tmp_path / "bad.json")


def test_report_shows_a_known_annotator_and_says_not_measured_otherwise():
    entry = agreement_entry("offline-v2", "twitter_unseen", "en", SCORED, SCORES, "cmd --x", "2026-01-02")
    md = annotator_section([], None, "offline-v2", {"twitter_unseen": entry})
    assert "#### twitter_unseen (4 posts, 2 events, language en)" in md
    assert "| rumor | 0.400 | 0.750 | 0.750 | no (tie) |" in md and "| stance | 1.000 | 1.000 | 0.500 | yes |" in md
    assert "| **mean** | **0.700** | **0.875** | **0.625** | **1/2** |" in md
    assert "Measured on 2026-01-02 by `cmd --x`." in md
    # The other test set was not measured: the command that measures it, no numbers.
    assert ("- weibo_train: not measured: run `.venv/bin/python benchmarks/annotator_gold.py --annotator offline "
            "--test-set weibo_train --out mfray/eval/gold/agreement.json`") in md
    llm = annotator_section([], None, "llm:gpt-4o-mini", {})
    assert "**Not measured**: llm:gpt-4o-mini has no recorded agreement" in llm and "| **mean** |" not in llm
    assert f"- twitter_third: not measured: run `{measure_command('llm:gpt-4o-mini', 'twitter_third')}`" in llm
    assert "--annotator llm --model gpt-4o-mini --base-url" in measure_command("llm:gpt-4o-mini", "twitter_unseen")


def test_committed_record_holds_the_local_annotators():
    # mfray/eval/gold/agreement.json, written by the commands it records (2026-12-07, once each).
    data = load_agreement()
    for name in ("offline-v2", "learned-v2", "hybrid-v2"):
        for test_set, n in (("twitter_third", 432), ("weibo_train", 156)):
            entry = data[name][test_set]
            assert entry["n"] == n and f"--test-set {test_set}" in entry["command"] and len(entry["dimensions"]) == 8
    assert round(data["hybrid-v2"]["twitter_third"]["mean_macro_f1"], 3) == 0.650
    assert data["hybrid-v2"]["twitter_third"]["above_majority"] == 4
    assert round(data["offline-v2"]["twitter_third"]["mean_macro_f1"], 3) == 0.626
    assert round(data["offline-v2"]["weibo_train"]["mean_macro_f1"], 3) == 0.648
