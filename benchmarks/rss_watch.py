"""Run a command and sample its memory as it goes: the resident set (RSS) of the command and all its
children, and how many records the run it works on has on disk, every few seconds, appended to a
CSV. A long run that spans sessions is watched by starting this again with the same --log: the
rows of each start carry their own `session` number, so the plot shows every stretch of the run.

    python benchmarks/rss_watch.py --log runs/long/rss.csv --state runs/long/in_progress/E136__mfmdp__s0.ckpt.json \\
        -- .venv/bin/mfray simulate --config jobs/configs/long_mfmdp.yaml
    python benchmarks/rss_watch.py --log runs/long/rss.csv --plot docs/long_mfmdp_rss.png

`--state` is the run's checkpoint state (mfray.sim.checkpoint): its `n_records` is the number of
actions already on disk, the x-axis of the plot. The command's exit status is this script's.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

FIELDS = ["session", "elapsed_s", "rss_mb", "records"]


def tree_rss_mb(pid: int) -> float:
    """RSS of a process and all its descendants, in MiB (0 once it is gone)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / 2**20


def records_on_disk(state: Path | None) -> int | None:
    """`n_records` of a checkpoint state, or None when there is none (yet, or any more)."""
    if state is None:
        return None
    try:
        return int(json.loads(state.read_text(encoding="utf-8"))["n_records"])
    except (OSError, ValueError, KeyError):
        return None


def read_log(log: Path) -> list[dict]:
    with log.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def watch(command: list[str], log: Path, state: Path | None, every_s: float) -> int:
    log.parent.mkdir(parents=True, exist_ok=True)
    fresh = not log.exists()
    session = 0 if fresh else 1 + max((int(r["session"]) for r in read_log(log)), default=-1)
    proc = subprocess.Popen(command)
    start = time.monotonic()
    with log.open("a", newline="", encoding="utf-8") as f:
        out = csv.DictWriter(f, FIELDS)
        if fresh:
            out.writeheader()
        while True:
            done = proc.poll() is not None
            rss = tree_rss_mb(proc.pid)
            if rss > 0:
                n = records_on_disk(state)
                out.writerow({"session": session, "elapsed_s": round(time.monotonic() - start, 1),
                              "rss_mb": round(rss, 1), "records": "" if n is None else n})
                f.flush()
            if done:
                return proc.returncode
            time.sleep(every_s)


def plot(log: Path, png: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_log(log) if r["records"] != ""]
    if not rows:
        raise SystemExit(f"{log} has no rows with a record count yet: is --state the run's .ckpt.json?")
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for session in sorted({int(r["session"]) for r in rows}):
        mine = [r for r in rows if int(r["session"]) == session]
        ax.plot([int(r["records"]) for r in mine], [float(r["rss_mb"]) for r in mine], ".-", ms=2, lw=0.8,
                label=f"session {session}")
    ax.set_xlabel("actions on disk")
    ax.set_ylabel("RSS of the run (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    return png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log", type=Path, required=True, help="CSV to append samples to (or to plot)")
    parser.add_argument("--state", type=Path, help="the watched run's checkpoint state (.ckpt.json)")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples (default 5)")
    parser.add_argument("--plot", type=Path, help="write a PNG of RSS against actions from --log, and run nothing")
    parser.add_argument("--title", default="RSS over a long run")
    parser.add_argument("command", nargs="*", help="the command to run, after --")
    args = parser.parse_args(argv)
    if args.plot:
        print(plot(args.log, args.plot, args.title))
        return 0
    if not args.command:
        parser.error("give the command to watch after --, or --plot")
    return watch(args.command, args.log, args.state, args.every)


if __name__ == "__main__":
    sys.exit(main())
