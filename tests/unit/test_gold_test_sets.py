"""The hand-labelled TEST sets (mfray/eval/gold/): they load against the real data, are large
and disjoint enough, and every label is valid. Nothing may be tuned on these files."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest

from mfray.eval.gold import (
    GOLD_DIR,
    TEST_SETS,
    GoldSetError,
    check_test_labels,
    gold_set_path,
    load_test_labels,
)
from mfray.eval.labels import DIMENSIONS, GoldLabel

TUNING_GOLD = "labels/twitter_gold_240.jsonl"
LABEL_SAMPLE = Path(__file__).resolve().parents[2] / "benchmarks" / "label_sample.py"


def _tuning_events(data_dir) -> set[str]:
    lines = (data_dir / TUNING_GOLD).read_text(encoding="utf-8").splitlines()
    return {json.loads(line)["event"] for line in lines if line.strip()}


def _check_labels(labels: list[GoldLabel]) -> None:
    keys = [(g.event, g.id) for g in labels]
    assert len(set(keys)) == len(keys), "an (event, id) appears twice"
    for g in labels:
        assert list(g.labels) == list(DIMENSIONS)
        for dim, allowed in DIMENSIONS.items():
            assert g.labels[dim] in allowed, (g.event, g.id, dim, g.labels[dim])
        assert g.text.strip() and g.topic.strip(), (g.event, g.id)


@pytest.mark.parametrize("name", ["twitter_unseen", "twitter_fresh", "twitter_third"])
def test_twitter_sets_load_and_are_disjoint_from_the_tuning_gold(data_dir, name):
    assert TEST_SETS[name].language == "en" and TEST_SETS[name].data_subdir == "twitter_rumdect"
    labels = load_test_labels(name, data_dir)
    _check_labels(labels)
    events = {g.event for g in labels}
    assert len(labels) >= 400
    assert len(events) >= 60
    assert not events & _tuning_events(data_dir), "a test event is in the tuning gold file"
    # the text joined back is the tweet as crawled, and the files store no text
    raw_file = data_dir / f"twitter_rumdect/{labels[0].event}.json"
    raw = json.loads(raw_file.read_text(encoding="utf-8"))
    assert raw[labels[0].id][1] == labels[0].text


def test_twitter_fresh_shares_no_event_with_twitter_unseen(data_dir):
    # twitter_fresh was sampled with --exclude-test-sets twitter_unseen (a new seed): it is the
    # English test set once twitter_unseen is used for development
    fresh = {g.event for g in load_test_labels("twitter_fresh", data_dir)}
    unseen = {g.event for g in load_test_labels("twitter_unseen", data_dir)}
    assert fresh and unseen and not fresh & unseen


def test_twitter_third_shares_no_event_with_twitter_unseen_or_twitter_fresh(data_dir):
    # twitter_third was sampled with --exclude-test-sets twitter_unseen twitter_fresh (a new
    # seed): it is the English test set once both are used for development (2026-12-07)
    third = {g.event for g in load_test_labels("twitter_third", data_dir)}
    earlier = {g.event for name in ("twitter_unseen", "twitter_fresh")
               for g in load_test_labels(name, data_dir)}
    assert third and earlier and not third & earlier


def _label_sample():
    spec = importlib.util.spec_from_file_location("label_sample", LABEL_SAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name, seed, exclude", [
    ("twitter_unseen", 20240611, ()),  # the default command
    ("twitter_fresh", 20250717, ("twitter_unseen",)),  # README: --seed 20250717 --exclude-...
    # README: --seed 20261207 --exclude-test-sets twitter_unseen twitter_fresh --weibo-per-event 0
    ("twitter_third", 20261207, ("twitter_unseen", "twitter_fresh")),
])
def test_twitter_sets_reproduce_from_the_sampler(data_dir, name, seed, exclude):
    sampler = _label_sample()
    rows = sampler.sample_twitter(data_dir, 72, 6, seed,
                                  frozenset(sampler.test_set_events(list(exclude))))
    lines = gold_set_path(name).read_text(encoding="utf-8").splitlines()
    assert [(r["event"], r["id"]) for r in rows] == [
        (json.loads(line)["event"], json.loads(line)["id"]) for line in lines]


def test_weibo_train_loads_from_training_events_only(data_dir):
    labels = load_test_labels("weibo_train", data_dir)
    _check_labels(labels)
    events = {g.event for g in labels}
    assert len(labels) >= 150
    train = {p.stem for p in (data_dir / "weibo_rumdect/train").glob("*.json")}
    test = {p.stem for p in (data_dir / "weibo_rumdect/test").glob("*.json")}
    assert test, "weibo_rumdect/test should hold the held-out events"
    assert events <= train
    assert not events & test
    assert len(events) == len(train)  # every training event is sampled


@pytest.mark.parametrize("name", sorted(TEST_SETS))
def test_files_store_labels_only(name):
    for line in gold_set_path(name).read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        assert set(obj) == {"event", "id", *DIMENSIONS}


def test_each_label_set_has_more_than_the_majority_class(data_dir):
    # a test set where a dimension never leaves its majority class measures nothing there
    for name in TEST_SETS:
        labels = load_test_labels(name, data_dir)
        for dim in DIMENSIONS:
            assert len(Counter(g.labels[dim] for g in labels)) >= 2, (name, dim)


def _write(tmp_path, rows):
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def _first_rows(n: int = 3) -> list[dict]:
    lines = (GOLD_DIR / TEST_SETS["twitter_unseen"].file).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines[:n]]


def test_missing_post_is_an_error_naming_event_and_id(data_dir, tmp_path):
    rows = _first_rows()
    rows[1]["id"] = "999"
    rows.append({**rows[0], "event": "NO_SUCH_EVENT"})
    path = _write(tmp_path, rows)
    with pytest.raises(GoldSetError) as err:
        load_test_labels("twitter_unseen", data_dir, path)
    text = str(err.value)
    assert f"{path}:2: id: post 999 not found in event {rows[1]['event']}" in text
    assert f"{path}:4: event: event NO_SUCH_EVENT not found" in text
    labels, problems = check_test_labels("twitter_unseen", data_dir, path)
    assert len(labels) == 2 and len(problems) == 2  # reported, and the rest still joined


def test_bad_label_duplicate_and_stored_text_are_reported(data_dir, tmp_path):
    rows = _first_rows()
    rows[0]["stance"] = "maybe"
    rows[1]["text"] = "copied text"
    del rows[2]["intent"]
    rows.append(dict(rows[1]))
    path = _write(tmp_path, rows)
    _, problems = check_test_labels("twitter_unseen", data_dir, path)
    got = {(p.position, p.field) for p in problems}
    assert {(1, "stance"), (2, "text"), (3, "intent"), (4, "text"), (4, "id")} <= got
    stance = next(p for p in problems if p.field == "stance")
    expected = "'maybe' is not a stance label; expected one of support, oppose, neutral"
    assert expected in stance.message


def test_weibo_test_split_event_is_rejected(data_dir, tmp_path):
    held_out = min(p.stem for p in (data_dir / "weibo_rumdect/test").glob("*.json"))
    row = {"event": held_out, "id": held_out, **{d: v[0] for d, v in DIMENSIONS.items()}}
    path = _write(tmp_path, [row])
    with pytest.raises(GoldSetError, match=f"event {held_out} not found under"):
        load_test_labels("weibo_train", data_dir, path)


def test_unknown_set_name():
    with pytest.raises(ValueError, match="unknown test set 'nope'"):
        gold_set_path("nope")
