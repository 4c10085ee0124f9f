"""The learned annotators (mfray.eval.learned): fitted at build time from gold labels,
deterministic, Chinese left to the rules, consistent across tied dimensions, and fitted
leave-events-out when the benchmark scores them on the gold file."""

from __future__ import annotations

import asyncio

import pytest

from mfray.eval.agreement import agreement, averages, cross_validate
from mfray.eval.annotate import AnnotationItem, Annotator
from mfray.eval.annotators import LOCAL_ANNOTATORS, build_local_annotator
from mfray.eval.gold import DEVELOPMENT_SETS, load_test_labels
from mfray.eval.labels import DIMENSIONS, GoldLabel, load_gold_labels
from mfray.eval.learned import (
    HYBRID_SOURCES,
    HybridAnnotator,
    LearnedAnnotator,
    LearnedConfig,
    consistent,
    development_labels,
    load_training_gold,
)
from mfray.eval.offline import OfflineAnnotator
from tests.conftest import missing_data_message

# Leave-events-out (10 event-grouped folds, seed 0) mean macro-F1 of learned-v1 on the gold file,
# measured with benchmarks/annotator_gold.py --candidates; the test allows 0.03 below it.
MEASURED_CV_MACRO_F1 = 0.816

SHARE = {"rumor": "spread", "sentiment": "calm", "attitude": "neutral", "behavior": "share",
         "stance": "support", "belief": "believe", "subjectivity": "objective", "intent": "promotion"}
COMMENT = {**SHARE, "behavior": "comment", "intent": "opinion", "subjectivity": "subjective",
           "sentiment": "happy", "attitude": "positive"}
DEBUNK = {**SHARE, "rumor": "counter", "belief": "doubt", "stance": "oppose", "attitude": "negative"}


def tiny_gold() -> list[GoldLabel]:
    """Twelve hand-made rows over four events: headline shares, happy comments, debunks."""
    rows = []
    for e, topic in enumerate(["Man bites dog in Ohio http://x.co/a", "Mayor resigns over scandal http://x.co/b",
                               "Shark spotted in river http://x.co/c", "Free cars for everyone http://x.co/d"]):
        ev = f"E{e}"
        rows.append(GoldLabel(ev, "1", topic, topic.replace("x.co/", "t.co/z"), dict(SHARE)))
        rows.append(GoldLabel(ev, "2", topic, "lol I love this :) http://t.co/q", dict(COMMENT)))
        rows.append(GoldLabel(ev, "3", topic, "This story is a hoax, debunked by snopes http://t.co/r", dict(DEBUNK)))
    return rows


ITEMS = [
    AnnotationItem("Cat rescued from tree http://t.co/1", "Cat stuck in tree"),
    AnnotationItem("haha I love it :) http://t.co/2", "Cat stuck in tree"),
    AnnotationItem("Fake story, a hoax http://t.co/3", "Cat stuck in tree"),
    AnnotationItem("转发微博", "刘翔，赢或不赢，你都是英雄", "zh"),
    AnnotationItem("", "Cat stuck in tree"),
]


def labels_of(annotator, items=ITEMS):
    return [a.labels for a in asyncio.run(annotator.annotate(list(items)))]


def test_is_an_annotator_with_versioned_names():
    a = LearnedAnnotator(gold=tiny_gold())
    h = HybridAnnotator(gold=tiny_gold())
    assert isinstance(a, Annotator) and isinstance(h, Annotator)
    assert (a.name, h.name) == ("learned-v2", "hybrid-v2")
    assert LearnedAnnotator.fits_gold and HybridAnnotator.fits_gold


def test_fitted_from_the_given_rows_and_deterministic():
    first = labels_of(LearnedAnnotator(gold=tiny_gold()))
    again = labels_of(LearnedAnnotator(gold=tiny_gold()))
    assert first == again
    for labels in first:
        assert list(labels) == list(DIMENSIONS)
        assert all(labels[d] in DIMENSIONS[d] for d in DIMENSIONS)
    # it learned the three kinds of row
    assert (first[0]["behavior"], first[0]["rumor"]) == ("share", "spread")
    assert (first[1]["behavior"], first[1]["intent"]) == ("comment", "opinion")
    assert (first[2]["rumor"], first[2]["belief"]) == ("counter", "doubt")


