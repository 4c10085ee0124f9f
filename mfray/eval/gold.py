"""Hand-labelled TEST sets (mfray/eval/gold/*.jsonl): labels only, text joined from the data.

These files are test sets: nothing (annotator rules, lexicons, thresholds, prompts, model
selection) may be tuned on them. Tune on data/labels/twitter_gold_240.jsonl; measure here. The
exception is DEVELOPMENT_SETS: two earlier English test sets, now read and fitted on (so the
English test set is twitter_third).

Each file holds one JSON object per line: `event`, `id` (the post id in that event's data file)
and one label per dimension of `mfray.eval.labels.DIMENSIONS`. The post text and topic are not
stored; `load_test_labels(name, data_root)` finds them in the event files under `data_root`
with the project's loaders and returns `GoldLabel`s (event, id, topic, text, labels), in file
order. The text is what the labeller read: for Twitter the tweet as crawled (`Post.raw_text`,
as in data/labels/twitter_gold_240.jsonl) and the event's earliest tweet as topic; for Weibo the
action text (`Post.text`: the post's own words, or for a pure repost 转发微博 plus the //@ chain)
and the source post as topic.

Validation is strict and complete: every problem is collected (path of the labels file, line,
field) and `load_test_labels` raises `GoldSetError` listing them all; nothing is dropped
silently. Problems: a line that is not JSON or not an object; `event`/`id` missing, not a string
or empty; a dimension missing or outside its label set; an unknown field (also `text`/`topic`,
which must not be stored here); the same (event, id) twice; an event with no data file under
the set's folder (so a Weibo test-split event in weibo_train.jsonl is an error); a post id not in
its event; and any problem the event loader reports for a needed event file.
`check_test_labels` returns (labels, problems) without raising.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from mfray.data import load_events
from mfray.data.validate import Problem, decode_utf8
from mfray.eval.labels import DIMENSIONS, GoldLabel, json_object_lines, read_labels

GOLD_DIR = Path(__file__).resolve().parent / "gold"


@dataclass(frozen=True)
class GoldSet:
    """One hand-labelled test set: its labels file (in GOLD_DIR), the folder of its event files
    relative to the data root, and the language of its posts."""

    file: str
    data_subdir: str
    language: str
    source: str  # "twitter" (text = raw tweet) or "weibo" (text = action text)


TEST_SETS: dict[str, GoldSet] = {
    "twitter_unseen": GoldSet("twitter_unseen.jsonl", "twitter_rumdect", "en", "twitter"),
    "twitter_fresh": GoldSet("twitter_fresh.jsonl", "twitter_rumdect", "en", "twitter"),
    "twitter_third": GoldSet("twitter_third.jsonl", "twitter_rumdect", "en", "twitter"),
    "weibo_train": GoldSet("weibo_train.jsonl", "weibo_rumdect/train", "zh", "weibo"),
}
# Sets that have been read while writing the annotators' rules and that the fitted annotators
# learn from (mfray.eval.learned.development_labels) since 2026-12-07: no longer test sets for
# those annotators. The English test set is twitter_third.
DEVELOPMENT_SETS: tuple[str, ...] = ("twitter_unseen", "twitter_fresh")


class GoldSetError(ValueError):
    """A test-set file failed validation; `problems` lists every problem found."""

    def __init__(self, name: str, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"test set {name!r}: {len(problems)} problem(s):\n{lines}")


def gold_set_path(name: str) -> Path:
    """Path of the labels file of test set `name`."""
    return GOLD_DIR / _spec(name).file


def _spec(name: str) -> GoldSet:
    try:
        return TEST_SETS[name]
    except KeyError:
        raise ValueError(f"unknown test set {name!r}; expected one of "
                         f"{', '.join(TEST_SETS)}") from None


def _parse(text: str, path: str) -> tuple[list[tuple[int, str, str, dict[str, str]]],
                                          list[Problem]]:
    """(line, event, id, labels) for every valid line, and the problems of the others."""
    records: list[tuple[int, str, str, dict[str, str]]] = []
    problems: list[Problem] = []
    first: dict[tuple[str, str], int] = {}
    known = {"event", "id", *DIMENSIONS}
    for lineno, obj in json_object_lines(text, path, problems):
        bad = False
        ids: dict[str, str] = {}
        for key in ("event", "id"):
            value = obj.get(key)
            if not isinstance(value, str) or not value.strip():
                what = ("missing" if key not in obj
                        else f"expected a non-empty string, got {value!r:.40}")
                problems.append(Problem(path, lineno, key, what))
                bad = True
            else:
                ids[key] = value
        labels = read_labels(obj, path, lineno, problems)
        bad = bad or labels is None
        for key in obj:
            if key in ("text", "topic"):
                problems.append(Problem(path, lineno, key, "must not be stored in a test-set "
                                        "file: the text is joined from the data by (event, id)"))
            elif key not in known:
                problems.append(Problem(path, lineno, str(key), "unknown field"))
        if bad:
            continue
        key = (ids["event"], ids["id"])
        if key in first:
            problems.append(Problem(path, lineno, "id", f"duplicate of line {first[key]} "
                                    f"(event {key[0]}, id {key[1]})"))
            continue
        first[key] = lineno
        records.append((lineno, ids["event"], ids["id"], labels))
    if not records and not problems:
        problems.append(Problem(path, None, "file", "no labels: the file is empty"))
    return records, problems


def check_test_labels(name: str, data_root: str | os.PathLike, path: str | os.PathLike | None = None
                      ) -> tuple[list[GoldLabel], list[Problem]]:
    """Test set `name` joined with its data under `data_root`: (labels in file order, problems).
    `path` overrides the labels file (default: the set's file in GOLD_DIR). Never raises on bad
    content; a post that cannot be joined is a problem, never silently dropped."""
    spec = _spec(name)
    labels_path = Path(path) if path is not None else GOLD_DIR / spec.file
    where = str(labels_path)
    try:
        data = labels_path.read_bytes()
    except OSError as e:
        return [], [Problem(where, None, "file", f"cannot read: {e.strerror or e}")]
    text, problems = decode_utf8(data, where)
    if text is None:
        return [], problems
    records, more = _parse(text, where)
    problems += more

    folder = Path(data_root) / spec.data_subdir
    wanted = sorted({event for _, event, _, _ in records})
    files = {event: folder / f"{event}.json" for event in wanted}
    present = [f for f in files.values() if f.is_file()]
    events, load_problems = load_events(present) if present else ([], [])
    problems += load_problems
    by_id = {e.event_id: e for e in events}

    out: list[GoldLabel] = []
    missing_event_reported: set[str] = set()
    for lineno, event_id, post_id, labels in records:
        event = by_id.get(event_id)
        if event is None:
            if event_id not in missing_event_reported:
                reason = ("no such file" if not files[event_id].is_file()
                          else "the file did not load (see its problems)")
                problems.append(Problem(where, lineno, "event", f"event {event_id} not found "
                                        f"under {folder}: {files[event_id]}: {reason}"))
                missing_event_reported.add(event_id)
            else:
                problems.append(Problem(where, lineno, "event",
                                        f"event {event_id} not found (id {post_id})"))
            continue
        post = next((p for p in event.responses if p.post_id == post_id), None)
        if post is None and event.topic.post_id == post_id:
            post = event.topic
        if post is None:
            problems.append(Problem(where, lineno, "id", f"post {post_id} not found in event "
                                    f"{event_id} ({files[event_id]})"))
            continue
        if spec.source == "twitter":
            topic, post_text = event.topic.raw_text, post.raw_text
        else:
            topic, post_text = event.topic.text, post.text
        out.append(GoldLabel(event_id, post_id, topic, post_text, dict(labels)))
    return out, problems


def load_test_labels(name: str, data_root: str | os.PathLike,
                     path: str | os.PathLike | None = None) -> list[GoldLabel]:
    """Test set `name` (a key of TEST_SETS, e.g. "twitter_fresh") with each post's text and
    topic from the data under `data_root` (e.g. ../shared/data). Raises GoldSetError listing
    every problem (file, line, field) if there is any."""
    labels, problems = check_test_labels(name, data_root, path)
    if problems:
        raise GoldSetError(name, problems)
    return labels
