"""The annotation scheme (SPEC section 4) and hand-labelled gold annotations.

`DIMENSIONS` maps each of the eight dimensions to its label set, in the SPEC's table order.
`load_gold_labels(path)` reads a gold-label JSONL file (one object per line: `event`, `id`,
`topic`, `text` and one label per dimension, e.g. data/labels/twitter_gold_240.jsonl) and
validates it strictly. Policy, as in the event loaders: every problem is reported with the line
number and field; a bad line is reported and skipped, the other lines are kept in file order.
- a line that is not JSON, or not a JSON object: one problem, line skipped;
- `event`, `id`, `topic`, `text` missing, not a string (or an empty event/id): line skipped;
- a dimension missing or its value outside the label set (the problem lists the allowed
  values): line skipped;
- an unknown field: reported, ignored, the label kept;
- the same (event, id) twice: the later line is reported and skipped.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mfray.data.validate import Fields, Limits, Problem, decode_utf8, json_error

DIMENSIONS: dict[str, tuple[str, ...]] = {
    "rumor": ("spread", "counter"),
    "sentiment": ("angry", "calm", "happy", "sad", "fear", "surprise"),
    "attitude": ("positive", "negative", "neutral"),
    "behavior": ("comment", "share"),
    "stance": ("support", "oppose", "neutral"),
    "belief": ("believe", "doubt"),
    "subjectivity": ("subjective", "objective"),
    "intent": ("question", "promotion", "opinion"),
}

_TEXT_FIELDS = {"event": "id", "id": "id", "topic": "str", "text": "str"}
_KNOWN_FIELDS = frozenset(_TEXT_FIELDS) | frozenset(DIMENSIONS)
_SKIP = "line skipped"


@dataclass(frozen=True)
class GoldLabel:
    """One hand-labelled post: its event and post id, the topic, the text, one label per
    dimension (`labels` has exactly the keys of DIMENSIONS, in that order)."""

    event: str
    id: str
    topic: str
    text: str
    labels: dict[str, str]


def is_gold_label_record(obj: Any) -> bool:
    """True for a dict that looks like a gold-label line (event, id, text and all eight
    dimensions, no event_id); values are not checked here."""
    return (isinstance(obj, dict) and "event_id" not in obj
            and all(k in obj for k in ("event", "id", "text", *DIMENSIONS)))


def looks_like_gold_labels(text: str) -> bool:
    """True when the first line of JSONL `text` that parses to a JSON object is a gold-label
    record (other lines are passed over, so a corrupted first line is still reported as a label
    problem, not as a foreign file)."""
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(obj, dict):
            return is_gold_label_record(obj)
    return False


def _show(value: Any) -> str:
    return "null" if value is None else repr(value)[:40]


def _record(obj: Mapping[str, Any], path: str, lineno: int, limits: Limits,
            problems: list[Problem]) -> GoldLabel | None:
    f = Fields(obj, path, lineno, limits, problems, _SKIP)
    values = {key: f.required(key, kind) for key, kind in _TEXT_FIELDS.items()}
    labels = read_labels(obj, path, lineno, problems, f" ({_SKIP})")
    bad = f.rejected or labels is None
    for key in obj:
        if key not in _KNOWN_FIELDS:
            problems.append(Problem(path, lineno, str(key), "unknown field (ignored, label kept)"))
    if bad:
        return None
    return GoldLabel(values["event"], values["id"], values["topic"], values["text"], labels)


def read_labels(obj: Mapping[str, Any], path: str, lineno: int, problems: list[Problem],
                note: str = "") -> dict[str, str] | None:
    """The eight labels of one record, or None when any is missing or outside its label set
    (each such problem reported, with `note` appended)."""
    labels: dict[str, str] = {}
    for dim, allowed in DIMENSIONS.items():
        if dim not in obj:
            problems.append(Problem(path, lineno, dim, f"missing label; expected one of {', '.join(allowed)}{note}"))
        elif not isinstance(obj[dim], str) or obj[dim] not in allowed:
            problems.append(Problem(path, lineno, dim, f"{_show(obj[dim])} is not a {dim} label; "
                                    f"expected one of {', '.join(allowed)}{note}"))
        else:
            labels[dim] = obj[dim]
    return labels if len(labels) == len(DIMENSIONS) else None


def json_object_lines(text: str, path: str, problems: list[Problem], note: str = "") -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL text that holds a JSON object; a
    line that does not is reported in `problems` (position = line, `note` appended), never yielded."""
    # split("\n"), not splitlines(): U+2028 and friends may sit unescaped inside JSON strings.
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problem = json_error(e, line, path, f"{lineno}:{e.colno}")
            problems.append(Problem(path, problem.position, "json", f"{problem.message}{note}"))
            continue
        except RecursionError:
            problems.append(Problem(path, lineno, "json", f"nesting too deep{note}"))
            continue
        if not isinstance(obj, dict):
            problems.append(Problem(path, lineno, "line", f"expected a JSON object, got {type(obj).__name__}{note}"))
            continue
        yield lineno, obj


def parse_gold_labels(text: str, path: str, limits: Limits | None = None
                      ) -> tuple[list[GoldLabel], list[Problem]]:
    """Gold labels and problems from the text of a gold-label JSONL file (position = line)."""
    limits = limits or Limits()
    labels: list[GoldLabel] = []
    problems: list[Problem] = []
    first_line: dict[tuple[str, str], int] = {}
    for lineno, obj in json_object_lines(text, path, problems, f" ({_SKIP})"):
        label = _record(obj, path, lineno, limits, problems)
        if label is None:
            continue
        key = (label.event, label.id)
        if key in first_line:
            problems.append(Problem(path, lineno, "id", f"duplicate of line {first_line[key]} "
                                    f"(event {label.event}, id {label.id}) ({_SKIP})"))
            continue
        first_line[key] = lineno
        labels.append(label)
    if not labels and not problems:
        problems.append(Problem(path, None, "file", "no labels: the file is empty"))
    return labels, problems


def load_gold_labels(path: str | os.PathLike, limits: Limits | None = None
                     ) -> tuple[list[GoldLabel], list[Problem]]:
    """Load and validate a gold-label JSONL file; never raises on bad content (an unreadable
    file is a problem too). Returns the valid labels in file order and every problem."""
    limits = limits or Limits()
    name = str(path)
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > limits.max_file_bytes:
            return [], [Problem(name, None, "file", f"{size} bytes exceeds the "
                                f"{limits.max_file_bytes}-byte limit; file skipped")]
        data = p.read_bytes()
    except OSError as e:
        return [], [Problem(name, None, "file", f"cannot read: {e.strerror or e}")]
    text, problems = decode_utf8(data, name)
    if text is None:
        return [], problems
    labels, more = parse_gold_labels(text, name, limits)
    return labels, problems + more