def test_batch_and_single_items_agree_and_align():
    a = LearnedAnnotator(gold=tiny_gold())
    batch = labels_of(a)
    assert [labels_of(a, [item])[0] for item in ITEMS] == batch
    assert asyncio.run(a.annotate([])) == []


def test_chinese_items_get_the_rules():
    a = LearnedAnnotator(gold=tiny_gold())
    zh = ITEMS[3]
    assert labels_of(a, [zh])[0] == OfflineAnnotator().label_one(zh)
    assert labels_of(HybridAnnotator(gold=tiny_gold()), [zh])[0] == OfflineAnnotator().label_one(zh)


def test_consistency_rules_hand_worked():
    got = consistent({**SHARE, "intent": "opinion", "rumor": "counter", "belief": "believe"})
    assert (got["intent"], got["belief"]) == ("promotion", "doubt")  # share -> promotion; counter -> doubt
    got = consistent({**COMMENT, "intent": "promotion"})
    assert got["intent"] == "opinion"  # a comment is never a promotion
    got = consistent({**COMMENT, "intent": "question", "rumor": "spread", "belief": "doubt"})
    assert (got["intent"], got["belief"]) == ("question", "believe")
    assert list(got) == list(DIMENSIONS)


def test_hybrid_takes_each_dimension_from_its_source():
    gold = tiny_gold()
    rules_only = HybridAnnotator(gold=gold, sources={d: "rules" for d in DIMENSIONS})
    rules = OfflineAnnotator()
    for item, got in zip(ITEMS, labels_of(rules_only)):
        assert got == consistent(rules.label_one(item))
    model_only = HybridAnnotator(gold=gold, sources={d: "model" for d in DIMENSIONS})
    assert labels_of(model_only) == labels_of(LearnedAnnotator(gold=gold, config=HybridAnnotator.default_config))
    with pytest.raises(ValueError):
        HybridAnnotator(gold=gold, sources={"rumor": "model"})
    with pytest.raises(ValueError):
        HybridAnnotator(gold=gold, sources={**HYBRID_SOURCES, "rumor": "llm"})


def test_missing_gold_file_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        LearnedAnnotator(gold_path=missing)
    with pytest.raises(ValueError):
        LearnedAnnotator(gold=[])


def test_registry_names():
    assert LOCAL_ANNOTATORS == ("offline", "learned", "hybrid")
    assert build_local_annotator("offline").name == "offline-v2"
    with pytest.raises(ValueError):
        build_local_annotator("gpt")


def _gold(data_dir):
    path = data_dir / "labels" / "twitter_gold_240.jsonl"
    assert path.is_file(), missing_data_message(path, "gold label file labels/twitter_gold_240.jsonl")
    gold, problems = load_gold_labels(path)
    assert gold and not problems
    return gold


def test_default_build_fits_the_gold_file_and_the_development_sets(data_dir, monkeypatch):
    monkeypatch.setenv("MFRAY_DATA", str(data_dir))
    rows = development_labels()
    dev = [g for name in DEVELOPMENT_SETS for g in load_test_labels(name, data_dir)]
    assert len(load_training_gold()) == len(_gold(data_dir)) and len(rows) == len(_gold(data_dir)) + len(dev)
    # a scored development set is left out of the fit
    left = development_labels(leave_out=("twitter_fresh",))
    assert len(left) == len(rows) - len(load_test_labels("twitter_fresh", data_dir))
    built = build_local_annotator("learned")
    assert labels_of(built) == labels_of(LearnedAnnotator(gold=rows))  # same rows, same model


def test_leave_events_out_quality_holds(data_dir):
    """The benchmark's cross-validation: each fold fitted without its events."""
    gold = _gold(data_dir)

    def fit(train):
        assert not {g.event for g in train} & scored_events.pop()  # fitted never on scored events
        annotator = LearnedAnnotator(gold=train, config=LearnedConfig())
        return lambda rows: [a.labels for a in asyncio.run(annotator.annotate(
            [AnnotationItem(g.text, g.topic) for g in rows]))]

    from mfray.eval.agreement import event_folds

    folds = event_folds(gold, 10, 0)
    scored_events = [{e for e, f in folds.items() if f == k} for k in reversed(range(10))]
    preds = cross_validate(fit, gold, 10, 0)
    _, f1, _ = averages(agreement(gold, preds))
    assert f1 >= MEASURED_CV_MACRO_F1 - 0.03
