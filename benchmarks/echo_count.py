"""How many simulated posts repeat a run of words of their author's profile (`state_text`) or of
the event's topic, per method, in simulation output folders; and how many failed.

    .venv/bin/python benchmarks/echo_count.py runs/demo runs/demo_echo

A post counts when it shares a run of `--words` tokens with the text (mfray.prompts.parse.echoes_profile,
the rollout's own check, at 6 tokens; words, or characters in Chinese); warm-up agents are not counted.
"""

from __future__ import annotations

import argparse
from collections import Counter

from mfray.prompts.parse import echoes_profile
from mfray.sim.store import published_runs, read_runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folders", nargs="+", help="simulation output folders (mfray simulate --out, mfray demo --out)")
    ap.add_argument("--words", type=int, default=6, help="tokens in a row (default 6, as the rollout checks)")
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
                c["profile"] += echoes_profile(r.simulated_text, r.state_text, args.words)
                c["topic"] += echoes_profile(r.simulated_text, r.topic, args.words)
        for method, c in sorted(counts.items()):
            print(f"| {folder} | {method} | {c['simulated']} | {c['failed']} | {c['profile']} | {c['topic']} |")


if __name__ == "__main__":
    main()
