"""Simulation sweeps on Ray Data: a grid of (event file, method, seed) rows flows through an actor
pool; each actor drives many event rollouts at once (asyncio) against one LLM backend and
publishes each call's finished runs into the output's Parquet dataset (mfray.sim.store). Runs are resumable (mfray.sim.checkpoint): a rerun skips
finished runs, and a restarted actor picks a killed run up from its last checkpoint.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Literal

import pandas as pd
from pydantic import Field, field_validator, model_validator

from mfray.config import StrictModel
from mfray.eval.config import EvaluateConfig
from mfray.sim.config import SimulateConfig

# resumed_step: the step a run started at in this attempt (0: from scratch, >0: from a checkpoint
# left by a killed attempt). actions: policy/intervention actions simulated in this attempt.
# failures: agents whose generation failed after the rollout's retries; llm_retries / llm_errors:
# the backend's extra attempts and the generations it gave up on (mfray.sim.rollout.RolloutStats).
SUMMARY_COLUMNS = ("file", "event_id", "method", "seed", "status", "error", "path", "agents", "actions",
                   "resumed_step", "failures", "llm_retries", "llm_errors", "prompt_tokens", "completion_tokens",
                   "seconds")


class SweepConfig(SimulateConfig):
    """A SimulateConfig plus how the sweep spreads over the cluster."""

    actors: int = Field(2, ge=1, description="rollout actors in the pool")
    # Actors mostly wait on the LLM deployment, so a fraction of a CPU each is enough with
    # llm=serve; with llm=local every actor runs its own engine and should get whole cores.
    actor_num_cpus: float = Field(0.5, gt=0, le=256, description="logical CPUs reserved per rollout actor")
    events_per_call: int = Field(8, ge=1, description="grid rows handed to an actor at once")
    checkpoint_every: int = Field(4, ge=1, description="steps between checkpoints")
    llm: Literal["serve", "local", "endpoint"] = "serve"  # serve: the LLMServer deployment, shared
    serve_app: str = "mfray-llm"
    max_restarts: int = Field(3, ge=0, description="times a dead actor is restarted (its batch is retried)")
    progress_every_s: float = Field(10.0, ge=0, description="at most one driver progress line per this many seconds")
    # Ray gives a worker OMP_NUM_THREADS = its reserved CPUs (1 for the replica); on a node where
    # the replica has the cores to itself, more threads make its engine faster.
    llm_threads: int | None = Field(None, ge=1, description="torch threads of the LLMServer replica (None: Ray's default)")
    # Ray starts workers at nice 15 so its control plane stays responsive; the replica is where
    # a sweep's work happens, and at nice 15 it loses CPU to every nice-0 process on the node.
    llm_niceness: int | None = Field(None, ge=0, le=19, description="nice value of the LLMServer replica (None: Ray's 15)")
    # The replica refuses prompts past its queue bound (Overloaded); a sweep with many runs in
    # flight against a fast engine (vLLM, the stand-in) needs room for all their prompts.
    llm_max_queue: int | None = Field(None, ge=1, description="prompts the LLMServer replica lets wait (None: its default)")
    # A request with no answer within this long is cancelled and retried once (a hung replica);
    # on a CPU replica a deep queue is slow, not hung: a request there can wait longer than the
    # default, and cancelling it throws its place in the queue away (the fidelity sweep's first
    # start lost requests that way, 16 runs in flight on 2 cores).
    llm_timeout_s: float | None = Field(600.0, gt=0, description="seconds a Serve request may take before it is cancelled and retried (None: no limit)")

    # When set, the job evaluates its own runs once every rollout is done (mfray.ray.evaluation:
    # annotation, NLL and metrics as Ray Data stages over the sweep's dataset); `trajectories`
    # is the sweep's `out` and may be left out.
    evaluate: EvaluateConfig | None = None
    evaluate_annotator_actors: int = Field(1, ge=1, description="annotator actors of the chained evaluation")

    # A Ray job's driver runs in a copy of the working directory, where a checkout's relative
    # paths (../shared/data/..., an output folder) point nowhere: `root` names the checkout.
    root: str | None = Field(None, description="absolute directory that relative `events` and `out` are read "
                                               "against (e.g. --set root=$PWD when submitting a Ray job)")

    @model_validator(mode="before")
    @classmethod
    def _evaluate_this_sweep(cls, data):
        if isinstance(data, dict) and data.get("root") is not None:
            root = Path(str(data["root"]))
            if not root.is_absolute():
                raise ValueError(f"root={data['root']!r} is not an absolute path: a Ray job runs elsewhere")
            # joining keeps an absolute path as it is, so validating again (model_copy) changes nothing
            data = {**data, "events": [str(root / e) for e in data.get("events", [])],
                    "out": str(root / data.get("out", cls.model_fields["out"].default))}
        if isinstance(data, dict) and isinstance(data.get("evaluate"), dict):
            out = data.get("out", cls.model_fields["out"].default)
            given = data["evaluate"].get("trajectories")
            if given is not None and given != out:
                raise ValueError(f"evaluate.trajectories={given!r} but the sweep writes to out={out!r}: a sweep "
                                 "evaluates its own runs (leave evaluate.trajectories out)")
            data = {**data, "evaluate": {**data["evaluate"], "trajectories": out}}
        return data

    @field_validator("actor_num_cpus")
    @classmethod
    def _ray_cpu_quantity(cls, v: float) -> float:
        # Ray itself refuses fractional quantities above 1 (only at actor creation, deep in a pool).
        if v > 1 and v != int(v):
            raise ValueError(f"actor_num_cpus={v}: Ray accepts a fraction only up to 1; use a value <= 1 or a whole number")
        return v


def required_cpus(cfg: SweepConfig, serve_replica_cpus: float = 0.0) -> float:
    """Logical CPUs the sweep reserves at once: the actor pool plus, with llm=serve, the LLMServer
    replica (`serve_replica_cpus`, 0 when it is already running elsewhere)."""
    return cfg.actors * cfg.actor_num_cpus + (serve_replica_cpus if cfg.llm == "serve" else 0.0)


def check_fits(cfg: SweepConfig, cluster_cpus: float, serve_replica_cpus: float = 0.0) -> None:
    """Raise ValueError when the sweep cannot start all its actors on `cluster_cpus` logical CPUs:
    Ray would otherwise wait for resources forever with no error (a stalled sweep)."""
    need = required_cpus(cfg, serve_replica_cpus)
    if need > cluster_cpus + 1e-9:
        replica = f" + LLMServer replica {serve_replica_cpus:g}" if cfg.llm == "serve" and serve_replica_cpus else ""
        raise ValueError(
            f"the sweep needs {need:g} logical CPUs (actors={cfg.actors} x actor_num_cpus={cfg.actor_num_cpus:g}"
            f"{replica}) but the cluster has {cluster_cpus:g}; lower actors or actor_num_cpus "
            "(--set actor_num_cpus=0.25), or start Ray with more CPUs (ray start --num-cpus N)"
        )


def check_queue(cfg: SweepConfig, max_queue: int | None) -> None:
    """Raise ValueError when the sweep's runs in flight can have more prompts waiting than the
    LLMServer replica queues (`max_queue`): the excess would be refused as Overloaded and, after
    the client's retries, those runs would end as errors."""
    most = cfg.actors * cfg.concurrency * cfg.rollout.agents_per_step
    if max_queue is not None and most > max_queue:
        raise ValueError(
            f"up to {most} prompts in flight (actors={cfg.actors} x concurrency={cfg.concurrency} x "
            f"rollout.agents_per_step={cfg.rollout.agents_per_step}) but the LLMServer replica queues {max_queue}; "
            "lower concurrency or actors, or raise the replica's max_queue"
        )


