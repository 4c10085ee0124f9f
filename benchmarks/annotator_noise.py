"""The noise floor of the fidelity metrics under each annotator, and how the fidelity table of
one trajectory folder moves when the annotator is swapped.

    .venv/bin/python benchmarks/annotator_noise.py                     # runs/sweep_test_token
    .venv/bin/python benchmarks/annotator_noise.py --trajectories DIR --annotators offline,learned,hybrid

1. Noise floor (mfray.eval.noise): for every event of the trajectory folder, its real posts as
   the simulation indexes them (agent j = the event's j-th response, `Post.text`, topic the
   event's topic text, step j // --agents-per-step), agents --start..--end (default 50..300, the
   evaluation's range), labelled by the annotator; each step's posts split into two random
   halves, one standing for the real side and one for a perfect simulator; KL and Wasserstein per
   step window and macro-F1 over the pairs (mfray.eval.metrics), averaged over --seeds seeds, then
   over events. Lower KL/W is better: no simulator can be expected below these with this
   annotator (the halves hold half a window each: see mfray/eval/noise.py on scale).
2. Annotator swap: `mfray evaluate --no-nll` on the folder (mfray.eval.run.evaluate with the
   annotator passed in, eval range --eval-start..--eval-end, default 0..48 because the folder's
   runs are 48 agents long), once per annotator, into --out/<annotator>/; the mean KL per method
   and dimension side by side, and whether the methods' order changes.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from mfray.data import load_events  # noqa: E402
from mfray.eval.annotate import AnnotationItem, CachedAnnotator  # noqa: E402
from mfray.eval.annotators import LOCAL_ANNOTATORS, build_local_annotator  # noqa: E402
from mfray.eval.labels import DIMENSIONS  # noqa: E402
from mfray.eval.noise import average_over_events, noise_floor  # noqa: E402


def data_root() -> Path:
    import os

    return Path(os.environ.get("MFRAY_DATA", REPO_ROOT.parent / "shared" / "data"))


def event_files(trajectories: Path) -> dict[str, Path]:
    """{event id: data file} for the events of a simulation output folder's runs."""
    from mfray.sim.store import published_runs

    ids = sorted({r.meta["event_id"] for r in published_runs(trajectories).values()})
    root = data_root()
    out = {}
    for event in ids:
        for sub in ("twitter_rumdect", "weibo_rumdect/train", "weibo_rumdect/test"):
            path = root / sub / f"{event}.json"
            if path.is_file():
                out[event] = path
                break
        else:
            print(f"warning: no data file for event {event} under {root}", file=sys.stderr)
    return out


