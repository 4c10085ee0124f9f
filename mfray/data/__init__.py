"""Event data: loaders (Weibo rumdect, crawled Twitter, canonical Parquet/JSONL), validation,
the canonical Arrow schema, language detection and profile -> state text.

Entry points: `load_events(paths) -> (events, problems)` for any mix of files and directories,
`write_events(events, path)` for canonical output, `state_text(profile, language)`, and
`demo_event_path()` / `load_demo_event()` for the small bundled English demo event.
pyarrow is imported only when Parquet is read or written.
"""

from __future__ import annotations

from pathlib import Path

from mfray.data.canonical import arrow_schema, event_rows, write_events, write_jsonl, write_parquet
from mfray.data.lang import detect_language, event_language
from mfray.data.state import state_text
from mfray.data.validate import FileResult, Limits, Problem, load_events, load_file, load_files
from mfray.types import Event

__all__ = [
    "FileResult", "Limits", "Problem", "arrow_schema", "demo_event_path", "detect_language",
    "event_language", "event_rows", "load_demo_event", "load_events", "load_file", "load_files",
    "state_text", "write_events", "write_jsonl", "write_parquet",
]


def demo_event_path() -> Path:
    """Path of the bundled demo event (canonical JSONL, English, made up for demos and tests)."""
    return Path(__file__).resolve().parent / "demo" / "demo_event.jsonl"


def load_demo_event() -> Event:
    """The bundled demo event; raises ValueError listing the problems if it fails to load."""
    events, problems = load_events([demo_event_path()])
    if problems or len(events) != 1:
        raise ValueError("demo event failed to load: " + "; ".join(map(str, problems)))
    return events[0]
