"""Loading event files with validation: every problem is reported, no bad file stops the others.

Policy (the same in every loader):
- A file that cannot be read (missing, over `Limits.max_file_bytes`, non-UTF-8 bytes, malformed or
  truncated JSON, unrecognised shape) yields no event; each reason is one Problem.
- A required field (post id, `t`, text) missing, of the wrong type or over
  `Limits.max_text_chars`: the problem is reported and the WHOLE EVENT is rejected (with all its
  problems listed), because dropping the post would shift every later agent index.
  Exception: in the Twitter format, posts have no parent links and a bad entry is reported and
  only that tweet is dropped.
- An optional (profile) field of the wrong type: the problem is reported, the field becomes None,
  the post is kept.
- An event with a topic but no responses is rejected ("empty event").
- Weibo responses whose `t` decreases are reported and then sorted stably by `t` (event kept).
- The same event id loaded twice: the later copy is reported and skipped.

A .jsonl file whose first parsable line is a gold-label record (mfray.eval.labels, e.g.
data/labels/) is validated as labels instead: format "gold_labels", no events, its problems
reported as usual.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mfray.types import Event

if TYPE_CHECKING:
    from mfray.eval.labels import GoldLabel

EVENT_SUFFIXES = (".json", ".jsonl", ".parquet")
_MAX_BAD_BYTE_REPORTS = 20


@dataclass(frozen=True)
class Problem:
    """One validation problem. `position` is an array index (Weibo), a tweet id (Twitter), a line
    number or "line:column" (JSON/JSONL), "row N" (Parquet), "event ID", or None for the file."""

    path: str
    position: int | str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.path if self.position is None else f"{self.path}:{self.position}"
        return f"{where}: {self.field}: {self.message}"


@dataclass(frozen=True)
class Limits:
    """Size limits beyond which input is treated as broken rather than loaded."""

    max_file_bytes: int = 512 * 1024 * 1024
    max_text_chars: int = 100_000


@dataclass
class FileResult:
    """What one file gave: its events, its problems, per-event skipped [null, null] tweets, for
    a gold-label file (format "gold_labels", no events) its valid labels, and `duplicate_of`:
    event ids this file also holds that load_files took from an earlier file (id -> that file)."""

    path: str
    format: str | None
    events: list[Event] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    labels: list[GoldLabel] = field(default_factory=list)
    duplicate_of: dict[str, str] = field(default_factory=dict)


def _show(value: Any) -> str:
    if value is None:
        return "null"
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}{'...' if len(text) > 40 else ''}"


class Fields:
    """Reads typed fields of one record and collects problems.

    `rejected` becomes True when a required field is bad; `reject_note` says what that costs
    (e.g. "event rejected" or "tweet dropped") so every message states its consequence.
    """

    _TYPES = {"str": str, "int": int, "count": int, "bool": bool, "id": str}

    def __init__(self, record: Mapping[str, Any], path: str, position: int | str | None,
                 limits: Limits, problems: list[Problem], reject_note: str = "event rejected"):
        self.record, self.path, self.position = record, path, position
        self.limits, self.problems, self.reject_note = limits, problems, reject_note
        self.rejected = False

    def _bad(self, key: str, message: str) -> None:
        self.problems.append(Problem(self.path, self.position, key, message))

    def _type_error(self, value: Any, kind: str) -> str | None:
        # bool is an int subclass in Python; a JSON true is never a valid count or timestamp.
        if kind in ("int", "count") and (isinstance(value, bool) or not isinstance(value, int)):
            return f"expected int, got {_show(value)}"
        if not isinstance(value, self._TYPES[kind]):
            return f"expected {self._TYPES[kind].__name__}, got {_show(value)}"
        if kind == "count" and value < 0:
            return f"expected a count >= 0, got {value}"
        if kind == "id" and not value.strip():
            return "expected a non-empty id, got an empty string"
        if kind in ("str", "id") and len(value) > self.limits.max_text_chars:
            return (f"{len(value)} characters exceeds the "
                    f"{self.limits.max_text_chars}-character limit")
        return None

    def required(self, key: str, kind: str) -> Any:
        """The value of a required field, or None after reporting it (and rejecting)."""
        if key not in self.record:
            self.rejected = True
            self._bad(key, f"missing required field ({self.reject_note})")
            return None
        value = self.record[key]
        error = self._type_error(value, kind) if value is not None else \
            f"expected {self._TYPES[kind].__name__}, got null"
        if error:
            self.rejected = True
            self._bad(key, f"{error} ({self.reject_note})")
            return None
        return value

    def optional(self, key: str, kind: str, *, missing_ok: bool = False) -> Any:
        """The value of an optional field; a wrong type is reported and gives None (post kept)."""
        if key not in self.record:
            if not missing_ok:
                self._bad(key, "missing field (set to None, post kept)")
            return None
        value = self.record[key]
        if value is None:
            return None
        error = self._type_error(value, kind)
        if error:
            self._bad(key, f"{error} (set to None, post kept)")
            return None
        return value


def blank_to_none(value: str | None) -> str | None:
    """Strip a string; empty becomes None (an empty profile field means missing, not "")."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def decode_utf8(data: bytes, path: str) -> tuple[str | None, list[Problem]]:
    """Decode strictly; each invalid byte sequence is a problem naming its byte offset."""
    try:
        return data.decode("utf-8-sig"), []  # a leading BOM is harmless; accept it
    except UnicodeDecodeError:
        pass
    problems: list[Problem] = []
    start = 0
    while True:
        try:
            data[start:].decode("utf-8")
            break
        except UnicodeDecodeError as e:
            offset = start + e.start
            if len(problems) == _MAX_BAD_BYTE_REPORTS:
                # A binary file would otherwise produce one problem per byte.
                problems.append(Problem(path, f"byte {offset}", "encoding",
                                        "more invalid UTF-8 sequences follow (not listed)"))
                break
            problems.append(Problem(path, f"byte {offset}", "encoding",
                                    f"invalid UTF-8 byte 0x{data[offset]:02x} ({e.reason})"))
            start = start + e.end
    problems.append(Problem(path, None, "encoding", "file is not valid UTF-8; file skipped"))
    return None, problems


