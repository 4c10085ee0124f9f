"""Do simulated posts read like posts, and mean fields like summaries? Prompt styles compared.

    .venv/bin/python benchmarks/post_style.py --styles chat timeline            # both styles, SPEC decoding
    .venv/bin/python benchmarks/post_style.py --styles timeline --policy-repetition-penalty 1.0

For a few TRAINING events (Twitter events of the gold-label file's event list, and the Weibo
train split; never the events the timeline style takes its example posts from, nor the test-sweep
events E102/E104/E106), each variant (prompt style x policy/mean-field repetition penalty)
simulates `state` and `mf` with the default model for a short horizon (warm-up of real posts,
then a few simulated steps) and reports, per method and per platform:

- posts: simulated agents; failed: generations still empty after their retries;
- describe_share: simulated posts that describe instead of speak, by this script's simple rules
  (DESCRIBE: starts "The user", "The author", "The answer is", "This post", "A tweet", "I'm
  writing", "As an AI", or mentions "mean field" / "summary"; Chinese equivalents);
  realism_describe_share: the same by mfray.eval.realism.describes_instead_of_speaking when that
  module exists;
- repost_share (and real_repost_share for the same agents' real posts): posts that start with
  "RT @" or a Weibo repost marker (转发微博, //@), or carry most of the topic's headline
  (at least 60% of the topic's first 8 content words, Chinese: character bigrams);
- copies_example_share: posts that carry most of one of the timeline style's example posts or
  example topics (other events: a leak of the examples, not of the event);
- mean_chars vs real_mean_chars;
- auc: mfray.eval.realism's real-vs-simulated discriminator (fitted on some events, scored on the
  others: folds grouped by event), when that module exists, else null with a note;
- for mf: distinct mean fields with mfray.eval.realism.mean_field_summary (all three aspects
  named, meta-text share) and the share of timeline mean-field lines copied word for word from
  the worked example (templates/<language>/timeline_examples.json).

Results (with sample posts beside the real ones and sample mean fields) go to --out, merged by
variant name so variants can be run in separate invocations. All rollouts of a variant run
concurrently through one in-process dynamic batcher over the local engine (mfray.llm.server),
so a step's policy prompts and the events' mean-field prompts share batches.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data"
GOLD = DATA / "labels" / "twitter_gold_240.jsonl"
EXCLUDED = {"E102", "E104", "E106"}  # the test sweep's Twitter events (runs/sweep_test_token)

DESCRIBE = re.compile(
    r"^\W*(?:the user|the author|the answer is|this post|a tweet|i'm writing|i am writing|as an ai)|"
    r"\bmean[- ]?field\b|\bsummary\b|"
    r"^\W*(?:该用户|这位用户|作者|答案是|这条微博|这篇|作为(?:一个)?(?:人工智能|AI))|平均场|总结", re.I)
URL = re.compile(r"https?://\S+|www\.\S+|\S+\.(?:com|ly|me|cn|co)/\S*")
REPOST_START = re.compile(r"^\s*(?:RT\s*@|转发微博|轉發微博|Repost\b)|//@", re.I)


def example_events() -> dict[str, set[str]]:
    """Event ids the timeline examples come from, per language (never benchmarked)."""
    out = {}
    for lang in ("en", "zh"):
        doc = json.loads((REPO / "mfray" / "prompts" / "templates" / lang / "timeline_examples.json").read_text())
        out[lang] = {e["event"] for e in doc["events"]}
    return out


def pick_events(n_twitter: int, n_weibo: int, min_agents: int, seed: int):
    """Seeded choice of training events with at least `min_agents` responses."""
    from mfray.data import load_files

    skip = set().union(*example_events().values()) | EXCLUDED
    gold = sorted({json.loads(line)["event"] for line in GOLD.read_text().splitlines() if line.strip()})
    twitter = [DATA / "twitter_rumdect" / f"{e}.json" for e in gold if e not in skip]
    weibo = sorted(p for p in (DATA / "weibo_rumdect" / "train").glob("*.json") if p.stem not in skip)
    chosen = []
    for files, n in ((twitter, n_twitter), (weibo, n_weibo)):
        rng = random.Random(seed)
        pool = list(files)
        rng.shuffle(pool)
        taken = 0
        for path in pool:
            if taken == n:
                break
            results, problems = load_files([str(path)])
            events = [e for r in results for e in r.events if len(e.responses) >= min_agents]
            if events:
                chosen.append(events[0])
                taken += 1
    return chosen


def content_units(text: str) -> list[str]:
    """Headline units: lower-case words of 3+ letters (Latin), or CJK character bigrams."""
    text = URL.sub(" ", text)
    cjk = re.findall(r"[\u3400-\u9fff]", text)
    if len(cjk) >= 4:
        run = "".join(cjk)
        return [run[i:i + 2] for i in range(len(run) - 1)]
    return [w for w in re.findall(r"[a-z0-9']+", text.lower()) if len(w) >= 3]


def is_repost(text: str, topic: str) -> bool:
    if REPOST_START.search(text):
        return True
    head = content_units(topic)[:8]
    if not head:
        return False
    have = set(content_units(text))
    return sum(u in have for u in head) / len(head) >= 0.6


def copies_example(text: str, language: str) -> bool:
    """The post carries most of a timeline example post or example topic (another event's)."""
    from mfray.prompts.render import timeline_examples

    have = set(content_units(REPOST_START.sub(" ", text)))
    for example in timeline_examples(language)["events"]:
        for source in (example["topic"], *example["posts"]):
            head = content_units(REPOST_START.sub(" ", source))[:8]  # a bare repost marker is no copy
            if head and sum(u in have for u in head) / len(head) >= 0.6:
                return True
    return False


def realism():
    try:
        from mfray.eval import realism as module
    except ImportError:
        return None
    return module


def platform(language: str) -> str:
    return "twitter" if language == "en" else "weibo"


def post_stats(rows: list[dict], rl, seed: int) -> dict:
    """Metrics of the simulated posts in `rows` (one dict per simulated agent)."""
    ok = [r for r in rows if not r["failed"] and r["sim"]]
    real = [r for r in rows if r["real"]]
    share = lambda n, d: round(n / d, 4) if d else None  # noqa: E731
    out = {
        "posts": len(rows),
        "failed": sum(r["failed"] or not r["sim"] for r in rows),
        "describe_share": share(sum(bool(DESCRIBE.search(r["sim"])) for r in ok), len(ok)),
        "repost_share": share(sum(is_repost(r["sim"], r["topic"]) for r in ok), len(ok)),
        "real_repost_share": share(sum(is_repost(r["real"], r["topic"]) for r in real), len(real)),
        "copies_example_share": share(sum(copies_example(r["sim"], r["language"]) for r in ok), len(ok)),
        "mean_chars": round(sum(len(r["sim"]) for r in ok) / len(ok), 1) if ok else None,
        "real_mean_chars": round(sum(len(r["real"]) for r in real) / len(real), 1) if real else None,
        "realism_describe_share": None,
        "auc": None,
        "auc_note": "mfray.eval.realism not available",
    }
    if rl is not None:
        out["realism_describe_share"] = share(sum(rl.describes_instead_of_speaking(r["sim"]) is not None for r in ok), len(ok))
        texts = {}
        for r in rows:
            real_side, sim_side = texts.setdefault(r["event"], ([], []))
            if r["real"]:
                real_side.append(r["real"])
            if r["sim"] and not r["failed"]:
                sim_side.append(r["sim"])
        disc = rl.discriminator_auc(*rl.balanced_sample(texts, seed, "bench"), seed=seed)
        out.update(auc=None if disc["auc"] != disc["auc"] else round(disc["auc"], 4), auc_note=disc["auc_note"],
                   auc_posts=disc["posts_scored"], auc_events=disc["events"])
    return out


def mean_field_stats(texts: list[str], language: str, rl) -> dict:
    from mfray.prompts.render import timeline_examples

    distinct = sorted(set(t for t in texts if t))
    worked = {line for example in timeline_examples(language)["worked"] for line in example["summary"]}
    lines = [ln.strip() for t in distinct for ln in t.splitlines() if ln.strip()]
    out = {"mean_fields": len(distinct), "mean_chars": round(sum(map(len, distinct)) / len(distinct), 1) if distinct else None,
           "copied_example_line_share": round(sum(ln in worked for ln in lines) / len(lines), 4) if lines else None}
    if rl is not None:
        out.update({k: (round(v, 4) if isinstance(v, float) and v == v else v)
                    for k, v in rl.mean_field_summary(distinct).items()})
    return out


async def simulate(events, variant: dict, args) -> dict:
    """Every (event, method) of one variant, concurrently through one dynamic batcher."""
    from mfray.llm.batching import BatchedLLM, DynamicBatcher
    from mfray.sim.config import RolloutConfig
    from mfray.sim.driver import run_event

    llm = BatchedLLM(DynamicBatcher(args.engine, max_batch=args.max_batch, window_s=0.05))
    runs = {}
    for method in args.methods:
        cfg = RolloutConfig(
            method=method, agents_per_step=args.agents_per_step, sim_start=args.sim_start, horizon=args.horizon,
            prompt_style=variant["style"],
            policy={"max_new_tokens": args.policy_max_new_tokens, "repetition_penalty": variant["policy_rp"]},
            mean_field={"temperature": 0.1, "max_new_tokens": args.mf_max_new_tokens, "first_line": False,
                        "repetition_penalty": variant["mf_rp"]},
        )
        for event in events:
            runs[(event.event_id, method)] = run_event(event, llm, cfg, seed=args.seed)
    done = await asyncio.gather(*runs.values())
    return dict(zip(runs.keys(), done))


def read_records(path: Path) -> dict:
    """{(event_id, method): [StepRecord]} from a records JSONL this script wrote."""
    from mfray.types import StepRecord

    out: dict = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        r = StepRecord(**json.loads(line))
        out.setdefault((r.event_id, r.method), []).append(r)
    return out


def summarise(events, records: dict, args, rl) -> dict:
    by_id = {e.event_id: e for e in events}
    out = {}
    for method in args.methods:
        rows, mfs = {}, {}
        for (event_id, m), recs in records.items():
            if m != method:
                continue
            event = by_id[event_id]
            for r in recs:
                if r.warmup or r.intervention:
                    continue
                rows.setdefault(platform(event.language), []).append({
                    "event": event_id, "topic": event.topic_text, "language": event.language, "real": (r.real_text or "").strip(),
                    "sim": (r.simulated_text or "").strip(), "failed": r.failed})
            if method == "mf":  # every mean field in force at some step (those written after warm-up steps too)
                mfs.setdefault(event.language, []).extend(r.mean_field for r in recs if r.mean_field)
        out[method] = {"tokens": {
            "prompt": sum(r.prompt_tokens for (_, m), recs in records.items() if m == method for r in recs),
            "completion": sum(r.completion_tokens for (_, m), recs in records.items() if m == method for r in recs),
            "note": "policy generations only (the mean field's are not in the records)"}}
        for plat, plat_rows in sorted(rows.items()):
            stats = post_stats(plat_rows, rl, args.seed)
            rng = random.Random(args.seed)
            sample = rng.sample(plat_rows, min(args.show, len(plat_rows)))
            stats["samples"] = [{"event": r["event"], "real": r["real"][:200], "sim": r["sim"][:200]} for r in sample]
            out[method][plat] = stats
        if method == "mf":
            out[method]["mean_field"] = {}
            for lang, texts in sorted(mfs.items()):
                stats = mean_field_stats(texts, lang, rl)
                distinct = sorted(set(texts))
                stats["samples"] = random.Random(args.seed).sample(distinct, min(3, len(distinct)))
                out[method]["mean_field"][platform(lang)] = stats
    return out


def show(name: str, result: dict) -> None:
    print(f"\n=== {name} ({result['seconds']} s)")
    for method, by_plat in result["methods"].items():
        for plat, s in by_plat.items():
            if plat == "tokens":
                print(f"  {method:5} policy tokens: prompt {s['prompt']}, completion {s['completion']}")
            if plat in ("mean_field", "tokens"):
                continue
            print(f"  {method:5} {plat:7} posts {s['posts']:3} failed {s['failed']:2} describe {s['describe_share']} "
                  f"copies-example {s['copies_example_share']} "
                  f"(realism {s['realism_describe_share']}) repost {s['repost_share']} (real {s['real_repost_share']}) "
                  f"chars {s['mean_chars']} (real {s['real_mean_chars']}) auc {s['auc']}")
            for ex in s["samples"][:4]:
                print(f"      real: {ex['real'][:110]!r}\n      sim:  {ex['sim'][:110]!r}")
        for plat, s in by_plat.get("mean_field", {}).items():
            keys = ("mean_fields", "mf_aspects_share", "mf_meta_share", "copied_example_line_share", "mean_chars")
            print(f"  mf mean field {plat}: " + ", ".join(f"{k} {s.get(k)}" for k in keys))
            for text in s["samples"][:2]:
                print("      " + text[:400].replace("\n", " | "))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--styles", nargs="+", default=["chat", "timeline"], choices=["chat", "timeline"])
    parser.add_argument("--policy-repetition-penalty", type=float, nargs="+", default=[1.2],
                        help="policy repetition penalties to try (each with each style; SPEC default 1.2)")
    parser.add_argument("--mf-repetition-penalty", type=float, default=None,
                        help="mean-field repetition penalty (default: the same as the policy's)")
    parser.add_argument("--twitter-events", type=int, default=4)
    parser.add_argument("--weibo-events", type=int, default=2)
    parser.add_argument("--methods", nargs="+", default=["state", "mf"], choices=["state", "recent", "popular", "mf"])
    parser.add_argument("--agents-per-step", type=int, default=16)
    parser.add_argument("--sim-start", type=int, default=32, help="warm-up agents (real posts)")
    parser.add_argument("--horizon", type=int, default=64, help="agents per event (simulated: horizon - sim-start)")
    parser.add_argument("--policy-max-new-tokens", type=int, default=40)
    parser.add_argument("--mf-max-new-tokens", type=int, default=120)
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=8, help="sample posts kept per method and platform")
    parser.add_argument("--model", default="default")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "post_style.json"))
    parser.add_argument("--records", default=str(REPO / "runs" / "post_style"),
                        help="folder for each variant's simulated records (JSONL, one StepRecord a line)")
    parser.add_argument("--reuse-records", action="store_true",
                        help="summarise a variant's records already in --records instead of simulating it again "
                             "(only after a change to this script's measures, never to prompts or the rollout)")
    args = parser.parse_args()

    from mfray.llm.local import LocalEngine

    events = pick_events(args.twitter_events, args.weibo_events, args.horizon, args.seed)
    print("events:", ", ".join(f"{e.event_id} ({e.language})" for e in events))
    args.engine = LocalEngine.load(args.model)
    rl = realism()
    if rl is None:
        print("mfray.eval.realism is not available: no discriminator AUC")
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {}
    results.setdefault("variants", {})
    for style in args.styles:
        for rp in args.policy_repetition_penalty:
            mf_rp = args.mf_repetition_penalty if args.mf_repetition_penalty is not None else rp
            variant = {"style": style, "policy_rp": rp, "mf_rp": mf_rp}
            name = f"{style} rp{rp:g}" + (f" mf-rp{mf_rp:g}" if mf_rp != rp else "")
            began = time.perf_counter()
            raw = Path(args.records) / f"{style}.rp{rp:g}.mf-rp{mf_rp:g}.jsonl"
            reused = args.reuse_records and raw.exists()
            if reused:  # summarise an earlier simulation again
                records = read_records(raw)
                print(f"reusing {raw}: {sum(map(len, records.values()))} records")
            else:
                records = asyncio.run(simulate(events, variant, args))
                raw.parent.mkdir(parents=True, exist_ok=True)
                with raw.open("w", encoding="utf-8") as f:
                    for recs in records.values():
                        for r in recs:
                            f.write(json.dumps(dataclasses.asdict(r), ensure_ascii=False) + "\n")
            seconds = results["variants"].get(name, {}).get("seconds") if reused else round(time.perf_counter() - began, 1)
            result = {**variant, "seconds": seconds,
                      "methods": summarise(events, records, args, rl)}
            show(name, result)
            results["variants"][name] = {
                **result,
                "command": (results["variants"].get(name, {}).get("command") if reused else None)
                or " ".join([".venv/bin/python benchmarks/post_style.py", *sys.argv[1:]]),
                "setup": {"model": args.model, "events": [e.event_id for e in events],
                          "agents_per_step": args.agents_per_step, "sim_start": args.sim_start, "horizon": args.horizon,
                          "policy_max_new_tokens": args.policy_max_new_tokens, "mf_max_new_tokens": args.mf_max_new_tokens,
                          "seed": args.seed, "methods": args.methods, "realism": rl is not None},
            }
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    print(f"\nwrote {out_path}")


if __name__ == "__main__":
    main()
