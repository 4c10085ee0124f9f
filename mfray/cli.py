"""`mfray` command line: demo, data, simulate, evaluate, train, serve."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from mfray.data_cli import add_data_commands

EPILOG = """examples:
  mfray demo                                   MF-LLM rollout of the bundled demo event
  mfray data validate ../shared/data           report every problem in event files
  mfray simulate --events ../shared/data/weibo_rumdect/test/3476055656644087.json \\
      --method mf --method state --horizon 96 --out runs/liu
  mfray train ibtune --config jobs/configs/train_ibtune.yaml   IB-Tune on Ray Train (CPU or GPU)
  mfray serve --port 8000                      OpenAI-compatible server on the local engine
Configs are YAML (see jobs/configs/); any value can be overridden with --set a.b=value."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="mfray",
        description="Simulate how a population's posts evolve around an event (MF-LLM).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from mfray.eval.annotators import LOCAL_ANNOTATORS
    from mfray.sim.methods import REGISTRY

    sub = parser.add_subparsers(dest="command", required=True)
    add_data_commands(sub)

    demo = sub.add_parser("demo", help="run MF-LLM on the bundled demo event with the default model and the "
                          "IB-Tune adapters shipped in mfray/adapters (`make adapters` retrains them)")
    demo.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)

    sim = sub.add_parser(
        "simulate",
        help="simulate events with one or more methods, write one Parquet trajectory per run",
        description="Simulate events (Weibo rumdect, crawled Twitter or canonical files) and write "
        "one Parquet file per (event, method, seed) under --out. A finished run made under the same config, "
        "model, adapters and mfray version is skipped; one made differently is refused (or redone with --overwrite); "
        "a run killed midway resumes from its last checkpoint.",
    )
    sim.add_argument("--config", help="SimulateConfig YAML (e.g. jobs/configs/simulate.yaml)")
    sim.add_argument("--events", nargs="+", metavar="PATH", help="event files or directories")
    sim.add_argument("--method", action="append", dest="methods", metavar="METHOD",
                     help="repeatable (default mf): " + "; ".join(f"{m.name}: {m.summary}" for m in REGISTRY.values()))
    sim.add_argument("--horizon", type=int, help="agents to simulate (default 300)")
    sim.add_argument("--agents-per-step", type=int, help="agents per timestep N_t (default 16)")
    sim.add_argument("--sim-start", type=int, help="first generated agent; earlier ones act for real (default 48)")
    sim.add_argument("--seed", type=int, action="append", dest="seeds", help="repeatable (default 0)")
    sim.add_argument("--out", help="output directory")
    sim.add_argument("--model", help="'default', a .gguf file or a Hugging Face model directory")
    sim.add_argument("--overwrite", action="store_true", default=None,
                     help="redo runs whose output in --out was made under another config, model or version "
                     "(default: refuse to mix them)")
    sim.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="dotted override, e.g. rollout.policy.max_new_tokens=24")
    sim.set_defaults(func=cmd_simulate)

    ev = sub.add_parser(
        "evaluate",
        help="annotate trajectories and compute KL, Wasserstein, DTW and F1 per dimension, with plots",
        description="Annotate the real and simulated posts of every trajectory in --trajectories with the "
        "same annotator, compute SPEC section 5 metrics over agents --eval-start..--eval-end, and write "
        "tables (Markdown + CSV), trajectory plots and radar charts under --out.",
    )
    ev.add_argument("--config", help="EvaluateConfig YAML (e.g. jobs/configs/evaluate.yaml)")
    ev.add_argument("--trajectories", help="folder of trajectory Parquet files")
    ev.add_argument("--out", help="output folder (default runs/evaluate)")
    ev.add_argument("--annotator", choices=["offline", "learned", "hybrid", "llm"],
                    help="hybrid (default: the rules, with attitude, behaviour and subjectivity from a model fitted at "
                    "start on the gold file and the development sets; best measured on unseen events), offline "
                    "(the rules alone), learned, or llm (needs endpoint.*)")
    ev.add_argument("--eval-start", type=int, help="first evaluated agent (default 50)")
    ev.add_argument("--eval-end", type=int, help="end of the evaluated agents, exclusive (default 300)")
    nll_flags = ev.add_mutually_exclusive_group()
    nll_flags.add_argument("--nll-model", help="policy model scoring NLL of the real actions (default: 'default')")
    nll_flags.add_argument("--no-nll", action="store_true", help="skip NLL (no policy model is loaded)")
    ev.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override")
    ev.set_defaults(func=cmd_evaluate)

    tr = sub.add_parser(
        "train",
        help="IB-Tune (policy + mean-field LoRA adapters), SFT or LCT-Policy on real events, on Ray Train",
        description="Fine-tune LoRA adapters on real events (SPEC section 7) with Ray Train workers: DeepSpeed "
        "ZeRO-2 (bf16) on GPU workers, the same loop with a gloo all-reduce on CPU. A killed worker is "
        "restarted from the last checkpoint. Writes <out>/adapters/<name>/ (PEFT folders that `mfray simulate "
        "--set model.adapters.NAME=PATH` and vLLM load), <out>/training_curves.png and <out>/summary.json "
        "with the held-out policy NLL before vs after.",
    )
    tr.add_argument("mode", choices=["ibtune", "sft", "lct"],
                    help="ibtune: policy + mean-field adapters (MF-LLM); sft: the policy on real posts; lct: "
                    "LCT-Policy, MF-MDP's lookahead training of the policy (adapter lct_policy, from all-real mfmdp runs)")
    tr.add_argument("--config", required=True, help="TrainConfig YAML (e.g. jobs/configs/train_ibtune.yaml)")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, e.g. steps=4")
    tr.add_argument("--address", help="Ray cluster to join (default: start a local one)")
    tr.set_defaults(func=cmd_train)

    adapters = sub.add_parser(
        "init-adapters",
        help="write untrained LoRA adapters (rank 64, all linear layers) named sft, ib_policy, ib_mean_field, lct_policy",
        description="Untrained adapters compute exactly the base model (LoRA B starts at zero): they let the "
        "sft, mf_ibtune and mfmdp_lct methods run before training has produced real ones.",
    )
    adapters.add_argument("--model", default="default")
    adapters.add_argument("--out", required=True, help="directory; one subdirectory per adapter")
    adapters.set_defaults(func=cmd_init_adapters)

    serve = sub.add_parser("serve", help="OpenAI-compatible HTTP server over the local engine")
    serve.add_argument("--model", default="default",
                       help="'default', a .gguf file or a HF directory; 'standin' answers canned text at once "
                            "(for measuring orchestration, never a simulation result)")
    serve.add_argument("--name", help="model name clients send (default: mfray-default; standin for --model standin)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: local only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-queue", type=_positive_int, default=256, metavar="N",
                       help="prompts that may wait for the engine; beyond, requests get 429 + Retry-After "
                       "(default 256)")
    serve.add_argument("--max-prompt-tokens", type=_positive_int, metavar="N",
                       help="longer prompts get 400 (default: the model's context length)")
    serve.add_argument("--max-request-tokens", type=_positive_int, default=32768, metavar="N",
                       help="cap on prompts x max_tokens of one request; beyond, 413 (default 32768)")
    serve.add_argument("--api-key-env", metavar="NAME",
                       help="require 'Authorization: Bearer <key>' on every /v1 route, the key read from the "
                       "environment variable NAME (never from a flag: command lines are visible to other users)")
    serve.set_defaults(func=cmd_serve)

    ep = sub.add_parser(
        "endpoint", help="the simulation endpoint and its web page, in this process (no Ray cluster needed)",
        description="Create simulations of stored or uploaded events over HTTP, watch them on the page at "
        "http://HOST:PORT/ (real vs simulated label shares per step, the mean field, posts side by side), "
        "intervene, set signals, fork what-ifs. API docs at /docs. On a Ray cluster: serve_configs/endpoint.yaml.")
    ep.add_argument("--model", default="default",
                    help="'default' (SmolLM2-135M-Instruct), a .gguf file or a HF directory; 'standin' answers canned "
                         "text at once (to try the page and API without a model; never a simulation result)")
    ep.add_argument("--events", action="append", metavar="DIR",
                    help="folder of event files to offer by id (repeatable; default: the bundled demo event and, "
                         "if present, $MFRAY_DATA or ../shared/data: twitter_rumdect, weibo_rumdect)")
    ep.add_argument("--store", default="runs/endpoint", help="where simulations and uploads are kept (default runs/endpoint)")
    ep.add_argument("--annotator", default="offline", choices=LOCAL_ANNOTATORS,
                    help="labels posts for the live shares and metrics (default offline)")
    ep.add_argument("--max-live", type=_positive_int, default=4, metavar="N",
                    help="simulations running or paused at once; one more gets 429 (default 4)")
    ep.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1: local only; any other "
                                                        "needs --token-env)")
    ep.add_argument("--port", type=int, default=8100)
    ep.add_argument("--token-env", metavar="NAME",
                    help="require 'Authorization: Bearer <token>' on /api, the token read from the environment "
                         "variable NAME (the page asks for it)")
    ep.set_defaults(func=cmd_endpoint)

    args = parser.parse_args(argv)
    return args.func(args)


