"""Canonical format: round trips, schema, multi-event files, and corrupted copies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mfray.data import (
    arrow_schema,
    demo_event_path,
    event_rows,
    load_demo_event,
    load_events,
    load_file,
    write_events,
)
from mfray.data.canonical import COLUMNS
from mfray.types import Event, Post, Profile


def small_event(eid: str = "ev1", n: int = 3, language: str = "en") -> Event:
    topic = Post(post_id=f"{eid}-0", t=100, text="the claim", raw_text="the claim ",
                 is_repost=False, profile=Profile(user_id="u0", location="Town", gender="f",
                                                  friends_count=5, verified=True,
                                                  verified_type=3, verified_reason="media"))
    responses = tuple(
        Post(post_id=f"{eid}-{i}", t=100 + i, text=f"reply {i}", raw_text=f"reply {i}",
             is_repost=i % 2 == 0, parent=f"{eid}-0",
             profile=Profile(followers_count=i * 10, activity_count=i))
        for i in range(1, n + 1))
    return Event(event_id=eid, source="canonical", language=language, topic=topic,
                 responses=responses)


def test_schema_matches_columns():
    schema = arrow_schema()
    assert schema.names == [c for c, _, _ in COLUMNS]
    assert [c for c, _, req in COLUMNS if req] == ["event_id", "position", "post_id", "t", "text"]
    rows = event_rows(small_event())
    assert [r["position"] for r in rows] == [0, 1, 2, 3]
    assert list(rows[0]) == schema.names


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_weibo_round_trip(data_dir, tmp_path, suffix):
    original = load_file(data_dir / "weibo_rumdect/train/3587286128562289.json").events[0]
    path = tmp_path / f"out{suffix}"
    write_events([original], path)
    result = load_file(path)
    assert result.problems == [] and result.format == "canonical"
    assert result.events == [original]


def test_twitter_and_weibo_in_one_parquet(data_dir, tmp_path):
    events, problems = load_events([data_dir / "twitter_rumdect/E102.json",
                                    data_dir / "weibo_rumdect/test/3907691015522504.json"])
    assert problems == []
    path = tmp_path / "two.parquet"
    write_events(events, path)
    again, problems = load_events([path])
    assert problems == [] and again == events


def test_demo_event():
    assert demo_event_path().is_file()
    event = load_demo_event()
    assert event.language == "en" and event.source == "canonical"
    assert len(event.responses) == 64
    assert 10 <= sum(p.is_repost for p in event.responses) <= 30
    assert len({p.profile.user_id for p in event.responses}) > 30
    assert any(p.profile.verified for p in event.responses)
    assert any(p.profile.gender is None for p in event.responses)


def _jsonl(tmp_path: Path, name: str, rows: list) -> Path:
    path = tmp_path / name
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False))
                            + "\n" for r in rows), encoding="utf-8")
    return path


def test_minimal_hand_written_jsonl(tmp_path):
    path = _jsonl(tmp_path, "min.jsonl", [
        {"event_id": "e", "position": 1, "post_id": "b", "t": 2, "text": "RT @x: the claim"},
        {"event_id": "e", "position": 0, "post_id": "a", "t": 1, "text": "水 the claim"},
        {"event_id": "e", "position": 2, "post_id": "c", "t": 3, "text": "\u2028 odd separator"},
    ])
    result = load_file(path)
    assert result.problems == []
    event = result.events[0]
    assert (event.source, event.language) == ("canonical", "en")
    assert event.topic.post_id == "a" and event.topic.raw_text == "水 the claim"
    assert [p.is_repost for p in event.responses] == [True, False]
    assert event.responses[1].text == "\u2028 odd separator"


def test_jsonl_problems_name_line_and_field(tmp_path):
    good = event_rows(small_event("good"))
    bad = event_rows(small_event("bad"))
    bad[1]["followers_count"] = "10"          # optional: reported, None, kept
    bad[2]["gender"] = "x"                    # optional: reported, None, kept
    typed = event_rows(small_event("typed"))
    typed[3]["t"] = 3.5                       # required: event rejected
    gap = event_rows(small_event("gap"))
    del gap[2]                                # missing position 2
    rows = [*good, *bad, *typed, *gap]
    path = _jsonl(tmp_path, "multi.jsonl", rows)
    result = load_file(path)
    assert [e.event_id for e in result.events] == ["good", "bad"]
    assert result.events[1].responses[0].profile.followers_count is None
    assert [str(p) for p in result.problems] == [
        f"{path}:6: followers_count: expected int, got str '10' (set to None, post kept)",
        f"{path}:7: gender: expected 'm', 'f' or null, got 'x' (set to None, post kept)",
        f"{path}:12: t: expected int, got float 3.5 (event rejected)",
        f"{path}:event gap: position: positions must be 0..2; missing [2] (event rejected)",
    ]


def test_truncated_jsonl_line_rejects_its_event_only(tmp_path):
    rows = [json.dumps(r) for r in event_rows(small_event("a")) + event_rows(small_event("b"))]
    rows[-1] = rows[-1][:40]  # '{"event_id": "b", "source": "canonical",' cut
    path = _jsonl(tmp_path, "cut.jsonl", rows)
    result = load_file(path)
    assert [e.event_id for e in result.events] == ["a"]
    assert [str(p) for p in result.problems] == [
        f"{path}:8:41: json: Expecting property name enclosed in double quotes; the text ends "
        "early (truncated file?)",
        f"{path}:event b: json: a line of this event cannot be parsed (event rejected)",
    ]


def test_unattributable_line_rejects_the_file(tmp_path):
    rows = [json.dumps(r) for r in event_rows(small_event("a"))] + ['{"evt', "[1, 2]"]
    path = _jsonl(tmp_path, "orphan.jsonl", rows)
    result = load_file(path)
    assert result.events == []
    assert [str(p) for p in result.problems] == [
        f"{path}:5:2: json: Unterminated string starting at; the text ends early (truncated "
        "file?)",
        f"{path}:6: row: expected a JSON object, got list",
        f"{path}: file: rows above belong to an unknown event; all 1 event(s) of this file "
        "rejected",
    ]


def test_duplicate_position_and_mixed_language(tmp_path):
    rows = event_rows(small_event("d"))
    rows[2]["position"] = 1
    rows2 = event_rows(small_event("m"))
    rows2[1]["language"] = "zh"
    path = _jsonl(tmp_path, "dup.jsonl", rows + rows2)
    result = load_file(path)
    assert result.events == []
    assert [str(p) for p in result.problems] == [
        f"{path}:3: position: position 1 of event d appears twice (event rejected)",
        f"{path}:event m: language: expected one of ['zh', 'en'] for the whole event, got "
        "['en', 'zh'] (event rejected)",
    ]


def test_parquet_with_wrong_column_types(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = event_rows(small_event("p"))
    table = pa.Table.from_pylist(rows, schema=arrow_schema())
    as_text = table.set_column(table.schema.get_field_index("followers_count"), "followers_count",
                               pa.array([str(r["followers_count"]) for r in rows]))
    path = tmp_path / "typed.parquet"
    pq.write_table(as_text, path)
    result = load_file(path)
    assert [str(p) for p in result.problems] == [
        f"{path}: followers_count: column type string does not hold count values; column read "
        "as None"]
    assert [p.profile.followers_count for p in result.events[0].responses] == [None] * 3
    no_t = table.drop_columns(["t"])
    path2 = tmp_path / "no_t.parquet"
    pq.write_table(no_t, path2)
    nulls = table.set_column(table.schema.get_field_index("text"), "text",
                             pa.array(["x", None, "y", "z"]))
    path3 = tmp_path / "null_text.parquet"
    pq.write_table(nulls, path3)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    events, problems = load_events([path2, path3, broken, path])
    assert [e.event_id for e in events] == ["p"]
    messages = [str(p) for p in problems]
    assert f"{path2}: t: missing required column; file skipped" in messages
    assert f"{path3}:row 1: text: expected str, got null (event rejected)" in messages
    assert any(m.startswith(f"{broken}: parquet: cannot read as Parquet:") for m in messages)


def test_canonical_rows_in_a_json_array(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(event_rows(small_event("j"))), encoding="utf-8")
    result = load_file(path)
    assert result.format == "canonical" and result.events == [small_event("j")]


def test_jsonl_without_event_ids_is_one_problem(tmp_path):
    # JSONL but neither an event file nor gold labels (those are recognised: test_gold_labels.py)
    path = _jsonl(tmp_path, "other.jsonl", [{"id": str(i), "text": "x"} for i in range(5)])
    result = load_file(path)
    assert result.events == [] and len(result.problems) == 1
    assert str(result.problems[0]).startswith(
        f"{path}: event_id: no row has an event_id: not a canonical event file (first row: [")
    empty = _jsonl(tmp_path, "empty.jsonl", [])
    assert [str(p) for p in load_file(empty).problems] == \
        [f"{empty}: file: no rows: the file holds no event"]