def replica_max_queue() -> int | None:
    """The prompt queue bound of an LLMServer replica as the sweep deploys it (the default)."""
    import inspect

    from mfray.ray.serve_llm import LLMReplica

    return inspect.signature(LLMReplica.__init__).parameters["max_queue"].default


def serve_actor_options(cfg: SweepConfig) -> dict:
    """Ray actor options of the sweep's LLMServer replica: its CPUs (SERVE_OPTIONS) and, when
    set, its torch threads (`llm_threads`) and nice value (`llm_niceness`)."""
    from mfray.ray.serve_llm import SERVE_OPTIONS

    options = dict(SERVE_OPTIONS["ray_actor_options"])
    env = {}
    if cfg.llm_threads is not None:
        env["OMP_NUM_THREADS"] = str(cfg.llm_threads)
    if cfg.llm_niceness is not None:
        env["RAY_worker_niceness"] = str(cfg.llm_niceness)  # read by Ray when it starts the worker
    if env:
        options["runtime_env"] = {"env_vars": env}
    return options


FILES_KEPT = 4  # event files a rollout actor keeps loaded between calls


class GridRow(StrictModel):
    file: str
    method: str
    seed: int


def calls_per_actor(cfg: SweepConfig) -> int:
    """Batches an actor works on at once: enough to keep `concurrency` events in flight, plus
    one so the next batch is already there when one finishes."""
    return -(-cfg.concurrency // cfg.events_per_call) + 1


def grid(files: list[str], cfg: SweepConfig) -> list[dict]:
    """Every (file, method, seed) once, in a stable order."""
    return [GridRow(file=f, method=m, seed=s).model_dump() for f in files for m in cfg.methods for s in cfg.seeds]


def build_backend(llm: str, model, endpoint=None, serve_app: str = "mfray-llm", timeout_s: float | None = 600.0):
    """The LLM an actor talks to: "serve", the shared LLMServer deployment `serve_app` (requests of
    all actors meet in its batcher; a request unanswered after `timeout_s` is cancelled and
    retried); "endpoint", an OpenAI-compatible `endpoint`; "local", a private engine for `model`
    in this process."""
    if llm == "serve":
        from ray import serve

        from mfray.ray.serve_llm import ServeLLM

        return ServeLLM(serve.get_app_handle(serve_app), timeout_s=timeout_s)
    if llm == "endpoint" and endpoint is None:
        raise ValueError("llm=endpoint needs an endpoint: section (base_url, model)")
    from mfray.llm import build_llm

    return build_llm(model, endpoint if llm == "endpoint" else None)


class RolloutActor:
    """`map_batches` actor: reads GridRow columns, returns SUMMARY_COLUMNS (one row per event run,
    or one per unreadable file with status "invalid" and the problems as the error). At most
    `concurrency` event rollouts run at once per actor, over all its calls."""

    def __init__(self, cfg: dict):
        from mfray.llm.coalesce import CoalescingLLM
        from mfray.ray.metrics import TimedLLM, create
        from mfray.sim.identity import config_identity

        self.cfg = SweepConfig.model_validate(cfg)
        # The runs in flight ask in the same loop turns: one backend call per turn, not per run;
        # TimedLLM sits under the merging so its latency is that of the calls actually sent.
        backend = build_backend(self.cfg.llm, self.cfg.model, self.cfg.endpoint, self.cfg.serve_app, self.cfg.llm_timeout_s)
        self.llm = CoalescingLLM(TimedLLM(backend, self.cfg.llm))
        self.identities = {m: config_identity(self.cfg, m, use_endpoint=self.cfg.llm == "endpoint") for m in self.cfg.methods}
        # Exported to the Ray dashboard / Prometheus (mfray.ray.metrics; cluster/grafana_dashboard.json).
        self.runs = create("mfray_runs")
        self.actions = create("mfray_actions")
        self.tokens = create("mfray_generated_tokens")
        self.failed = create("mfray_failed_actions")
        self.in_flight = create("mfray_events_in_flight")
        self._running = 0
        self._gate: asyncio.Semaphore | None = None
        self._files: dict[tuple, object] = {}  # (path, size, mtime) -> LoadResult, the last FILES_KEPT
        self._unreported = {"actions": 0, "failed": 0}  # metric counts not yet sent (sent once a second)
        self._reported_at = time.monotonic()

    async def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        # Async: Ray Data runs every call on one event loop per actor, several calls at once
        # (calls_per_actor), so a new batch starts while the last events of another finish.
        rows = await self._run(batch.to_dict("records"))
        for row in rows:
            self.runs.inc(1, tags={"status": row["status"]})
            if row["status"] == "done" and (row.get("completion_tokens") or 0) > 0:  # inc() refuses 0
                self.tokens.inc(row["completion_tokens"])
        return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))

    def _load(self, path: str):
        """The file's LoadResult, reused while the file is unchanged: grid rows come file by file
        (methods and seeds inner), so consecutive calls mostly read the same files; the same
        Event objects also keep their content digest memoised (mfray.sim.identity)."""
        from mfray.data import load_file

        try:
            stat = os.stat(path)
        except OSError:
            return load_file(path)  # reports the problem as an invalid file
        key = (path, stat.st_size, stat.st_mtime_ns)
        result = self._files.pop(key, None)
        if result is None:
            result = load_file(path)
        self._files[key] = result
        while len(self._files) > FILES_KEPT:
            self._files.pop(next(iter(self._files)))
        return result

    def _report(self) -> None:
        """Send the metric counts gathered since the last report (Counter.inc refuses 0)."""
        if self._unreported["actions"]:
            self.actions.inc(self._unreported["actions"])
        if self._unreported["failed"]:
            self.failed.inc(self._unreported["failed"])
        self._unreported = {"actions": 0, "failed": 0}
        self._reported_at = time.monotonic()

    def _track(self, delta: int) -> None:
        self._running += delta
        self.in_flight.set(self._running)

    async def _run(self, rows: list[dict]) -> list[dict]:
        from mfray.sim.checkpoint import run_resumable
        from mfray.sim.store import publish_and_locate

        if self._gate is None:  # made on the actor's event loop, shared by all its calls
            self._gate = asyncio.Semaphore(self.cfg.concurrency)
        gate = self._gate
        loaded = {row["file"]: self._load(row["file"]) for row in rows}

        async def one(row: dict, event) -> dict:
            rollout_cfg = self.cfg.rollout.model_copy(update={"method": row["method"]})
            seen = {"actions": 0, "resumed_step": None}

            def on_step(records) -> None:
                if seen["resumed_step"] is None:
                    seen["resumed_step"] = records[0].step
                acted = sum(1 for r in records if not r.warmup)
                seen["actions"] += acted
                self._unreported["actions"] += acted
                self._unreported["failed"] += sum(1 for r in records if r.failed)
                if time.monotonic() - self._reported_at >= 1.0:
                    self._report()

            began = time.perf_counter()
            async with gate:
                self._track(1)
                try:
                    path, stats = await run_resumable(event, self.llm, rollout_cfg, row["seed"], self.cfg.out,
                                                      self.identities[row["method"]], self.cfg.checkpoint_every,
                                                      on_step, self.cfg.overwrite)
                except Exception as err:  # noqa: BLE001 - one event's failure is reported, not fatal
                    return {**row, "event_id": event.event_id, "status": "error", "error": f"{type(err).__name__}: {err}"}
                finally:
                    self._track(-1)
            status = "skipped" if stats is None else "done"
            # For a resumed run the stats include its killed attempt's tokens (they are restored).
            extra = {} if stats is None else {
                "failures": stats.failures, "llm_retries": stats.llm_retries, "llm_errors": stats.llm_errors,
                "prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.completion_tokens,
                "actions": seen["actions"], "resumed_step": seen["resumed_step"] or 0,
            }
            return {**row, "event_id": event.event_id, "status": status, "path": str(path), "agents": rollout_cfg.horizon,
                    "seconds": time.perf_counter() - began, **extra}

        tasks, out = [], []
        for row in rows:
            result = loaded[row["file"]]
            if result.problems:
                out.append({**row, "status": "invalid", "error": "; ".join(str(p) for p in result.problems)})
            tasks += [one(row, event) for event in result.events]
        finished = list(await asyncio.gather(*tasks))
        self._report()
        # One part file per method for the whole call (mfray.sim.store), off the event loop so
        # the runs of this actor's other calls go on meanwhile.
        paths = await asyncio.to_thread(publish_and_locate, self.cfg.out, [Path(r["path"]) if r.get("path") else None
                                                                          for r in finished])
        for row, path in zip(finished, paths):
            if path is not None:
                row["path"] = str(path)
        return out + finished