def cmd_demo(args: argparse.Namespace) -> int:
    from mfray.sim.config import RolloutConfig, SimulateConfig
    from mfray.train.lora import SHIPPED_ADAPTERS

    # A short run that still shows the loop: 2 warm-up steps of real posts, then 4 simulated
    # steps, each followed by a mean-field update; MF-LLM with its IB-Tune adapters (mf_ibtune).
    rollout = RolloutConfig(
        method="mf_ibtune", horizon=48, agents_per_step=8, sim_start=16,
        policy={"max_new_tokens": 40}, mean_field={"temperature": 0.1, "max_new_tokens": 120, "first_line": False},
    )
    adapters = {name: str(SHIPPED_ADAPTERS / name) for name in ("ib_policy", "ib_mean_field")}
    # overwrite: a demo folder left by another version (other prompts, model) is simply redone.
    cfg = SimulateConfig(events=[], methods=["mf_ibtune"], seeds=[args.seed], out=args.out, rollout=rollout, overwrite=True,
                         model={"adapters": adapters})
    from mfray.data import load_demo_event

    event = load_demo_event()
    print(f"demo event {event.event_id!r}: {len(event)} responses, language {event.language}")
    print(f"topic: {event.topic_text}")
    print(f"method: mf_ibtune (MF-LLM, default model + IB-Tune adapters from {SHIPPED_ADAPTERS}; `make adapters` retrains them)\n")
    if _simulate([event], cfg):
        return 1
    from mfray.sim.store import published_runs, read_runs
    from mfray.sim.trajectory import run_name

    run = published_runs(cfg.out)[run_name(event.event_id, "mf_ibtune", args.seed)]
    records = next(read_runs([run]))[1]
    simulated = [r for r in records if not r.warmup]
    print(f"\ntrajectory: {run.part} ({len(records)} agents, {len(simulated)} simulated)")
    print("\nreal vs simulated posts (first simulated step):")
    for r in simulated[:8]:
        print(f"  agent {r.agent_index:>3}  real: {_short(r.real_text)}")
        print(f"             sim:  {_short(r.simulated_text) if not r.failed else '<generation failed>'}")
    print("\nmean field in force at the last step:")
    for line in (records[-1].mean_field or "-").splitlines():
        print(f"  {_short(line, 200)}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from mfray.config import ConfigError, load_config
    from mfray.data import load_files
    from mfray.data.validate import duplicate_ids
    from mfray.sim.config import SimulateConfig

    flags = {
        "events": args.events, "methods": args.methods, "seeds": args.seeds, "out": args.out, "overwrite": args.overwrite,
        "model": {"path": args.model},
        "rollout": {"horizon": args.horizon, "agents_per_step": args.agents_per_step, "sim_start": args.sim_start},
    }
    try:
        cfg = load_config(SimulateConfig, args.config, args.set, _drop_none(flags))
    except ConfigError as err:
        print(f"mfray simulate: {err}", file=sys.stderr)
        return 2
    if not cfg.events:
        print("mfray simulate: no events given (use --events PATH... or events: in --config)", file=sys.stderr)
        return 2
    results, problems = load_files(cfg.events)
    duplicates = duplicate_ids(results)
    if duplicates:
        print("mfray simulate: " + "\n  ".join(["the same event id in two files:", *duplicates]), file=sys.stderr)
        return 2
    problems += [p for r in results for p in r.problems]
    events = [e for r in results for e in r.events]
    for p in problems:
        print(f"skipped: {p}", file=sys.stderr)
    if not events:
        print("mfray simulate: no valid event to simulate", file=sys.stderr)
        return 1
    errors = _simulate(events, cfg)
    return 1 if problems or errors else 0


def _simulate(events, cfg) -> int:
    """Run every (event, method, seed) not already in cfg.out's dataset (mfray.sim.store); return
    the number of runs that ended in an error (each printed)."""
    from tqdm import tqdm

    from mfray.llm import build_llm
    from mfray.sim.checkpoint import (
        IdentityMismatch, checkpointed_records, finished_run, refuse_mixing, run_events, run_metadata,
    )
    from mfray.sim.identity import config_identity
    from mfray.sim.store import RunFiles, dataset_root

    if cfg.endpoint is None:  # a remote server knows its own adapters; the local engine must be told
        for method in cfg.methods:
            for role, name in zip(("policy", "mean field"), cfg.rollout.model_copy(update={"method": method}).adapters()):
                if name is not None and name not in cfg.model.adapters:
                    raise SystemExit(
                        f"mfray simulate: method {method} needs a LoRA adapter named {name!r} for the {role} model; "
                        f"give it with --set model.adapters.{name}=PATH (IB-Tune/SFT training writes these)"
                    )
    identities = {m: config_identity(cfg, m, use_endpoint=cfg.endpoint is not None) for m in cfg.methods}
    if not cfg.overwrite:
        try:
            refuse_mixing(cfg.out, identities)
        except IdentityMismatch as err:
            raise SystemExit(f"mfray simulate: {err}") from None
    runs = [(m, s) for m in cfg.methods for s in cfg.seeds]
    todo = [(m, s, [e for e in events if finished_run(cfg.out, RunFiles.of(cfg.out, e.event_id, m, s),
                                                      run_metadata(identities[m], e, m, s, complete=True)) is None])
            for m, s in runs]
    total = sum(len(evs) for _, _, evs in todo) * cfg.rollout.horizon
    # Resumed runs start their progress where their checkpoints are, not at zero.
    resumed = 0 if cfg.overwrite else sum(
        checkpointed_records(RunFiles.of(cfg.out, e.event_id, m, s), run_metadata(identities[m], e, m, s, complete=False))
        for m, s, evs in todo for e in evs)
    if total == 0:
        print(f"all {len(runs) * len(events)} trajectories already in {dataset_root(cfg.out)}; nothing to do")
        return 0
    began = time.perf_counter()
    llm = build_llm(cfg.model, cfg.endpoint)
    if cfg.endpoint is None:
        # The local engine serves one call at a time: without merging, the events in flight would
        # take turns with a batch each (a mean-field call is one prompt). The batcher merges their
        # concurrent calls into batches; each prompt keeps its own seed.
        from mfray.llm.batching import BatchedLLM, DynamicBatcher

        llm = BatchedLLM(DynamicBatcher(llm, max_batch=cfg.model.max_batch), adapters=tuple(cfg.model.adapters))
    print(f"model ready in {time.perf_counter() - began:.1f}s")
    failures = errors = 0
    if resumed:
        print(f"resuming: {resumed} of {total} actions already checkpointed")
    with tqdm(total=total, initial=resumed, unit="agent", desc="simulating") as bar:
        for method, seed, evs in todo:
            rollout = cfg.rollout.model_copy(update={"method": method})
            results = asyncio.run(run_events(evs, llm, rollout, seed, cfg.out, identities[method], cfg.concurrency,
                                             on_step=lambda recs: bar.update(len(recs)), overwrite=cfg.overwrite))
            for res in results:
                if res.error:
                    errors += 1
                    print(f"event {res.event_id} ({method}, seed {seed}) failed: {res.error}", file=sys.stderr)
                elif res.stats is not None:
                    failures += res.stats.failures
    print(f"done in {time.perf_counter() - began:.0f}s; {failures} failed generations, {errors} runs ended in "
          f"an error; trajectories in {dataset_root(cfg.out)} (a Parquet dataset: pyarrow.dataset or ray.data.read_parquet)")
    return errors


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mfray.config import ConfigError, load_config
    from mfray.eval.config import EvaluateConfig
    from mfray.eval.inputs import INCOMPLETE_NAME, evaluable_runs
    from mfray.eval.run import evaluate

    flags = {"trajectories": args.trajectories, "out": args.out, "annotator": args.annotator,
             "eval_start": args.eval_start, "eval_end": args.eval_end, "nll_model": args.nll_model}
    try:
        off = ["nll_model=null"] if args.no_nll else []
        cfg = load_config(EvaluateConfig, args.config, args.set + off, _drop_none(flags))
    except ConfigError as err:
        print(f"mfray evaluate: {err}", file=sys.stderr)
        return 2
    try:
        complete, incomplete = evaluable_runs(cfg.trajectories)
        if incomplete:
            print(f"left out {len(incomplete)} incomplete runs (running, killed or failed; listed in "
                  f"{Path(cfg.out) / INCOMPLETE_NAME}): {', '.join(incomplete[:10])}"
                  + (" ..." if len(incomplete) > 10 else ""), file=sys.stderr)
        with tqdm(total=len(complete), unit="trajectory", desc="evaluating") as bar:
            evaluate(cfg, progress=lambda _: bar.update(1))
    except (FileNotFoundError, ValueError) as err:
        print(f"mfray evaluate: {err}", file=sys.stderr)
        return 1
    print((Path(cfg.out) / "kl.md").read_text(encoding="utf-8"))
    if cfg.realism:
        print((Path(cfg.out) / "realism.md").read_text(encoding="utf-8"))
    print((Path(cfg.out) / "nll.md").read_text(encoding="utf-8"))
    print(f"tables, plots and radar charts in {cfg.out}/")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    import json

    from mfray.config import ConfigError, load_config
    from mfray.ray.train import connect, run_training
    from mfray.train.config import TrainConfig

    try:
        cfg = load_config(TrainConfig, args.config, args.set, {"mode": args.mode})
    except ConfigError as err:
        print(f"mfray train: {err}", file=sys.stderr)
        return 2
    connect(args.address)
    print(json.dumps(run_training(cfg), indent=2))
    return 0


def cmd_init_adapters(args: argparse.Namespace) -> int:
    from mfray.train.lora import init_adapters

    for name, path in init_adapters(args.model, args.out).items():
        print(f"--set model.adapters.{name}={path}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from mfray.llm import load_engine
    from mfray.http_common import is_loopback, serve
    from mfray.llm.server import build_app

    api_key = _secret_from_env("serve", "--api-key-env", args.api_key_env)
    if api_key == "":
        return 2
    if api_key is None and not is_loopback(args.host):
        # A warning, not a refusal: a trusted private network or a firewall may make it safe.
        print(f"mfray serve: WARNING: listening on {args.host} with no API key: anyone who can reach port "
              f"{args.port} can use the model; pass --api-key-env NAME, or bind 127.0.0.1", file=sys.stderr)
    engine = load_engine(args.model)
    name = args.name or ("standin" if args.model == "standin" else "mfray-default")
    max_prompt_tokens = args.max_prompt_tokens or _context_length(engine)
    app = build_app(engine, name, max_queue=args.max_queue, max_prompt_tokens=max_prompt_tokens,
                    max_request_tokens=args.max_request_tokens, api_key=api_key)
    auth = f"bearer key from ${args.api_key_env}" if api_key else "none"
    print(f"limits: queue {args.max_queue} prompts, prompt {max_prompt_tokens} tokens, "
          f"request {args.max_request_tokens} new tokens; auth: {auth}")
    serve(app, host=args.host, port=args.port)
    return 0


def cmd_endpoint(args: argparse.Namespace) -> int:
    from mfray.endpoint.local import build_local_endpoint
    from mfray.http_common import is_loopback, serve

    token = _secret_from_env("endpoint", "--token-env", args.token_env)
    if token == "":
        return 2
    if token is None and not is_loopback(args.host):
        print(f"mfray endpoint: refusing to listen on {args.host} without a token: anyone who can reach port "
              f"{args.port} could run simulations on this machine. Pass --token-env NAME, or bind 127.0.0.1",
              file=sys.stderr)
        return 2
    try:
        app = build_local_endpoint(args.model, args.events, args.store, args.annotator, args.max_live, token)
    except (FileNotFoundError, ValueError) as err:
        print(f"mfray endpoint: {err}", file=sys.stderr)
        return 2
    print(f"mfray endpoint: http://{args.host}:{args.port}/ (page), /docs (API); store {args.store}; "
          f"auth: {'bearer token from $' + args.token_env if token else 'none (loopback only)'}")
    serve(app, host=args.host, port=args.port)
    return 0


def _secret_from_env(command: str, flag: str, name: str | None) -> str | None:
    """The secret in environment variable `name` (named by `flag`), None when no variable is
    named, or "" after printing why when it is unset or empty (the caller exits with 2). Secrets
    come from the environment, never from a flag: command lines are visible to other users."""
    import os

    if not name:
        return None
    value = os.environ.get(name, "")
    if not value:
        print(f"mfray {command}: environment variable {name} (named by {flag}) is unset or empty; "
              f"export the secret in it, or drop {flag}", file=sys.stderr)
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _context_length(engine, fallback: int = 4096) -> int:
    """The model's context length (its position embeddings), or `fallback` for a config without one."""
    config = getattr(getattr(engine, "model", None), "config", None)  # the stand-in has no model
    return int(getattr(config, "max_position_embeddings", None) or fallback)


def _drop_none(tree: dict) -> dict:
    """Flags the user did not give are None: they must not override the config file."""
    out = {}
    for key, value in tree.items():
        value = _drop_none(value) if isinstance(value, dict) else value
        if value not in (None, {}):
            out[key] = value
    return out


def _short(text: str | None, limit: int = 110) -> str:
    if text is None:
        return "-"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


if __name__ == "__main__":
    sys.exit(main())