def floor_table(annotators: dict, files: dict[str, Path], start: int, end: int, per_step: int,
                seeds: list[int]) -> dict[str, dict]:
    events, problems = load_events(list(files.values()))
    for p in problems:
        print(f"warning: {p}", file=sys.stderr)
    out = {}
    for kind, annotator in annotators.items():
        per_event = []
        for event in events:
            posts = event.responses[start:end]
            if len(posts) < 2:
                continue
            items = [AnnotationItem(p.text, event.topic_text, event.language) for p in posts]
            anns = asyncio.run(annotator.annotate(items))
            labels = [a.labels for a in anns]
            steps = [(start + k) // per_step for k in range(len(posts))]
            per_event.append(noise_floor(steps, labels, seeds))
        out[kind] = (average_over_events(per_event), len(per_event),
                     sum(len(e.responses[start:end]) for e in events))
    return out


def swap(annotators: dict, trajectories: Path, out: Path, eval_start: int, eval_end: int) -> dict[str, dict]:
    """{annotator kind: {(method, dimension): mean KL over the folder's trajectories}}."""
    from mfray.eval.config import EvaluateConfig
    from mfray.eval.run import evaluate

    tables = {}
    for kind, annotator in annotators.items():
        fields = {"trajectories": str(trajectories), "out": str(out / kind), "nll_model": None,
                  "eval_start": eval_start, "eval_end": eval_end}
        if "realism" in EvaluateConfig.model_fields:
            fields["realism"] = False
        cfg = EvaluateConfig(**fields)
        cached = CachedAnnotator(annotator, out / kind / f"annotations.{annotator.name}.jsonl")
        rows = evaluate(cfg, annotator=cached)
        acc: dict[tuple[str, str], list[float]] = defaultdict(list)
        for row in rows:
            if not math.isnan(row["kl"]):
                acc[(row["method"], row["dimension"])].append(row["kl"])
        tables[kind] = {k: sum(v) / len(v) for k, v in acc.items()}
    return tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trajectories", type=Path, default=REPO_ROOT / "runs" / "sweep_test_token")
    parser.add_argument("--annotators", default=",".join(LOCAL_ANNOTATORS))
    parser.add_argument("--seeds", type=int, default=5, help="random splits per event (seeds 0..N-1)")
    parser.add_argument("--start", type=int, default=50, help="first agent of the noise floor")
    parser.add_argument("--end", type=int, default=300, help="end agent (exclusive) of the noise floor")
    parser.add_argument("--agents-per-step", type=int, default=16)
    parser.add_argument("--eval-start", type=int, default=0, help="evaluation range of the swap")
    parser.add_argument("--eval-end", type=int, default=48)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / "annotator_swap")
    parser.add_argument("--no-swap", action="store_true", help="noise floor only")
    args = parser.parse_args()

    kinds = [k.strip() for k in args.annotators.split(",") if k.strip()]
    annotators = {k: build_local_annotator(k) for k in kinds}
    files = event_files(args.trajectories)
    print(f"events: {len(files)} ({', '.join(files)}); annotators: "
          f"{', '.join(a.name for a in annotators.values())}\n")

    floors = floor_table(annotators, files, args.start, args.end, args.agents_per_step, list(range(args.seeds)))
    print(f"### noise floor: two random halves of each event's real posts (agents {args.start}.."
          f"{args.end}, windows of {args.agents_per_step // 2} vs {args.agents_per_step // 2} posts), "
          f"{args.seeds} seeds, mean over events\n")
    print("| dimension | " + " | ".join(f"{annotators[k].name} KL | W | macro-F1" for k in kinds) + " |")
    print("|---|" + "---|---|---|" * len(kinds))
    for dim in DIMENSIONS:
        cells = []
        for k in kinds:
            f = floors[k][0][dim]
            cells.append(f"{f['kl']:.3f} | {f['wasserstein']:.3f} | {f['macro_f1']:.3f}")
        print(f"| {dim} | " + " | ".join(cells) + " |")
    means = [{m: sum(floors[k][0][d][m] for d in DIMENSIONS) / len(DIMENSIONS)
              for m in ("kl", "wasserstein", "macro_f1")} for k in kinds]
    print("| **mean** | " + " | ".join(f"**{m['kl']:.3f}** | **{m['wasserstein']:.3f}** | **{m['macro_f1']:.3f}**"
                                       for m in means) + " |")
    k0 = kinds[0]
    print(f"\n({floors[k0][1]} events with posts in range, {floors[k0][2]} posts)\n")

    if args.no_swap:
        return
    tables = swap(annotators, args.trajectories, args.out, args.eval_start, args.eval_end)
    methods = sorted({m for t in tables.values() for m, _ in t})
    print(f"### fidelity table (mean KL over events and seeds, agents {args.eval_start}..{args.eval_end}) "
          f"under each annotator: {args.trajectories}\n")
    print("| method | dimension | " + " | ".join(annotators[k].name for k in kinds) + " |")
    print("|---|---|" + "---|" * len(kinds))
    for method in methods:
        for dim in DIMENSIONS:
            print(f"| {method} | {dim} | " + " | ".join(f"{tables[k].get((method, dim), float('nan')):.3f}"
                                                      for k in kinds) + " |")
    for method in methods:
        print(f"| {method} | **mean** | " + " | ".join(
            f"**{sum(tables[k].get((method, d), 0.0) for d in DIMENSIONS) / len(DIMENSIONS):.3f}**" for k in kinds) + " |")
    if len(methods) >= 2:
        print("\nbest method per dimension (lowest KL):\n")
        print("| dimension | " + " | ".join(annotators[k].name for k in kinds) + " |")
        print("|---|" + "---|" * len(kinds))
        flips = 0
        for dim in DIMENSIONS:
            best = [min(methods, key=lambda m: tables[k].get((m, dim), float("inf"))) for k in kinds]
            flips += len(set(best)) > 1
            print(f"| {dim} | " + " | ".join(best) + " |")
        print(f"\ndimensions whose best method changes with the annotator: {flips}/8")


if __name__ == "__main__":
    main()
