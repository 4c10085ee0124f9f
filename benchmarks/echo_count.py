"""How many simulated posts repeat a run of words of their author's profile (`state_text`) or of
the event's topic, per method, in simulation output folders; and how many failed.

    .venv/bin/python benchmarks/echo_count.py runs/demo runs/demo_echo

A post counts when it shares a run of `--words` words (lower-cased, letters and digits) with the
text; warm-up agents are not counted.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

from mfray.sim.store import published_runs, read_runs


def runs_of(text: str | None, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", (text or "").lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="simulation output folders (mfray simulate --out, mfray demo --out)")
    ap.add_argument("--words", type=int, default=5)
    args = ap.parse_args()
    print("| folder | method | simulated | failed | repeating the profile | repeating the topic |")
    print("|---|---|---|---|---|---|")
    for folder in args.folders:
        counts: dict[str, Counter] = {}
        for _, records in read_runs(published_runs(folder).values()):
            for r in records:
                if r.warmup or r.intervention:
                    continue
                c = counts.setdefault(r.method, Counter())
                c["simulated"] += 1
                if r.simulated_text is None:
                    c["failed"] += 1
                    continue
                posted = runs_of(r.simulated_text, args.words)
                c["profile"] += bool(posted & runs_of(r.state_text, args.words))
                c["topic"] += bool(posted & runs_of(r.topic, args.words))
        for method, c in sorted(counts.items()):
            print(f"| {folder} | {method} | {c['simulated']} | {c['failed']} | {c['profile']} | {c['topic']} |")


if __name__ == "__main__":
    main()