def json_error(e: json.JSONDecodeError, text: str, path: str, position: str | None = None
               ) -> Problem:
    """A Problem for a JSON syntax error, at "line:column", saying when the text ends early."""
    truncated = e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated string")
    note = "; the text ends early (truncated file?)" if truncated else ""
    return Problem(path, position or f"{e.lineno}:{e.colno}", "json", f"{e.msg}{note}")


def iter_event_files(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Problem]]:
    """Expand files, directories (walked recursively for .json, .jsonl, .parquet, skipping
    hidden entries and other files such as README.md) and glob patterns (`data/E[2-9]*.json`),
    each file once, in sorted order. A missing path, a pattern matching nothing or an explicitly
    named non-event file is a problem."""
    files: list[Path] = []
    problems: list[Problem] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if any(c in str(raw) for c in "*?[") and not path.exists():
            found = sorted(p for p in map(Path, glob.glob(str(raw))) if p.suffix in EVENT_SUFFIXES and p.is_file())
            if not found:
                problems.append(Problem(str(raw), None, "path", "pattern matches no event file"))
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.suffix in EVENT_SUFFIXES and p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
        elif path.is_file():
            if path.suffix not in EVENT_SUFFIXES:
                problems.append(Problem(str(path), None, "path",
                                        "not an event file (expected .json, .jsonl or .parquet)"))
                continue
            found = [path]
        else:
            problems.append(Problem(str(path), None, "path", "no such file or directory"))
            continue
        for p in found:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                files.append(p)
    return files, problems


