"""load_events over mixed inputs: every problem named, bad files never stop good ones."""

from __future__ import annotations

import json
import shutil

from mfray.data import Limits, Problem, load_events
from mfray.data.validate import iter_event_files


def test_all_shared_data_loads_without_problems(data_dir):
    events, problems = load_events([data_dir / "weibo_rumdect", data_dir / "twitter_rumdect"])
    assert problems == []
    by_source = {s: [e for e in events if e.source == s] for s in ("weibo", "twitter")}
    assert len(by_source["weibo"]) == 11
    assert len(by_source["twitter"]) == 364
    # README: 371,365 dated tweets in all, at least 100 per event, 15,236 at most. (It also says
    # "102 to 15,236", but E414 and E569 hold 101 dated tweets each.)
    sizes = [1 + len(e.responses) for e in by_source["twitter"]]
    assert sum(sizes) == 371_365 and min(sizes) == 101 and max(sizes) == 15_236
    assert all(e.language == "zh" for e in by_source["weibo"])


def test_problem_str():
    assert str(Problem("a.json", 3, "t", "bad")) == "a.json:3: t: bad"
    assert str(Problem("a.json", "12:5", "json", "bad")) == "a.json:12:5: json: bad"
    assert str(Problem("a.json", None, "file", "bad")) == "a.json: file: bad"


def test_bad_files_are_reported_and_good_files_still_load(data_dir, tmp_path):
    good_weibo = tmp_path / "sub" / "w.json"
    good_weibo.parent.mkdir()
    shutil.copy(data_dir / "weibo_rumdect/test/3907691015522504.json", good_weibo)
    good_twitter = tmp_path / "E102.json"
    shutil.copy(data_dir / "twitter_rumdect/E102.json", good_twitter)
    (tmp_path / "README.md").write_text("# not an event\n")
    (tmp_path / ".hidden.json").write_text("not json")

    raw = good_weibo.read_bytes()
    truncated = tmp_path / "truncated.json"
    cut = raw.decode("utf-8")[:3000]
    truncated.write_text(cut, encoding="utf-8")
    non_utf8 = tmp_path / "latin1.json"
    non_utf8.write_bytes(raw[:1] + b"\xe9\xff" + raw[1:])
    malformed = tmp_path / "malformed.json"
    malformed.write_text('[{"id": "1",\n  "t": 5,, }]', encoding="utf-8")
    scalar = tmp_path / "scalar.json"
    scalar.write_text('"just a string"', encoding="utf-8")
    empty = tmp_path / "empty.json"
    empty.write_text("  \n", encoding="utf-8")

    events, problems = load_events([tmp_path, tmp_path / "missing.json"])
    assert sorted(e.event_id for e in events) == ["3907691015522504", "E102"]
    messages = [str(p) for p in problems]
    try:
        json.loads(cut)
    except json.JSONDecodeError as e:
        cut_error = f"{e.lineno}:{e.colno}: json: {e.msg}"
    assert messages == [
        f"{tmp_path / 'missing.json'}: path: no such file or directory",
        f"{empty}: json: file is empty",
        f"{non_utf8}:byte 1: encoding: invalid UTF-8 byte 0xe9 (invalid continuation byte)",
        f"{non_utf8}:byte 2: encoding: invalid UTF-8 byte 0xff (invalid start byte)",
        f"{non_utf8}: encoding: file is not valid UTF-8; file skipped",
        f"{malformed}:2:10: json: Expecting property name enclosed in double quotes",
        f"{scalar}: json: top level is str 'just a string'; expected an array (Weibo) or an "
        "object (Twitter)",
        f"{truncated}:{cut_error}; the text ends early (truncated file?)",
    ]


def test_walk_ignores_other_files_but_names_explicit_ones(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.json", "a/y.jsonl", "a/z.parquet", "a/README.md", "a/notes.txt"):
        (tmp_path / name).write_text("")
    files, problems = iter_event_files([tmp_path, tmp_path / "a/x.json", tmp_path / "a/notes.txt"])
    assert [f.name for f in files] == ["x.json", "y.jsonl", "z.parquet"]  # x.json once
    assert [str(p) for p in problems] == [
        f"{tmp_path / 'a/notes.txt'}: path: not an event file (expected .json, .jsonl or .parquet)"]


def test_size_limits(data_dir, tmp_path):
    path = tmp_path / "w.json"
    shutil.copy(data_dir / "weibo_rumdect/test/3907691015522504.json", path)
    size = path.stat().st_size
    events, problems = load_events([path], Limits(max_file_bytes=1000))
    assert events == []
    assert [str(p) for p in problems] == \
        [f"{path}: file: {size} bytes exceeds the 1000-byte limit; file skipped"]
    events, problems = load_events([path], Limits(max_text_chars=10))
    assert events == [] and problems
    assert all(p.message.endswith("exceeds the 10-character limit (event rejected)")
               or "set to None" in p.message for p in problems)


def test_duplicate_event_ids_keep_the_first(data_dir, tmp_path):
    for name in ("a.json", "b.json"):
        shutil.copy(data_dir / "weibo_rumdect/test/3907691015522504.json", tmp_path / name)
    events, problems = load_events([tmp_path])
    assert len(events) == 1
    assert [str(p) for p in problems] == [
        f"{tmp_path / 'b.json'}:event 3907691015522504: event_id: duplicate event id, already "
        f"loaded from {tmp_path / 'a.json'}; this copy skipped"]


def test_utf8_bom_is_accepted(data_dir, tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + (data_dir / "twitter_rumdect/E102.json").read_bytes())
    events, problems = load_events([path])
    assert problems == [] and [e.event_id for e in events] == ["bom"]


def test_glob_patterns_expand_and_an_empty_pattern_is_a_problem(data_dir):
    from mfray.data.validate import iter_event_files

    files, problems = iter_event_files([str(data_dir / "weibo_rumdect/t*/*.json"), str(data_dir / "no_such_*.json")])
    assert len(files) == 11 and all(f.suffix == ".json" for f in files)  # 5 test + 6 train events
    assert [(p.field, p.message) for p in problems] == [("path", "pattern matches no event file")]
