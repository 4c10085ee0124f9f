"""`mfray data validate|convert|stats` through the argparse registration."""

from __future__ import annotations

import argparse
import json
import shutil

from mfray.data import load_events
from mfray.data_cli import add_data_commands, main

WEIBO = "weibo_rumdect/test/3907691015522504.json"


def test_registration_on_a_parent_parser():
    parser = argparse.ArgumentParser(prog="mfray")
    add_data_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["data", "validate", "a.json", "b"])
    assert args.paths == ["a.json", "b"] and callable(args.func)


def test_validate_clean_and_dirty(data_dir, tmp_path, capsys):
    shutil.copy(data_dir / WEIBO, tmp_path / "w.json")
    (tmp_path / "README.md").write_text("ignored")
    assert main(["validate", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert out.out == "" and "1 event(s) loaded, 0 problem(s)" in out.err

    posts = json.loads((data_dir / WEIBO).read_text(encoding="utf-8"))[:4]
    posts[0]["id"] = "1"  # another event, not a duplicate of w.json
    posts[2]["followers_count"] = "many"
    (tmp_path / "bad.json").write_text(json.dumps(posts, ensure_ascii=False), encoding="utf-8")
    (tmp_path / "cut.json").write_text('{"1": ["9:00 AM - 2 Jan 2016", "x"', encoding="utf-8")
    assert main(["validate", str(tmp_path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        f"{tmp_path / 'bad.json'}:2: followers_count: expected int, got str 'many' (set to None, "
        "post kept)",
        f"{tmp_path / 'cut.json'}:1:35: json: Expecting ',' delimiter; the text ends early "
        "(truncated file?)",
    ]


def test_convert_writes_one_parquet_per_event(data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["convert", str(data_dir / WEIBO), str(data_dir / "twitter_rumdect/E102.json"),
                 "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["3907691015522504.parquet", "E102.parquet"]
    original, _ = load_events([data_dir / WEIBO, data_dir / "twitter_rumdect/E102.json"])
    again, problems = load_events([out])
    assert problems == []
    assert sorted(again, key=lambda e: e.event_id) == sorted(original, key=lambda e: e.event_id)
    assert "wrote 2 event(s)" in capsys.readouterr().err


def test_stats_table(data_dir, capsys):
    assert main(["stats", str(data_dir / WEIBO), str(data_dir / "twitter_rumdect/E102.json")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["event", "source", "lang", "responses", "start", "(UTC)", "span",
                                "reposts", "skipped"]
    weibo = lines[2].split()
    assert weibo[:4] == ["3907691015522504", "weibo", "zh", "329"]
    assert weibo[4:8] == ["2015-11-10", "10:00", "7m", "46s"]
    twitter = lines[3].split()
    assert twitter[:3] == ["E102", "twitter", "en"]
    raw = json.loads((data_dir / "twitter_rumdect/E102.json").read_text(encoding="utf-8"))
    assert twitter[-1] == str(sum(v == [None, None] for v in raw.values()))