def load_file(path: str | os.PathLike, limits: Limits | None = None) -> FileResult:
    """Load one event (or gold-label) file of any supported format; never raises on bad
    content."""
    # Imported here: the format modules and mfray.eval.labels import Problem/Fields from here.
    from mfray.data import canonical, twitter, weibo
    from mfray.eval.labels import looks_like_gold_labels, parse_gold_labels

    limits = limits or Limits()
    p = Path(path)
    name = str(p)
    result = FileResult(name, None)
    try:
        size = p.stat().st_size
        if size > limits.max_file_bytes:
            result.problems.append(Problem(name, None, "file", f"{size} bytes exceeds the "
                                           f"{limits.max_file_bytes}-byte limit; file skipped"))
            return result
        if p.suffix == ".parquet":
            result.format = "canonical"
            result.events, result.problems = canonical.read_parquet(p, limits)
            return result
        data = p.read_bytes()
    except OSError as e:
        result.problems.append(Problem(name, None, "file", f"cannot read: {e.strerror or e}"))
        return result
    text, result.problems = decode_utf8(data, name)
    if text is None:
        return result
    if p.suffix == ".jsonl" and looks_like_gold_labels(text):
        result.format = "gold_labels"
        result.labels, result.problems = parse_gold_labels(text, name, limits)
        return result
    if p.suffix == ".jsonl":
        result.format = "canonical"
        result.events, result.problems = canonical.read_jsonl_text(text, name, limits)
        return result
    if not text.strip():
        result.problems.append(Problem(name, None, "json", "file is empty"))
        return result
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        result.problems.append(json_error(e, text, name))
        return result
    except RecursionError:
        result.problems.append(Problem(name, None, "json", "nesting too deep"))
        return result
    if isinstance(obj, list) and obj and isinstance(obj[0], dict) and "event_id" in obj[0]:
        result.format = "canonical"
        rows = ((i, row) for i, row in enumerate(obj))
        result.events, result.problems = canonical.rows_to_events(rows, name, limits)
    elif isinstance(obj, list):
        result.format = "weibo"
        event, result.problems = weibo.parse_weibo(obj, name, limits)
        result.events = [event] if event else []
    elif isinstance(obj, dict):
        result.format = "twitter"
        event, result.problems, skipped = twitter.parse_twitter(obj, name, p.stem, limits)
        result.events = [event] if event else []
        result.skipped = {p.stem: skipped}
    else:
        result.problems.append(Problem(name, None, "json", f"top level is {_show(obj)}; expected "
                                       "an array (Weibo) or an object (Twitter)"))
    return result


def load_files(paths: Iterable[str | os.PathLike], limits: Limits | None = None
               ) -> tuple[list[FileResult], list[Problem]]:
    """Load every event file under `paths`: per-file results plus path-level problems.
    An event id already loaded from an earlier file is reported and that later copy dropped."""
    files, path_problems = iter_event_files(paths)
    results = [load_file(f, limits) for f in files]
    first_seen: dict[str, str] = {}
    for res in results:
        kept = []
        for event in res.events:
            if event.event_id in first_seen:
                res.duplicate_of[event.event_id] = first_seen[event.event_id]
                res.problems.append(Problem(
                    res.path, f"event {event.event_id}", "event_id",
                    f"duplicate event id, already loaded from {first_seen[event.event_id]}; "
                    "this copy skipped"))
                continue
            first_seen[event.event_id] = res.path
            kept.append(event)
        res.events = kept
    return results, path_problems


def duplicate_ids(results: Iterable[FileResult]) -> list[str]:
    """One message per event id that load_files found in two files, naming both: a run grid
    refuses these (which copy to simulate is not for a loader to guess)."""
    return [f"event id {event_id!r} is in both {first} and {res.path}; remove or rename one copy"
            for res in results for event_id, first in res.duplicate_of.items()]


def load_events(paths: Iterable[str | os.PathLike], limits: Limits | None = None
                ) -> tuple[list[Event], list[Problem]]:
    """Load all events under `paths` (files or directories, any supported format).

    Returns (events, problems); a bad file or event contributes problems and never stops the
    others. Events come in sorted file order.
    """
    results, problems = load_files(paths, limits)
    events = [e for r in results for e in r.events]
    return events, problems + [p for r in results for p in r.problems]
