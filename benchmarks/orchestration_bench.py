"""The sweep's own ceiling with the model taken out, and a 10,000-run sweep's memory.

    .venv/bin/python benchmarks/orchestration_bench.py ceiling        # actions/s: in-process, endpoint, serve
    .venv/bin/python benchmarks/orchestration_bench.py scale --runs 10000   # flat memory? complete output?

Every LLM answer comes from the stand-in (mfray.llm.standin: canned text, at once), behind the
real serving paths, so what is measured is the orchestration: the rollout state machine, prompt
rendering, the event loop, HTTP and JSON or Serve handle calls, Ray Data, checkpoints and the
Parquet dataset. Nothing here is a simulation result.

ceiling: Twitter events x seeds of a fixed rollout (method mf, horizon 64, 16 agents a step, 16
warm-up agents: 48 simulated actions and 3 policy + 3 mean-field calls per run).
- inprocess: mfray.sim.checkpoint.run_events in this process on the stand-in object: no Ray, no
  HTTP; timed, then run again under cProfile, whose time is split into parts (PARTS: rendering,
  digest, Parquet, JSON, rollout, event loop...);
- endpoint: the Ray sweep (jobs/simulate_sweep.run_sweep) against `mfray serve --model standin`
  in its own process, one HTTP request per prompt as vLLM's server takes them;
- serve: the Ray sweep against the LLMServer deployment built on the stand-in (Serve handle calls).
For the two sweeps, a grid of actors x runs in flight per actor x grid rows per actor call.
Actions/s counts simulated (non-warm-up) actions; LLM requests/s counts prompts answered (one
OpenAI-compatible request each), from the server's own counters.

scale: `--runs N` (event, seed) runs of a short horizon (32 agents, 16 warm-up, 8 a step) on the
Twitter events, through the serve backend, sampling the RSS of every process (driver, GCS,
raylet, actors, replica) into rss.csv and rss.png; then checks the dataset holds every run once
and times a rerun (which must skip them all).

Results go to --out (default runs/orchestration_bench) as JSON, and are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # jobs/ is not a package on the path

TWITTER = REPO.parent / "shared" / "data" / "twitter_rumdect"
CEILING_ROLLOUT = {"method": "mf", "horizon": 64, "agents_per_step": 16, "sim_start": 16,
                   "policy": {"max_new_tokens": 24}, "mean_field": {"max_new_tokens": 64, "first_line": False}}
SCALE_ROLLOUT = {"method": "mf", "horizon": 32, "agents_per_step": 8, "sim_start": 16,
                 "policy": {"max_new_tokens": 24}, "mean_field": {"max_new_tokens": 64, "first_line": False}}
# cProfile's functions by file (or builtin's name), grouped into parts (first match wins).
# cProfile sees the main thread only: `publish` runs in a worker thread (asyncio.to_thread), and
# the main thread's wait for it shows as the event loop's epoll.
PARTS = (("prompt rendering", ("mfray/prompts/", "jinja2/")),
         ("event digest", ("mfray/sim/identity.py",)),
         ("Parquet writes and checkpoints", ("mfray/sim/trajectory.py", "mfray/sim/store.py", "mfray/files.py", "pyarrow/")),
         ("JSON (event digests, prompts stored with each action)", ("json/", "_json.")),
         ("stand-in LLM", ("mfray/llm/standin.py",)),
         ("rollout state machine", ("mfray/sim/rollout.py", "mfray/sim/context.py", "mfray/data/state.py",
                                    "mfray/sim/checkpoint.py", "mfray/sim/driver.py")),
         ("event loop idle (waiting for the publish thread)", ("select.epoll",)),
         ("asyncio event loop", ("asyncio/",)))


def event_files(n: int) -> list[str]:
    files = sorted(TWITTER.glob("*.json"))
    if not files:
        raise SystemExit(f"no Twitter event files under {TWITTER} (set the data folder beside the repo)")
    return [str(f) for f in files[:n]]


def simulated_actions(rollout: dict) -> int:
    return rollout["horizon"] - rollout["sim_start"]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


# ---- in-process ------------------------------------------------------------------------------
def inprocess(files: list[str], seeds: int, out: Path) -> dict:
    """run_events over every (event, seed) on the stand-in object, profiled."""
    from mfray.data import load_events
    from mfray.llm.standin import StandInLLM
    from mfray.sim.checkpoint import run_events
    from mfray.sim.config import RolloutConfig
    from mfray.sim.identity import make_identity

    events, problems = load_events(files)
    assert not problems, problems
    cfg = RolloutConfig.model_validate(CEILING_ROLLOUT)
    identity = make_identity(cfg, {"weights": "standin"})
    llm = StandInLLM()
    shutil.rmtree(out, ignore_errors=True)
    asyncio.run(run_events(events[:4], llm, cfg, 99, out / "warm-up", identity))  # imports, template compiles
    llm.stats.requests = 0

    async def all_runs(folder: Path) -> None:
        for seed in range(seeds):
            await run_events(events, llm, cfg, seed, folder, identity, concurrency=64, every=4)

    began = time.perf_counter()
    asyncio.run(all_runs(out / "timed"))
    elapsed = time.perf_counter() - began
    requests = llm.stats.requests
    profile = cProfile.Profile()
    began = time.perf_counter()
    profile.enable()
    asyncio.run(all_runs(out / "profiled"))
    profile.disable()
    profiled = time.perf_counter() - began
    actions = len(events) * seeds * simulated_actions(CEILING_ROLLOUT)
    return {"runs": len(events) * seeds, "seconds": round(elapsed, 2), "actions_per_s": round(actions / elapsed, 1),
            "requests_per_s": round(requests / elapsed, 1), "profiled_seconds": round(profiled, 2),
            "profile_s": profile_parts(profile, profiled)}


def profile_parts(profile: cProfile.Profile, elapsed: float) -> dict:
    """Seconds of own time (tottime) per part of PARTS; the rest is the event loop and glue."""
    stats = pstats.Stats(profile).stats
    parts = {name: 0.0 for name, _ in PARTS}
    for (filename, _, function), (_, _, tottime, _, _) in stats.items():
        path = f"{filename.replace(os.sep, '/')}:{function}"
        for name, needles in PARTS:
            if any(n in path for n in needles):
                parts[name] += tottime
                break
    parts["the rest (dataclasses, glue)"] = max(0.0, elapsed - sum(parts.values()))
    return {k: round(v, 3) for k, v in parts.items()}


# ---- the Ray sweep -----------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandInServer:
    """`mfray serve --model standin` in its own process on 127.0.0.1."""

    def __enter__(self) -> "StandInServer":
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "mfray.cli", "serve", "--model", "standin", "--port", str(self.port),
                                      "--max-queue", "100000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        self.proc.kill()
        raise RuntimeError("the stand-in server did not come up")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> int:
        import httpx

        return int(httpx.get(f"{self.base_url}/health", timeout=5).json().get("requests", 0))

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def sweep_config(backend: str, files: list[str], seeds: int, out: Path, actors: int, in_flight: int, per_call: int,
                 rollout: dict, base_url: str | None = None):
    from mfray.ray.sweep import SweepConfig

    extra = {"endpoint": {"base_url": f"{base_url}/v1", "model": "standin", "mode": "completions",
                          "max_concurrency": 256, "timeout_s": 60}} if backend == "endpoint" else {}
    return SweepConfig.model_validate({
        "events": files, "methods": [rollout["method"]], "seeds": list(range(seeds)), "out": str(out), "llm": backend,
        "model": {"path": "standin"}, "actors": actors, "actor_num_cpus": round(1 / actors, 3) if actors > 1 else 0.5,
        "concurrency": in_flight, "events_per_call": per_call, "checkpoint_every": 4, "progress_every_s": 60,
        "llm_max_queue": max(256, actors * in_flight * rollout["agents_per_step"]), "rollout": rollout, **extra})


def replica_requests() -> int:
    from ray import serve

    from mfray.ray.serve_llm import APP_NAME

    return int(serve.get_app_handle(APP_NAME).stats.remote().result()["requests"])


def timed_sweep(cfg, count_requests) -> dict:
    from jobs.simulate_sweep import run_sweep

    shutil.rmtree(cfg.out, ignore_errors=True)
    before = count_requests()
    began = time.perf_counter()
    rows = run_sweep(cfg)
    elapsed = time.perf_counter() - began
    done = [r for r in rows if r["status"] == "done"]
    actions = sum(int(r["actions"]) for r in done)
    return {"actors": cfg.actors, "in_flight_per_actor": cfg.concurrency, "events_per_call": cfg.events_per_call,
            "runs": len(rows), "done": len(done), "seconds": round(elapsed, 2), "actions_per_s": round(actions / elapsed, 1),
            "requests_per_s": round((count_requests() - before) / elapsed, 1), "load": load()}


def py_spy_profile(seconds: float, out: Path) -> dict:
    """Sample a rollout actor and the LLM replica (or stand-in server) with py-spy for `seconds`
    while a sweep runs; per process, the share of samples whose innermost frame lies in each
    file, top 12 (own time, as py-spy saw it, threads together). Needs `pip install py-spy`."""
    import psutil

    targets = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        title = " ".join(proc.info["cmdline"] or [])
        for needle, name in (("RolloutActor", "rollout actor"), ("ServeReplica:mfray-llm", "LLM replica"),
                             ("serve --model standin", "stand-in server")):
            if needle in title and name not in targets:
                targets[name] = proc.info["pid"]
    procs = {name: subprocess.Popen(["py-spy", "record", "--pid", str(pid), "--duration", str(int(seconds)), "--format", "raw",
                                     "--nonblocking", "-o", str(out / f"py-spy-{name.replace(' ', '-')}.txt")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for name, pid in targets.items()}
    result = {}
    for name, proc in procs.items():
        proc.wait(timeout=seconds + 60)
        counts: dict[str, int] = {}
        path = out / f"py-spy-{name.replace(' ', '-')}.txt"
        for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
            stack, _, n = line.rpartition(" ")
            leaf = stack.split(";")[-1]
            where = leaf[leaf.find("(") + 1:].split(":")[0] if "(" in leaf else leaf
            where = where.split("site-packages/")[-1].split("python3.11/")[-1]
            counts[where] = counts.get(where, 0) + int(n)
        total = sum(counts.values()) or 1
        result[name] = {"samples": total, "own_share_by_file": {k: round(v / total, 3) for k, v in
                                                                sorted(counts.items(), key=lambda kv: -kv[1])[:12]}}
    return result


def ceiling(args) -> dict:
    import ray

    files = event_files(args.events)
    out = Path(args.out)
    result: dict = {"rollout": CEILING_ROLLOUT, "events": len(files), "seeds": args.seeds, "cores": os.cpu_count(),
                    "load_start": load()}
    result["inprocess"] = inprocess(files, args.seeds, out / "inprocess")
    print(json.dumps(result["inprocess"], indent=2), flush=True)
    grid = [(a, f, c) for a in args.actors for f in args.in_flight for c in args.per_call]
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        from jobs.simulate_sweep import start

        for backend in args.backends:
            rows = []
            server = StandInServer() if backend == "endpoint" else None
            with server or contextlib.nullcontext():
                # Deployed once, with a queue for the largest point of the grid.
                start(sweep_config(backend, files, args.seeds, out / backend, max(args.actors), max(args.in_flight), 1,
                                   CEILING_ROLLOUT, server.base_url if server else None))
                count = server.requests if server else replica_requests
                for actors, in_flight, per_call in grid:
                    cfg = sweep_config(backend, files, args.seeds, out / backend, actors, in_flight, per_call,
                                       CEILING_ROLLOUT, server.base_url if server else None)
                    spy = None
                    if args.py_spy and not rows:  # the first point of the grid, sampled 12 s in (actors up)
                        spy = threading.Timer(12.0, lambda b=backend: result.setdefault(f"py_spy_{b}", py_spy_profile(
                            args.py_spy, out)))
                        spy.start()
                    rows.append(timed_sweep(cfg, count))
                    if spy is not None:
                        spy.join()
                    print(backend, json.dumps(rows[-1]), flush=True)
            result[backend] = rows
            if backend == "serve":
                from ray import serve

                serve.shutdown()
    finally:
        ray.shutdown()
    return result


# ---- scale ------------------------------------------------------------------------------------
class RssSampler(threading.Thread):
    """Samples the RSS of this process and its descendants (the local Ray: GCS, raylet, workers,
    actors, the replica) every `every_s`, by process kind."""

    def __init__(self, every_s: float = 1.0):
        super().__init__(daemon=True)
        self.every_s, self.stop = every_s, threading.Event()
        self.samples: list[dict] = []  # {"t", "pid", "kind", "rss_mib"}
        self.began = time.perf_counter()

    @staticmethod
    def kind(title: str) -> str:
        for needle, name in (("RolloutActor", "rollout actor"), ("LLMServer", "LLM replica"), ("gcs_server", "GCS"),
                             ("raylet", "raylet"), ("ServeController", "Serve controller"), ("ProxyActor", "Serve proxy"),
                             ("dashboard", "dashboard"), ("ray::", "other Ray worker")):
            if needle in title:
                return name
        return "other"

    def final_kinds(self) -> list[dict]:
        """The samples with each process's kind as it was last seen: a Ray worker takes its
        actor's title only once the actor starts."""
        last = {s["pid"]: s["kind"] for s in self.samples}
        return [{**s, "kind": last[s["pid"]]} for s in self.samples]

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.stop.is_set():
            t = time.perf_counter() - self.began
            for proc in [me, *me.children(recursive=True)]:
                try:
                    rss, title = proc.memory_info().rss, " ".join(proc.cmdline())
                except psutil.Error:
                    continue
                kind = "driver" if proc.pid == me.pid else self.kind(title)
                self.samples.append({"t": round(t, 1), "pid": proc.pid, "kind": kind, "rss_mib": round(rss / 2**20, 1)})
            self.stop.wait(self.every_s)


