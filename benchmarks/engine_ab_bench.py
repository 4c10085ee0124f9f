"""Two settings of the local engine side by side in one process, on the policy prompts a real run
recorded (default: the E136 MF-MDP run):

  --compare drop               finished rows leaving the decode batch (LocalEngine.drop_finished)
                               against keeping them
  --compare shared-attention   a step's shared prompt prefix kept once in the KV cache
                               (mfray.llm.shared_attention) against copied into every row
  --compare lookup             timeline mean-field calls with prompt-lookup drafts of 10 tokens
                               (mfray.llm.lookup) against plain decoding

    .venv/bin/python benchmarks/engine_ab_bench.py --compare shared-attention
    .venv/bin/python benchmarks/engine_ab_bench.py --compare drop --trajectories runs/some_run --steps 4 --repeats 2
    .venv/bin/python benchmarks/engine_ab_bench.py --compare shared-attention --max-prompts 64 \
        --trajectories benchmarks/results/fidelity_study/runs/trajectories --out benchmarks/results/shared_prefixes_sweep_bench.json
    .venv/bin/python benchmarks/engine_ab_bench.py --compare lookup --steps 4 \
        --trajectories benchmarks/results/fidelity_study/runs/trajectories/method=mf

Each chosen step's generated agents' prompts (the `policy_prompt` column) are generated again as
one batch with the SPEC policy sampling of the timeline style (temperature 0.8, top-p 0.85,
top-k 50, no repetition penalty, 50 new tokens, first line), every prompt with its own seed,
once with each setting, alternating which goes first. A step of a sweep's folder holds every run of
that event and step (methods, seeds), so the engine's batches stack several runs, each with its
own prefix, as a sweep's do; `--max-prompts` keeps the first prompts of each step (in
text order, which keeps each run's prompts together) to bound the time. Reported: seconds per setting, decode rows
forwarded, their ratios, and whether every text came out the same (neither setting changes a
row's tokens: dropping a row changes no other row's arithmetic; the shared prefix is attended
in another order of float sums, so a text may differ where two tokens tie to ~1e-6).

`--compare lookup` rebuilds mean-field calls instead: for each chosen step of an mf run (a sweep's
`method=mf` folder), the timeline mean-field prompt of that step (the previous step's mean field,
the step's posts), `--max-prompts` of them (default 3: a sweep's mean-field calls hold 1-4)
generated as one call with the fidelity sweep's mean-field sampling (temperature 0.1, top-p 0.85,
top-k 50, 100 new tokens), with and without drafts. The two arms draw differently from the same
distribution, so their texts may differ; "same_texts" says whether they did not.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def step_prompts(folder: Path, steps: int, max_prompts: int | None = None) -> list[list]:
    """The policy prompts of the first `steps` steps that have generated agents, one list per step
    (at most `max_prompts` each, the first in text order: a run's prompts stay together)."""
    import pyarrow.parquet as pq

    from mfray.sim.trajectory import decode_prompt

    by_step: dict[tuple, list] = defaultdict(list)
    for path in sorted(glob.glob(str(folder / "**" / "*.parquet"), recursive=True)):
        for row in pq.read_table(path, columns=["event_id", "step", "agent_index", "policy_prompt"]).to_pylist():
            if row["policy_prompt"]:
                by_step[(row["event_id"], int(row["step"]))].append(decode_prompt(row["policy_prompt"]))
    chosen = [sorted(by_step[k], key=json.dumps)[:max_prompts] for k in sorted(by_step)[:steps]]
    if not chosen:
        raise SystemExit(f"no generated agents with a recorded policy prompt under {folder}")
    return chosen


def mean_field_calls(folder: Path, steps: int, per_call: int) -> list[list]:
    """Timeline mean-field prompts rebuilt from an mf run's trajectories: for each of the first
    `steps` (event, step) pairs with generated agents, `per_call` prompts (one per seed and run
    found, then repeated), each from the previous step's mean field and the step's posts."""
    import pyarrow.parquet as pq

    from mfray.prompts.render import mean_field_prompt

    rows = [r for path in sorted(glob.glob(str(folder / "**" / "*.parquet"), recursive=True))
            for r in pq.read_table(path, columns=["event_id", "seed", "step", "topic", "language", "mean_field",
                                                  "simulated_text", "real_text", "warmup"]).to_pylist()]
    by_run: dict[tuple, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by_run[(r["event_id"], r["seed"])][int(r["step"])].append(r)
    prompts: dict[tuple, list] = defaultdict(list)
    for (event, _seed), by_step in sorted(by_run.items()):
        for step, agents in sorted(by_step.items()):
            if agents[0]["warmup"] or step - 1 not in by_step:
                continue
            comments = [{"text": a["simulated_text"] or a["real_text"], "state": ""} for a in agents]
            prompts[(event, step)].append(mean_field_prompt(
                "timeline", agents[0]["language"], agents[0]["topic"], by_step[step - 1][0]["mean_field"], comments))
    chosen = [(p * per_call)[:per_call] for _, p in sorted(prompts.items())[:steps]]
    if not chosen:
        raise SystemExit(f"no mf run with generated steps under {folder}")
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", choices=["drop", "shared-attention", "lookup"], default="drop")
    ap.add_argument("--trajectories", type=Path, default=REPO / "benchmarks/results/long_mfmdp/run")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-prompts", type=int, help="at most this many prompts of each step (default: all; lookup: 3)")
    ap.add_argument("--threads", type=int, default=2,
                    help="torch threads (the long runs use 1 each, two runs on the two cores)")
    ap.add_argument("--out", type=Path, help="default: benchmarks/results/<compare>_bench.json")
    args = ap.parse_args()
    out = args.out or REPO / f"benchmarks/results/{args.compare.replace('-', '_')}_bench.json"

    import torch

    from mfray.llm.base import SamplingParams
    from mfray.llm.local import LocalEngine

    torch.set_num_threads(args.threads)
    if args.compare == "lookup":
        steps = mean_field_calls(args.trajectories, args.steps, args.max_prompts or 3)
    else:
        steps = step_prompts(args.trajectories, args.steps, args.max_prompts)
    # (new setting, old setting): the names of the two arms in the results
    names = {"drop": ("drop", "keep"), "shared-attention": ("shared", "copied"), "lookup": ("lookup", "plain")}[args.compare]
    new_engine = LocalEngine.load("default")
    if args.compare == "drop":
        old_engine = dataclasses.replace(new_engine, drop_finished=False)
    elif args.compare == "shared-attention":
        old_engine = LocalEngine.load("default")  # its own model: the attention setting is the model's
        old_engine.model.set_attn_implementation("sdpa")
    else:
        old_engine = new_engine
    engines = dict(zip(names, (new_engine, old_engine)))
    if args.compare == "lookup":
        plain = SamplingParams(temperature=0.1, top_p=0.85, top_k=50, repetition_penalty=1.0, max_new_tokens=100)
        samplings = {"lookup": dataclasses.replace(plain, lookup=10), "plain": plain}
    else:
        sp = SamplingParams(temperature=0.8, top_p=0.85, top_k=50, repetition_penalty=1.0, max_new_tokens=50,
                            first_line=True)
        samplings = dict.fromkeys(names, sp)
    totals = {name: {"seconds": 0.0, "rows": 0} for name in names}
    same, lengths = True, []
    for repeat in range(args.repeats):
        for i, prompts in enumerate(steps):
            seeds = list(range(1000 * i, 1000 * i + len(prompts)))
            texts = {}
            order = list(engines.items())
            for name, engine in order if (repeat + i) % 2 == 0 else order[::-1]:
                rows, began = engine.stats.decode_rows, time.perf_counter()
                gens = engine.generate_sync(prompts, samplings[name], seeds=seeds)
                totals[name]["seconds"] += time.perf_counter() - began
                totals[name]["rows"] += engine.stats.decode_rows - rows
                texts[name] = [g.text for g in gens]
                if repeat == 0 and name == names[0]:
                    lengths.append([g.completion_tokens for g in gens])
            equal = texts[names[0]] == texts[names[1]]
            same &= equal
            print(f"repeat {repeat} step {i}: {len(prompts)} prompts, same texts {equal}", flush=True)
    new, old = names
    result = {"command": "benchmarks/engine_ab_bench.py " + " ".join(sys.argv[1:]), "compare": args.compare, "threads": args.threads,
              "trajectories": str(args.trajectories), "steps": len(steps), "prompts_per_step": [len(p) for p in steps],
              "completion_tokens": lengths, "repeats": args.repeats, **totals,
              f"time_ratio_{old}_over_{new}": totals[old]["seconds"] / totals[new]["seconds"],
              f"rows_ratio_{old}_over_{new}": totals[old]["rows"] / totals[new]["rows"], "same_texts": same}
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "completion_tokens"}, indent=2))


if __name__ == "__main__":
    main()