def summarise_sweep(rows: list[dict], elapsed_s: float, grid_rows: int | None = None) -> str:
    """One line for the driver log: grid rows reported (of `grid_rows`) by status, actions
    simulated, generated tokens per second and finished runs per hour."""
    frame = pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))
    counts = frame["status"].value_counts().to_dict()
    done = frame[frame["status"] == "done"]
    tokens = float(pd.to_numeric(done["completion_tokens"], errors="coerce").fillna(0).sum())
    actions = int(pd.to_numeric(done["actions"], errors="coerce").fillna(0).sum())
    t = max(elapsed_s, 1e-9)
    parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    of = f"/{grid_rows}" if grid_rows is not None else ""
    return (f"{len(frame)}{of} runs ({parts}) in {elapsed_s:.0f}s: {actions} actions simulated "
            f"({actions / t:.2f}/s), {tokens / t:.1f} generated tokens/s, {len(done) * 3600 / t:.0f} runs/hour")


def check_grid(cfg: SweepConfig, files: list[str]) -> None:
    """Refuse, before anything runs, a grid whose files share an event id (naming both files)
    and, unless `overwrite`, an output folder holding runs of these methods made under another
    identity (mfray.sim.checkpoint.refuse_mixing). Raises ValueError with the fix."""
    from mfray.data import load_files
    from mfray.data.validate import duplicate_ids
    from mfray.sim.checkpoint import IdentityMismatch, refuse_mixing
    from mfray.sim.identity import config_identity

    duplicates = duplicate_ids(load_files(files)[0])
    if duplicates:
        raise ValueError("the grid holds the same event id in two files:\n  " + "\n  ".join(duplicates))
    if not cfg.overwrite:
        identities = {m: config_identity(cfg, m, use_endpoint=cfg.llm == "endpoint") for m in cfg.methods}
        try:
            refuse_mixing(cfg.out, identities)
        except IdentityMismatch as err:
            raise ValueError(str(err)) from None


def list_event_files(paths: list[str]) -> list[str]:
    """Event files under `paths` (files or folders), as the data layer finds them."""
    from mfray.data.validate import iter_event_files

    files, problems = iter_event_files(paths)
    if problems:
        raise FileNotFoundError("; ".join(str(p) for p in problems))
    return [str(Path(f)) for f in files]
