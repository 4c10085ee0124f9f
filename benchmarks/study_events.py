"""Draw the fidelity study's Twitter events (jobs/configs/fidelity_study.yaml): events no part of
the project was fitted or tuned on, long enough for the study's horizon.

    .venv/bin/python benchmarks/study_events.py               # 24 events, seed 15, 144+ responses

Left out: every event with a hand label of any kind (mfray/eval/gold/*.jsonl: the annotator's
gold, development and test sets; ../shared/data/labels/*.jsonl), the adapters' training events
(Twitter E2*, jobs/configs/train_adapters_*.yaml; f_psi's and LCT-Policy's are among them), and
the MF-MDP comparison's and scale run's events (E199, E457, E136, E750). The draw is seeded and
printed as the config's `events:` lines.
"""

from __future__ import annotations

import argparse
import glob
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TWITTER = "../shared/data/twitter_rumdect"
MDP_EVENTS = {"E199", "E457", "E136", "E750"}


def labelled_events() -> set[str]:
    """Every event id that any hand-label file names."""
    seen = set()
    for path in glob.glob(str(REPO / "mfray/eval/gold/*.jsonl")) + glob.glob(str(REPO / TWITTER / "../labels/*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh if line.strip()]
        seen |= {str(row.get("event_id", row.get("event"))) for row in rows}  # files name it either way
    return seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=24)
    ap.add_argument("--min-responses", type=int, default=144, help="warm-up 48 + 96 simulated agents")
    ap.add_argument("--seed", type=int, default=15)
    args = ap.parse_args()

    from mfray.data.validate import load_file

    excluded = labelled_events() | MDP_EVENTS
    eligible = []
    for path in sorted(glob.glob(str(REPO / TWITTER / "*.json"))):
        for event in load_file(path).events:
            if event.event_id in excluded or event.event_id.startswith("E2") or len(event) < args.min_responses:
                continue
            eligible.append(event.event_id)
    drawn = sorted(random.Random(args.seed).sample(eligible, args.count))
    print(f"# {len(eligible)} eligible events; drawn with seed {args.seed}: {args.count}")
    for event_id in drawn:
        print(f"  - {TWITTER}/{event_id}.json")


if __name__ == "__main__":
    main()
