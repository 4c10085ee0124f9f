"""`mfray data ...` subcommands: validate, convert, stats.

`add_data_commands(subparsers)` registers a `data` command on the caller's argparse subparsers;
each leaf sets `func`, a callable taking the parsed args and returning the exit code (0 clean,
1 when any problem was found). `python -m mfray.data_cli ...` runs them standalone.

PATH arguments are files or directories; directories are walked recursively for *.json, *.jsonl
and *.parquet (other files such as README.md are ignored). Gold-label JSONL files (e.g.
data/labels/) are recognised by content: `validate` checks and counts them, `convert` and `stats`
skip them with a one-line note on stderr.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from mfray.data.canonical import write_parquet
from mfray.data.validate import FileResult, Limits, load_files
from mfray.types import Event

_MB = 1024 * 1024


def add_data_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `data validate|convert|stats` to `subparsers`; returns the `data` parser."""
    data = subparsers.add_parser("data", help="validate, convert and describe event files")
    sub = data.add_subparsers(dest="data_command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("paths", nargs="+", metavar="PATH", help="event files or directories")
        p.add_argument("--max-file-mb", type=float, default=Limits.max_file_bytes / _MB,
                       help="files larger than this are reported, not read (default 512)")
        p.add_argument("--max-text-chars", type=int, default=Limits.max_text_chars,
                       help="longer texts are reported as problems (default 100000)")

    p = sub.add_parser("validate", help="report every problem (file:position: field: message)")
    common(p)
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("convert", help="write each valid event as canonical Parquet")
    common(p)
    p.add_argument("--out", required=True, type=Path, help="output directory")
    p.set_defaults(func=cmd_convert)
    p = sub.add_parser("stats", help="per-event table: source, language, size, span, reposts")
    common(p)
    p.set_defaults(func=cmd_stats)
    return data


def _load(args: argparse.Namespace):
    limits = Limits(max_file_bytes=int(args.max_file_mb * _MB),
                    max_text_chars=args.max_text_chars)
    results, path_problems = load_files(args.paths, limits)
    problems = path_problems + [p for r in results for p in r.problems]
    return results, problems


def cmd_validate(args: argparse.Namespace) -> int:
    """Print every problem, one per line, then a summary; exit 1 if there was any."""
    results, problems = _load(args)
    for problem in problems:
        print(problem)
    events = sum(len(r.events) for r in results)
    label_files = [r for r in results if r.format == "gold_labels"]
    labels = (f", {len(label_files)} gold-label file(s) ({sum(len(r.labels) for r in label_files)}"
              " label(s))") if label_files else ""
    bad_files = len({p.path for p in problems})
    print(f"{len(results)} file(s), {events} event(s) loaded{labels}, {len(problems)} problem(s) "
          f"in {bad_files} file(s)", file=sys.stderr)
    return 1 if problems else 0


def _note_label_files(results: list[FileResult]) -> None:
    for r in results:
        if r.format == "gold_labels":
            print(f"{r.path}: gold labels ({len(r.labels)}), not events: skipped", file=sys.stderr)


def _file_name(event_id: str) -> str:
    # Event ids come from data; keep file names portable and never escaping the output folder.
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", event_id).lstrip(".") or "event"
    return safe + ".parquet"


def cmd_convert(args: argparse.Namespace) -> int:
    """Write one canonical Parquet file per valid event, `<event_id>.parquet` in --out (one file
    per event so runs can shard and resume per event). Problems go to stderr; exit 1 if any."""
    results, problems = _load(args)
    _note_label_files(results)
    args.out.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    collisions = 0
    for event in (e for r in results for e in r.events):
        name = _file_name(event.event_id)
        if name in written:  # two ids that differ only in unsafe characters
            print(f"{args.out / name}: event_id: {event.event_id!r} and {written[name]!r} map to "
                  "the same file name; second not written", file=sys.stderr)
            collisions += 1
            continue
        written[name] = event.event_id
        write_parquet([event], args.out / name)
    for problem in problems:
        print(problem, file=sys.stderr)
    print(f"wrote {len(written)} event(s) to {args.out}; {len(problems) + collisions} "
          "problem(s)", file=sys.stderr)
    return 1 if problems or collisions else 0


def _span(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s"


def event_stats(event: Event, skipped: int = 0) -> dict[str, str]:
    """One table row describing `event`; `skipped` is its number of [null, null] tweets."""
    times = [event.topic.t, *(p.t for p in event.responses)]
    start = datetime.fromtimestamp(min(times), UTC).strftime("%Y-%m-%d %H:%M")
    reposts = sum(p.is_repost for p in event.responses)
    return {"event": event.event_id, "source": event.source, "lang": event.language,
            "responses": str(len(event.responses)), "start (UTC)": start,
            "span": _span(max(times) - min(times)),
            "reposts": f"{100 * reposts / len(event.responses):.1f}%",
            "skipped": str(skipped)}


def format_table(rows: list[dict[str, str]]) -> str:
    """Plain-text table with a header; numbers right-aligned."""
    if not rows:
        return "(no events)"
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    right = {"responses", "reposts", "skipped"}

    def line(values: dict[str, str]) -> str:
        return "  ".join(values[c].rjust(widths[c]) if c in right else values[c].ljust(widths[c])
                         for c in cols).rstrip()

    return "\n".join([line({c: c for c in cols}), line({c: "-" * widths[c] for c in cols}),
                      *(line(r) for r in rows)])


def cmd_stats(args: argparse.Namespace) -> int:
    """Print a per-event table; problems go to stderr; exit 1 if any."""
    results, problems = _load(args)
    _note_label_files(results)
    rows = [event_stats(e, r.skipped.get(e.event_id, 0)) for r in results for e in r.events]
    print(format_table(rows))
    total = sum(int(r["responses"]) for r in rows)
    print(f"{len(rows)} event(s), {total} response(s)", file=sys.stderr)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: `python -m mfray.data_cli validate PATH...`."""
    parser = argparse.ArgumentParser(prog="mfray")
    add_data_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["data", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
