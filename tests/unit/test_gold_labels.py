"""Gold labels (data/labels/): strict loading, and `mfray data validate` accepting them."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from collections import Counter

import pytest

from mfray.data import load_events, load_file
from mfray.data_cli import main
from mfray.eval.labels import DIMENSIONS, GoldLabel, is_gold_label_record, load_gold_labels

GOLD = "labels/twitter_gold_240.jsonl"
WEIBO = "weibo_rumdect/test/3907691015522504.json"


def _lines(data_dir) -> list[str]:
    return (data_dir / GOLD).read_text(encoding="utf-8").splitlines()


def _write(path, lines: list[str]):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_dimensions_follow_the_spec_table():
    assert list(DIMENSIONS) == ["rumor", "sentiment", "attitude", "behavior", "stance", "belief",
                                "subjectivity", "intent"]
    assert DIMENSIONS["sentiment"] == ("angry", "calm", "happy", "sad", "fear", "surprise")
    assert DIMENSIONS["intent"] == ("question", "promotion", "opinion")


def test_real_gold_file_loads_clean(data_dir):
    labels, problems = load_gold_labels(data_dir / GOLD)
    assert problems == []
    assert len(labels) == 240 and all(isinstance(g, GoldLabel) for g in labels)
    assert len({(g.event, g.id) for g in labels}) == 240
    for dim, allowed in DIMENSIONS.items():
        counts = Counter(g.labels[dim] for g in labels)
        assert set(counts) <= set(allowed)
        assert sum(counts.values()) == 240
    assert all(list(g.labels) == list(DIMENSIONS) for g in labels)
    # every labelled tweet is in its event's raw file, with the same text
    raw = {e: json.loads((data_dir / f"twitter_rumdect/{e}.json").read_text(encoding="utf-8"))
           for e in {g.event for g in labels}}
    assert all(raw[g.event][g.id][1] == g.text for g in labels)


def test_bad_label_value_names_line_field_and_allowed_values(data_dir, tmp_path):
    lines = _lines(data_dir)[:5]
    rows = [json.loads(line) for line in lines]
    rows[2]["stance"] = "maybe"
    path = _write(tmp_path / "gold.jsonl", [json.dumps(r) for r in rows])
    labels, problems = load_gold_labels(path)
    assert [str(p) for p in problems] == [
        f"{path}:3: stance: 'maybe' is not a stance label; expected one of support, oppose, "
        "neutral (line skipped)"]
    assert [g.id for g in labels] == [rows[i]["id"] for i in (0, 1, 3, 4)]
    # load_file recognises the format by content and reports the same problem, no events
    result = load_file(path)
    assert result.format == "gold_labels" and result.events == []
    assert result.problems == problems and result.labels == labels


def test_malformed_line_and_missing_dimension(data_dir, tmp_path):
    rows = [json.loads(line) for line in _lines(data_dir)[:6]]
    del rows[3]["belief"]
    rows[4]["sentiment"] = None
    lines = [json.dumps(r) for r in rows]
    lines[0] = lines[0][:50]  # a truncated first line: still recognised as gold labels
    lines[1] = "[1, 2]"
    lines.insert(2, "")  # blank lines are ignored, later line numbers still count them
    path = _write(tmp_path / "gold.jsonl", lines)
    labels, problems = load_gold_labels(path)
    messages = [str(p) for p in problems]
    assert len(messages) == 4
    assert messages[0].startswith(f"{path}:1:") and ": json: " in messages[0]
    assert messages[0].endswith("(line skipped)")
    assert messages[1] == f"{path}:2: line: expected a JSON object, got list (line skipped)"
    assert messages[2] == (f"{path}:5: belief: missing label; expected one of believe, doubt "
                           "(line skipped)")
    assert messages[3].startswith(f"{path}:6: sentiment: null is not a sentiment label; "
                                  "expected one of angry, calm, happy, sad, fear, surprise")
    assert [g.id for g in labels] == [rows[2]["id"], rows[5]["id"]]
    assert load_file(path).format == "gold_labels"


def test_missing_text_field_duplicate_and_unknown_field(data_dir, tmp_path):
    rows = [json.loads(line) for line in _lines(data_dir)[:3]]
    rows[0]["note"] = "x"
    rows[1]["id"] = 7
    rows.append(dict(rows[2]))
    path = _write(tmp_path / "gold.jsonl", [json.dumps(r) for r in rows])
    labels, problems = load_gold_labels(path)
    assert [str(p) for p in problems] == [
        f"{path}:1: note: unknown field (ignored, label kept)",
        f"{path}:2: id: expected str, got int 7 (line skipped)",
        f"{path}:4: id: duplicate of line 3 (event {rows[2]['event']}, id {rows[2]['id']}) "
        "(line skipped)",
    ]
    assert [g.id for g in labels] == [rows[0]["id"], rows[2]["id"]]


def test_is_gold_label_record(data_dir):
    record = json.loads(_lines(data_dir)[0])
    assert is_gold_label_record(record)
    assert not is_gold_label_record({**record, "event_id": "E1"})
    assert not is_gold_label_record({k: v for k, v in record.items() if k != "intent"})
    assert not is_gold_label_record([record])


def test_load_events_and_stats_skip_label_files(data_dir, tmp_path, capsys):
    shutil.copy(data_dir / GOLD, tmp_path / "gold.jsonl")
    shutil.copy(data_dir / WEIBO, tmp_path / "w.json")
    events, problems = load_events([tmp_path])
    assert problems == [] and [e.event_id for e in events] == ["3907691015522504"]
    assert main(["stats", str(tmp_path)]) == 0
    out = capsys.readouterr()
    assert len(out.out.splitlines()) == 3  # header, rule, the Weibo event
    assert f"{tmp_path / 'gold.jsonl'}: gold labels (240), not events: skipped" in out.err
    assert main(["convert", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["3907691015522504.parquet"]
    assert "gold labels (240), not events: skipped" in capsys.readouterr().err


@pytest.fixture(scope="module")
def validate_all(data_dir):
    """`mfray data validate` over the whole shared data folder, run once (takes a few seconds)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(data_dir)])
    return code, out.getvalue(), err.getvalue()


def test_validate_accepts_the_whole_data_folder(validate_all):
    code, out, err = validate_all
    assert out == ""
    assert code == 0
    assert "375 event(s) loaded, 1 gold-label file(s) (240 label(s)), 0 problem(s)" in err


def test_validate_rejects_a_corrupted_weibo_copy_beside_labels(data_dir, tmp_path, capsys):
    shutil.copy(data_dir / GOLD, tmp_path / "gold.jsonl")
    posts = json.loads((data_dir / WEIBO).read_text(encoding="utf-8"))
    posts[3]["t"] = "noon"
    bad = tmp_path / "w.json"
    bad.write_text(json.dumps(posts, ensure_ascii=False), encoding="utf-8")
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr()
    assert out.out.splitlines() == [
        f"{bad}:3: t: expected int, got str 'noon' (event rejected)"]
    assert "0 event(s) loaded, 1 gold-label file(s) (240 label(s)), 1 problem(s) in 1 file(s)" \
        in out.err