def plot_rss(samples: list[dict], path: Path) -> None:
    """Left: RSS of each process over the sweep, one colour per kind. Right: the sum per kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({s["kind"] for s in samples})
    colour = {k: plt.get_cmap("tab10" if len(kinds) <= 10 else "tab20")(i) for i, k in enumerate(kinds)}
    fig, (each, total) = plt.subplots(1, 2, figsize=(13, 4.8), sharex=True)
    by_pid: dict[int, list[dict]] = {}
    for s in samples:
        by_pid.setdefault(s["pid"], []).append(s)
    labelled: set[str] = set()
    for rows in by_pid.values():
        kind = rows[0]["kind"]
        each.plot([r["t"] for r in rows], [r["rss_mib"] for r in rows], color=colour[kind], linewidth=1,
                  label=None if kind in labelled else kind)
        labelled.add(kind)
    times = sorted({s["t"] for s in samples})
    for kind in kinds:
        sums = {t: 0.0 for t in times}
        for s in samples:
            if s["kind"] == kind:
                sums[s["t"]] += s["rss_mib"]
        total.plot(times, [sums[t] for t in times], color=colour[kind], label=kind)
    for ax, title in ((each, "each process"), (total, "sum per kind of process")):
        ax.set_xlabel("seconds into the sweep")
        ax.set_ylabel("RSS (MiB)")
        ax.set_title(f"RSS, {title} (stand-in LLM)")
        ax.grid(alpha=0.3)
    total.legend(fontsize=7, loc="upper left", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def check_dataset(out: Path, expected_runs: int, rollout: dict) -> dict:
    """Every run once, each with every agent once, in the dataset (read as one table)."""
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    from mfray.sim.store import published_runs

    table = ds.dataset(out / "trajectories", partitioning="hive").to_table(columns=["event_id", "method", "seed", "agent_index"])
    keys = pc.binary_join_element_wise(table["event_id"], table["method"], pc.cast(table["seed"], "string"),
                                       pc.cast(table["agent_index"], "string"), "|")
    parts = list((out / "trajectories").rglob("part-*.parquet"))
    runs = published_runs(out)
    return {"runs_in_dataset": len(runs), "expected_runs": expected_runs, "rows": table.num_rows,
            "expected_rows": expected_runs * rollout["horizon"], "duplicate_rows": table.num_rows - len(pc.unique(keys)),
            "part_files": len(parts), "work_area_files": len([p for p in (out / "in_progress").iterdir()
                                                              if not p.name.startswith(".")])}


def scale(args) -> dict:
    import ray

    from jobs.simulate_sweep import run_sweep, start

    files = event_files(10**9)
    seeds = -(-args.runs // len(files))
    files = files[: -(-args.runs // seeds)]
    out = Path(args.out) / "scale"
    shutil.rmtree(out, ignore_errors=True)
    cfg = sweep_config("serve", files, seeds, out / "sweep", args.actors[0], args.in_flight[0], args.per_call[0], SCALE_ROLLOUT)
    expected = len(files) * seeds
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    sampler = RssSampler()
    try:
        start(cfg)
        sampler.start()
        began = time.perf_counter()
        rows = run_sweep(cfg)
        elapsed = time.perf_counter() - began
        sampler.stop.set()
        sampler.join()
        began_again = time.perf_counter()
        again = run_sweep(cfg)
        rerun_s = time.perf_counter() - began_again
    finally:
        sampler.stop.set()
        ray.shutdown()
    out.mkdir(parents=True, exist_ok=True)
    samples = sampler.final_kinds()
    with (out / "rss.csv").open("w", encoding="utf-8") as fh:
        fh.write("t,pid,kind,rss_mib\n")
        fh.writelines(f"{s['t']},{s['pid']},{s['kind']},{s['rss_mib']}\n" for s in samples)
    plot_rss(samples, out / "rss.png")
    actions = sum(int(r["actions"]) for r in rows if r["status"] == "done")
    return {"rollout": SCALE_ROLLOUT, "events": len(files), "seeds": seeds, "grid_rows": expected,
            "actors": cfg.actors, "in_flight_per_actor": cfg.concurrency, "events_per_call": cfg.events_per_call,
            "done": sum(r["status"] == "done" for r in rows), "seconds": round(elapsed, 1),
            "actions_per_s": round(actions / elapsed, 1), "rerun_skipped": sum(r["status"] == "skipped" for r in again),
            "rerun_seconds": round(rerun_s, 1), **check_dataset(out / "sweep", expected, SCALE_ROLLOUT),
            **rss_summary(samples, elapsed)}


def rss_summary(samples: list[dict], elapsed: float) -> dict:
    """Per process kind, the summed RSS (MiB) at a quarter, half, three quarters and the end of
    the sweep: flat or not, once the actors are up."""
    def at(rows: list[dict], t: float) -> float:
        pids = {r["pid"] for r in rows}
        return round(sum(max((r["rss_mib"] for r in rows if r["pid"] == pid and r["t"] <= t), default=0)
                         for pid in pids), 1)

    return {f"rss_mib_{kind.replace(' ', '_')}": [at([s for s in samples if s["kind"] == kind], q * elapsed)
                                                  for q in (0.25, 0.5, 0.75, 1.0)]
            for kind in sorted({s["kind"] for s in samples})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("ceiling", "scale"))
    parser.add_argument("--events", type=int, default=64, help="ceiling: Twitter events")
    parser.add_argument("--seeds", type=int, default=2, help="ceiling: seeds per event")
    parser.add_argument("--runs", type=int, default=10000, help="scale: (event, seed) runs")
    parser.add_argument("--backends", nargs="+", default=["serve", "endpoint"], choices=("serve", "endpoint"))
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--in-flight", type=int, nargs="+", default=[16, 64], help="runs in flight per actor")
    parser.add_argument("--per-call", type=int, nargs="+", default=[16], help="grid rows per actor call")
    parser.add_argument("--py-spy", type=float, default=0, metavar="SECONDS",
                        help="ceiling: sample a rollout actor and the LLM server with py-spy (pip install py-spy), "
                             "for this long, from 12 s into each backend's first grid point")
    parser.add_argument("--out", default="runs/orchestration_bench")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    result = ceiling(args) if args.mode == "ceiling" else scale(args)
    (Path(args.out) / f"{args.mode}.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
