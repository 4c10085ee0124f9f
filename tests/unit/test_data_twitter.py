"""Crawled Twitter loader: real files, time parsing, ordering, and corrupted copies."""

from __future__ import annotations

import calendar
import json
from pathlib import Path

import pytest

from mfray.data import load_events, load_file
from mfray.data.twitter import parse_time


def _write(tmp_path: Path, name: str, tweets) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(tweets, ensure_ascii=False), encoding="utf-8")
    return path


def utc(*args) -> int:
    return calendar.timegm(args)


@pytest.mark.parametrize("text, expected", [
    ("9:35 AM - 28 Nov 2015", utc(2015, 11, 28, 9, 35, 0)),
    ("12:05 AM - 1 Jan 2016", utc(2016, 1, 1, 0, 5, 0)),
    ("12:05 PM - 1 Jan 2016", utc(2016, 1, 1, 12, 5, 0)),
    ("11:59 PM - 31 Dec 2015", utc(2015, 12, 31, 23, 59, 0)),
    ("4:25 PM - 28 Nov 2015\n\n      from Miami, FL", utc(2015, 11, 28, 16, 25, 0)),
    ("10:38 AM - 29 Feb 2016 from Brookfield, IL", utc(2016, 2, 29, 10, 38, 0)),
])
def test_parse_time(text, expected):
    assert parse_time(text) == expected


@pytest.mark.parametrize("text", [
    "", "yesterday", "13:00 PM - 1 Jan 2016", "9:60 AM - 1 Jan 2016", "9:35 AM - 30 Feb 2015",
    "9:35 AM - 28 Foo 2015", "9:35 - 28 Nov 2015", "9:35 AM - 28 Nov 20155",
])
def test_parse_time_rejects(text):
    assert parse_time(text) is None


def test_real_file_e102(data_dir):
    path = data_dir / "twitter_rumdect/E102.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    result = load_file(path)
    assert result.format == "twitter" and result.problems == []
    event = result.events[0]
    nulls = sum(v == [None, None] for v in raw.values())
    assert result.skipped == {"E102": nulls}
    assert 1 + len(event.responses) == len(raw) - nulls
    assert event.event_id == "E102" and event.source == "twitter" and event.language == "en"
    assert event.topic.post_id == "670657296771366913"
    assert event.topic.text.startswith("Atlanta Lottery Winner Dies")
    keys = [(p.t, int(p.post_id)) for p in (event.topic, *event.responses)]
    assert keys == sorted(keys)
    assert all(p.profile.location is None and p.parent is None for p in event.responses)


def test_out_of_order_real_file_is_sorted(data_dir):
    # README: 77 of 364 files list their tweets out of time order; take the first such file
    for path in sorted((data_dir / "twitter_rumdect").glob("*.json")):
        raw = json.loads(path.read_text(encoding="utf-8"))
        times = [parse_time(v[0]) for v in raw.values() if v[0] is not None]
        if times != sorted(times):
            break
    else:
        pytest.fail("no out-of-order file found")
    event = load_file(path).events[0]
    keys = [(p.t, int(p.post_id)) for p in (event.topic, *event.responses)]
    assert keys == sorted(keys)
    assert event.topic.t == min(times)


def test_ordering_nulls_reposts_and_trailing_text(tmp_path):
    tweets = {
        "300": ["10:00 AM - 2 Jan 2016", "RT @a: claim http://x.co "],
        "100": [None, None],
        "250": ["10:00 AM - 2 Jan 2016\n\n      from Miami, FL", "  RT @b: tie broken by id"],
        "900": ["9:00 AM - 2 Jan 2016", "the claim\u00a0"],
        "200": [None, None],
        "400": ["11:00 AM - 2 Jan 2016", "Really? #doubt"],
    }
    result = load_file(_write(tmp_path, "T1.json", tweets))
    assert result.problems == [] and result.skipped == {"T1": 2}
    event = result.events[0]
    assert [p.post_id for p in (event.topic, *event.responses)] == ["900", "250", "300", "400"]
    assert event.topic.text == "the claim" and event.topic.raw_text == "the claim\u00a0"
    assert [p.is_repost for p in event.responses] == [True, True, False]


def test_bad_entries_drop_only_that_tweet(tmp_path):
    tweets = {
        "1": ["9:00 AM - 2 Jan 2016", "topic"],
        "2": ["sometime in January", "bad time"],
        "3": ["9:10 AM - 2 Jan 2016", None],
        "4": ["9:20 AM - 2 Jan 2016"],
        "x5": ["9:30 AM - 2 Jan 2016", "bad id"],
        "6": ["9:40 AM - 2 Jan 2016", "fine"],
        "7": [None, "text without time"],
    }
    path = _write(tmp_path, "T2.json", tweets)
    result = load_file(path)
    assert [str(p) for p in result.problems] == [
        f"{path}:2: time: cannot parse 'sometime in January' as 'H:MM AM - D Mon YYYY' "
        "(tweet dropped)",
        f"{path}:3: text: expected str, got null (tweet dropped)",
        f"{path}:4: entry: expected [time, text], got list of length 1 (tweet dropped)",
        f"{path}:x5: id: tweet id must be digits (tweet dropped)",
        f"{path}:7: time: expected str, got null (tweet dropped)",
    ]
    event = result.events[0]
    assert [p.post_id for p in (event.topic, *event.responses)] == ["1", "6"]


def test_empty_twitter_event(tmp_path):
    one = _write(tmp_path, "T3.json", {"1": ["9:00 AM - 2 Jan 2016", "alone"], "2": [None, None]})
    none = _write(tmp_path, "T4.json", {})
    events, problems = load_events([one, none])
    assert events == []
    assert [str(p) for p in problems] == [
        f"{one}: event: empty event: 1 dated tweet(s), need a topic and at least one response "
        "(event rejected)",
        f"{none}: event: empty event: 0 dated tweet(s), need a topic and at least one response "
        "(event rejected)",
    ]
