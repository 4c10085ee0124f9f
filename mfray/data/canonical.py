"""The project's canonical event format: one row per post, Parquet or JSONL; a file may hold
several events.

Columns (`COLUMNS`, Arrow schema from `arrow_schema()`): event_id, source, language, position
(0 = topic, then the responses in order), post_id, t, text, raw_text, is_repost, parent, and the
Profile fields user_id, location, description, gender, friends_count, followers_count,
activity_count, verified, verified_type, verified_reason.

Reading: required are event_id, position, post_id, t, text; an absent optional column or key
means None, except source (default "canonical"), language (detected from the text when null),
raw_text (default: text) and is_repost (default: empty text, a stock repost phrase or "RT @").
Position order is the agent order: positions must be exactly 0..n-1 per event; a decreasing `t`
is reported but the position order is kept. A row whose event cannot be told (unparsable line,
no event_id) rejects every event of that file, since any of them may have lost a post.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

from mfray.data.lang import event_language
from mfray.data.validate import Fields, Limits, Problem, json_error
from mfray.data.weibo import is_stock_repost
from mfray.types import Event, Post, Profile

# (name, kind, required); kinds are those of validate.Fields.
COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("event_id", "id", True), ("source", "str", False), ("language", "str", False),
    ("position", "count", True), ("post_id", "id", True), ("t", "int", True),
    ("text", "str", True), ("raw_text", "str", False), ("is_repost", "bool", False),
    ("parent", "str", False), ("user_id", "str", False), ("location", "str", False),
    ("description", "str", False), ("gender", "str", False), ("friends_count", "count", False),
    ("followers_count", "count", False), ("activity_count", "count", False),
    ("verified", "bool", False), ("verified_type", "int", False),
    ("verified_reason", "str", False),
)
PROFILE_FIELDS = ("user_id", "location", "description", "gender", "friends_count",
                  "followers_count", "activity_count", "verified", "verified_type",
                  "verified_reason")
SOURCES = ("weibo", "twitter", "canonical")
LANGUAGES = ("zh", "en")
_EVENT_ID_IN_LINE = re.compile(r'"event_id"\s*:\s*"((?:[^"\\]|\\.)*)"')


@lru_cache(maxsize=1)
def arrow_schema():
    """The pyarrow schema of canonical files (pyarrow imported on first use, not at import)."""
    import pyarrow as pa

    types = {"id": pa.string(), "str": pa.string(), "int": pa.int64(), "count": pa.int64(),
             "bool": pa.bool_()}
    return pa.schema([pa.field(name, types[kind], nullable=not required)
                      for name, kind, required in COLUMNS])


def event_rows(event: Event) -> list[dict[str, Any]]:
    """The canonical rows of one event: position 0 is the topic."""
    rows = []
    for position, post in enumerate((event.topic, *event.responses)):
        row = {"event_id": event.event_id, "source": event.source, "language": event.language,
               "position": position, "post_id": post.post_id, "t": post.t, "text": post.text,
               "raw_text": post.raw_text, "is_repost": post.is_repost, "parent": post.parent}
        row.update({name: getattr(post.profile, name) for name in PROFILE_FIELDS})
        rows.append(row)
    return rows


def events_to_table(events: Iterable[Event]):
    """A pyarrow Table of all rows of `events`, with the canonical schema."""
    import pyarrow as pa

    return pa.Table.from_pylist([r for e in events for r in event_rows(e)], schema=arrow_schema())


def write_parquet(events: Iterable[Event], path: str | os.PathLike) -> None:
    """Write `events` to one Parquet file."""
    import pyarrow.parquet as pq

    pq.write_table(events_to_table(events), str(path))


def write_jsonl(events: Iterable[Event], path: str | os.PathLike) -> None:
    """Write `events` to one JSONL file (UTF-8, one row per line)."""
    with open(path, "w", encoding="utf-8") as fh:
        for event in events:
            for row in event_rows(event):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_events(events: Iterable[Event], path: str | os.PathLike) -> None:
    """Write `events` to `path`, Parquet or JSONL by its suffix."""
    suffix = Path(path).suffix
    if suffix == ".parquet":
        write_parquet(events, path)
    elif suffix == ".jsonl":
        write_jsonl(events, path)
    else:
        raise ValueError(f"write_events: {path}: suffix must be .parquet or .jsonl, got {suffix!r}")


def _post(f: Fields) -> Post | None:
    post_id, t = f.required("post_id", "id"), f.required("t", "int")
    text = f.required("text", "str")
    raw = f.optional("raw_text", "str", missing_ok=True)
    is_repost = f.optional("is_repost", "bool", missing_ok=True)
    parent = f.optional("parent", "str", missing_ok=True)
    values = {name: f.optional(name, kind, missing_ok=True)
              for name, kind, _ in COLUMNS if name in PROFILE_FIELDS}
    if values["gender"] not in (None, "m", "f"):
        f.problems.append(Problem(f.path, f.position, "gender", f"expected 'm', 'f' or null, got "
                                  f"{values['gender']!r} (set to None, post kept)"))
        values["gender"] = None
    if f.rejected:
        return None
    if is_repost is None:
        is_repost = is_stock_repost(text) or text.lstrip().startswith("RT @")
    return Post(post_id=post_id, t=t, text=text, raw_text=text if raw is None else raw,
                is_repost=is_repost, profile=Profile(**values), parent=parent)


def _build_event(eid: str, rows: list[tuple[Any, dict]], path: str, limits: Limits,
                 problems: list[Problem]) -> Event | None:
    where = f"event {eid}"
    rejected = False
    by_position: dict[int, Any] = {}
    sources, languages = set(), set()
    for label, row in rows:
        f = Fields(row, path, label, limits, problems)
        position = f.required("position", "count")
        post = _post(f)
        source = f.optional("source", "str", missing_ok=True)
        language = f.optional("language", "str", missing_ok=True)
        rejected |= f.rejected
        sources.add(source or "canonical")
        if language is not None:
            languages.add(language)
        if position is None:
            continue
        if position in by_position:
            problems.append(Problem(path, label, "position", f"position {position} of event "
                                    f"{eid} appears twice (event rejected)"))
            rejected = True
        by_position[position] = post
    missing = sorted(set(range(len(rows))) - set(by_position))
    if missing and not rejected:
        problems.append(Problem(path, where, "position", f"positions must be 0..{len(rows) - 1}; "
                                f"missing {missing[:10]} (event rejected)"))
        rejected = True
    for name, values, allowed in (("source", sources, SOURCES),
                                  ("language", languages, LANGUAGES)):
        bad = sorted(v for v in values if v not in allowed)
        if bad or len(values) > 1:
            problems.append(Problem(path, where, name, f"expected one of {list(allowed)} for the "
                                    f"whole event, got {sorted(values)} (event rejected)"))
            rejected = True
    if len(rows) < 2:
        problems.append(Problem(path, where, "event", "empty event: a topic and no responses "
                                "(event rejected)"))
        rejected = True
    if rejected:
        return None
    posts = [by_position[i] for i in range(len(rows))]
    for i in range(1, len(posts)):
        if posts[i].t < posts[i - 1].t:
            problems.append(Problem(path, where, "t", f"t={posts[i].t} at position {i} is earlier "
                                    f"than t={posts[i - 1].t} at position {i - 1}; position "
                                    "order kept"))
    topic, responses = posts[0], tuple(posts[1:])
    language = languages.pop() if languages else event_language(topic, responses)
    return Event(event_id=eid, source=sources.pop(), language=language, topic=topic,
                 responses=responses)


def rows_to_events(rows: Iterable[tuple[Any, Any]], path: str, limits: Limits | None = None,
                   unattributed: list[Problem] | None = None) -> tuple[list[Event], list[Problem]]:
    """Validate (position label, row dict) pairs and group them into events, in order of first
    appearance. `unattributed` holds problems of rows whose event is unknown (e.g. unparsable
    lines): if there are any, every event of the file is rejected."""
    limits = limits or Limits()
    problems = list(unattributed or [])
    orphans = bool(unattributed)
    rows = list(rows)
    if rows and not any(isinstance(row, dict) and "event_id" in row for _, row in rows):
        # e.g. a labels file beside the events: one problem, not one per line
        first = rows[0][1]
        keys = sorted(first)[:8] if isinstance(first, dict) else type(first).__name__
        return [], problems + [Problem(path, None, "event_id", f"no row has an event_id: not a "
                                       f"canonical event file (first row: {keys})")]
    groups: dict[str, list[tuple[Any, dict]]] = {}
    for label, row in rows:
        if not isinstance(row, dict):
            problems.append(Problem(path, label, "row", f"expected a JSON object, got "
                                    f"{type(row).__name__}"))
            orphans = True
            continue
        f = Fields(row, path, label, limits, problems, "its event unknown")
        eid = f.required("event_id", "id")
        if eid is None:
            orphans = True
            continue
        groups.setdefault(eid, []).append((label, row))
    events = []
    for eid, group in groups.items():
        event = _build_event(eid, group, path, limits, problems)
        if event is not None:
            events.append(event)
    if not groups and not problems:
        problems.append(Problem(path, None, "file", "no rows: the file holds no event"))
    if orphans and groups:
        problems.append(Problem(path, None, "file", f"rows above belong to an unknown event; all "
                                f"{len(groups)} event(s) of this file rejected"))
        events = []
    return events, problems


def read_jsonl_text(text: str, path: str, limits: Limits | None = None
                    ) -> tuple[list[Event], list[Problem]]:
    """Events and problems from the text of a canonical JSONL file (position = line number)."""
    rows: list[tuple[Any, Any]] = []
    problems: list[Problem] = []
    unattributed: list[Problem] = []
    broken_ids: set[str] = set()
    # split("\n"), not splitlines(): U+2028 and friends may sit unescaped inside JSON strings.
    for lineno, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        try:
            rows.append((lineno, json.loads(line)))
        except json.JSONDecodeError as e:
            problem = json_error(e, line, path, f"{lineno}:{e.colno}")
            match = _EVENT_ID_IN_LINE.search(line)
            if match:  # the broken row's event is known: only that event is rejected
                problems.append(problem)
                broken_ids.add(match.group(1))
            else:
                unattributed.append(problem)
    events, more = rows_to_events(rows, path, limits, unattributed)
    for event in events:
        if event.event_id in broken_ids:
            more.append(Problem(path, f"event {event.event_id}", "json", "a line of this event "
                                "cannot be parsed (event rejected)"))
    return [e for e in events if e.event_id not in broken_ids], problems + more


def _arrow_kind_ok(pa_type, kind: str) -> bool:
    import pyarrow as pa

    if pa.types.is_null(pa_type):
        return True
    if kind in ("str", "id"):
        return pa.types.is_string(pa_type) or pa.types.is_large_string(pa_type)
    if kind in ("int", "count"):
        return pa.types.is_integer(pa_type)
    return pa.types.is_boolean(pa_type)


def read_parquet(path: str | os.PathLike, limits: Limits | None = None
                 ) -> tuple[list[Event], list[Problem]]:
    """Events and problems from a canonical Parquet file. Column types are checked once per
    column: a wrong-typed required column rejects the file, a wrong-typed optional column is
    reported and read as None."""
    import pyarrow.parquet as pq

    name = str(path)
    try:
        # ParquetFile reads exactly this file; read_table would treat the path as a dataset
        # (hive partition names in parent folders would become extra columns).
        table = pq.ParquetFile(name).read()
    except Exception as e:  # pyarrow raises several types (ArrowInvalid, OSError) for bad files
        return [], [Problem(name, None, "parquet", f"cannot read as Parquet: {e}")]
    problems: list[Problem] = []
    columns: dict[str, list] = {}
    fatal = False
    for col, kind, required in COLUMNS:
        if col not in table.column_names:
            if required:
                problems.append(Problem(name, None, col, "missing required column; file skipped"))
                fatal = True
            continue
        pa_type = table.schema.field(col).type
        if not _arrow_kind_ok(pa_type, kind):
            note = "file skipped" if required else "column read as None"
            problems.append(Problem(name, None, col, f"column type {pa_type} does not hold "
                                    f"{kind} values; {note}"))
            fatal |= required
            continue
        columns[col] = table.column(col).to_pylist()
    if fatal:
        return [], problems
    names = list(columns)
    rows = ((f"row {i}", dict(zip(names, values, strict=True)))
            for i, values in enumerate(zip(*columns.values(), strict=True)))
    events, row_problems = rows_to_events(rows, name, limits)
    return events, problems + row_problems
