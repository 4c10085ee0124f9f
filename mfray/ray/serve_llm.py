"""The local engine as a Ray Serve deployment, reachable two ways that share one dynamic batcher.

- HTTP: the OpenAI-compatible app of mfray.llm.server (/v1/chat/completions, /v1/completions,
  /v1/models, /v1/score, /health), mounted as the deployment's ingress and built per replica
  around that replica's engine.
- Serve handle: `generate(prompts, sampling, adapter)` and `score(prompts, completions, adapter)`,
  for Python callers such as the rollout actors of a sweep; `ServeLLM(handle)` wraps them in the
  mfray LLM protocol, so a driver uses the deployment exactly like a local engine.

Both paths go through the replica's BatchedLLM, so concurrent requests from many events (and from
HTTP clients) are merged into few engine calls. Overload is refused rather than queued without
bound, at two levels: Serve's router holds at most `max_queued_requests` calls once every replica
has `max_ongoing_requests` (429 + Retry-After over HTTP, BackPressureError on a handle), and a
replica's batcher lets at most `max_queue` prompts wait for the engine (429 + Retry-After over
HTTP, mfray.llm.batching.Overloaded on a handle). The policy and mean-field roles are LoRA adapters
of the one base model, named in `adapters` and requested by name (HTTP `model` field or handle
`adapter`).

Run it from a Serve config (`serve run serve_configs/local-cpu.yaml`), or from Python with
`deploy_llm_server(...)`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import inspect
import os
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

from pydantic import ConfigDict, Field, ValidationError, create_model
from ray import serve
from ray.exceptions import RayTaskError
from ray.serve.exceptions import BackPressureError

from mfray.llm.base import Generation, Prompt, SamplingParams, prompt_seeds
from mfray.llm.batching import Overloaded
from mfray.llm.server import build_app
from mfray.ray.metrics import create

APP_NAME = "mfray-llm"  # the application name sweeps look up (SweepConfig.serve_app)
DEPLOYMENT_NAME = "LLMServer"

# Serve-level options of the deployment; a Serve config's `deployments:` entry overrides them.
# max_ongoing_requests must be well above max_batch: each HTTP request is usually one prompt, and
# Serve's default (5) would let only 5 of them reach the batcher at once. Beyond it, calls wait at
# the caller's router, at most max_queued_requests of them; past that Serve answers 429.
SERVE_OPTIONS: dict[str, Any] = {
    "max_ongoing_requests": 256,
    "max_queued_requests": 256,
    "backpressure_config": {"status_code": 429, "retry_after_s": 5},
    "ray_actor_options": {"num_cpus": 1},
}


class LLMReplica:
    """One replica: loads the engine once, then serves it over HTTP and handle calls.

    model_path: 'default', a .gguf file or a Hugging Face directory (on the replica's node).
    model_name: the base model's name in the HTTP `model` field. adapters: {name: PEFT LoRA dir}.
    max_batch / batch_wait_s: the dynamic batcher's batch size and how long it waits for more
    requests once the engine is free. max_prompt_tokens: longer prompts are refused (None: no
    limit). max_queue: prompts allowed to wait for the engine before requests are refused as
    overloaded (None: no bound)."""

    def __init__(
        self,
        model_path: str = "default",
        model_name: str = "mfray-default",
        dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto",
        device: str = "auto",
        adapters: dict[str, str] | None = None,
        max_batch: Annotated[int, Field(ge=1, le=1024)] = 32,
        batch_wait_s: Annotated[float, Field(ge=0, le=10)] = 0.005,
        max_prompt_tokens: Annotated[int, Field(ge=1)] | None = 4096,
        max_queue: Annotated[int, Field(ge=1)] | None = 256,
    ) -> None:
        from mfray.llm import load_engine
        from mfray.llm.standin import STANDIN_PATH

        args = {k: v for k, v in locals().items() if k in _PARAMS}
        problems = check_server_args(args)
        if problems:
            raise ValueError("invalid LLMServer arguments:\n  " + "\n  ".join(problems))
        adapters = dict(adapters or {})
        for name, path in adapters.items():
            if model_path != STANDIN_PATH and not Path(path).expanduser().is_dir():
                raise FileNotFoundError(
                    f"LoRA adapter {name!r}: {path} is not a directory on this node (adapters.{name} in the "
                    "LLMServer args); train one, or write untrained ones with `mfray init-adapters`"
                )
        self.model_name = model_name
        self.engine = load_engine(model_path, dtype=dtype, device=device, adapters=adapters, max_batch=max_batch)
        self.http_app = build_app(
            self.engine,
            model_name,
            max_batch=max_batch,
            adapters=list(adapters),
            batch_window_s=batch_wait_s,
            max_queue=max_queue,
            max_prompt_tokens=max_prompt_tokens,
        )
        self.llm = self.http_app.state.llm  # the BatchedLLM both paths share
        # Exported to Prometheus (mfray.ray.metrics): the batcher's queue depth and engine calls,
        # whichever path (HTTP or handle) the requests came by.
        queue_depth, batch_seconds = create("mfray_llm_queue_depth"), create("mfray_llm_batch_seconds")
        self.llm.batcher.on_waiting = queue_depth.set
        self.llm.batcher.on_batch = batch_seconds.observe

    def __serve_build_asgi_app__(self):
        # Serve calls this after the constructor: the HTTP app needs the loaded engine.
        return self.http_app

    def _adapter(self, adapter: str | None) -> str | None:
        return None if adapter in (None, self.model_name) else adapter

    async def generate(
        self,
        prompts: list[Prompt],
        sampling: dict | SamplingParams,
        adapter: str | None = None,
        seeds: list[int | None] | None = None,
    ) -> list[Generation]:
        """Handle method: one Generation per prompt; prompt i gets seeds[i], or seed + i without
        `seeds`. Raises UnknownModel, PromptTooLong or Overloaded (mfray.llm.batching) with a
        message saying what to change."""
        sp = sampling if isinstance(sampling, SamplingParams) else SamplingParams(**sampling)
        return await self.llm.generate(list(prompts), sp, self._adapter(adapter), seeds)

    async def score(self, prompts: list[Prompt], completions: list[str], adapter: str | None = None) -> list[list[float]]:
        """Handle method: per-token log-probs of each completion given its prompt."""
        return await self.llm.score(list(prompts), list(completions), self._adapter(adapter))

    async def stats(self) -> dict[str, Any]:
        """Handle method: the batcher's counters, the engine's token accounting and the
        replica process's nice value."""
        b = self.llm.batcher
        return {
            "niceness": os.nice(0),
            "batches": b.batches,
            "requests": b.items,
            "waiting": b.waiting,
            "rejected": b.rejected,
            **dataclasses.asdict(self.engine.stats),
        }


_PARAMS = tuple(inspect.signature(LLMReplica.__init__).parameters)[1:]

LLMServer = serve.deployment(name=DEPLOYMENT_NAME, **SERVE_OPTIONS)(serve.ingress()(LLMReplica))


def _args_model():
    hints = typing.get_type_hints(LLMReplica.__init__, include_extras=True)
    fields = {
        name: (hints[name], p.default)
        for name, p in inspect.signature(LLMReplica.__init__).parameters.items()
        if name != "self"
    }
    return create_model("LLMServerArgs", __config__=ConfigDict(extra="forbid", strict=True), **fields)


def check_server_args(args: Any) -> list[str]:
    """Problems with a dict of LLMServer constructor arguments (a Serve config's `args`), each
    naming the key; checked against the constructor's own signature. Empty when valid."""
    if not isinstance(args, dict):
        return [f"args must be a mapping of LLMServer arguments, got {type(args).__name__}"]
    problems = []
    for key in args:
        if key not in _PARAMS:
            close = difflib.get_close_matches(str(key), _PARAMS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(_PARAMS)}"
            problems.append(f"args.{key}: not an LLMServer argument{hint}")
    try:
        _args_model().model_validate({k: v for k, v in args.items() if k in _PARAMS})
    except ValidationError as err:
        for e in err.errors():
            loc = ".".join(str(p) for p in e["loc"])
            problems.append(f"args.{loc}: {e['msg']} (got {e.get('input')!r})")
    return problems


def app_builder(args: dict) -> serve.Application:
    """Serve application builder (`import_path: mfray.ray.serve_llm:app_builder`): `args` are
    LLMServer constructor arguments, validated up front so a bad config fails at deploy time
    with every problem listed."""
    args = dict(args or {})
    problems = check_server_args(args)
    if problems:
        raise ValueError("invalid LLMServer args in the Serve config:\n  " + "\n  ".join(problems))
    return LLMServer.bind(**args)


def build_llm_app(model=None, options: dict[str, Any] | None = None, **server_args: Any) -> serve.Application:
    """The LLMServer application from an mfray ModelConfig (path, dtype, device, adapters,
    max_batch) and/or constructor arguments (`server_args` win), with Serve deployment `options`
    (num_replicas, max_ongoing_requests, ray_actor_options...) over SERVE_OPTIONS."""
    args: dict[str, Any] = {}
    if model is not None:
        args.update(model_path=model.path, dtype=model.dtype, device=model.device,
                    adapters=dict(model.adapters), max_batch=model.max_batch)
    args.update(server_args)
    app = app_builder(args)  # validates args
    return LLMServer.options(**options).bind(**args) if options else app


def deploy_llm_server(
    model=None,
    name: str = APP_NAME,
    route_prefix: str | None = "/",
    http_host: str = "127.0.0.1",
    http_port: int = 8000,
    options: dict[str, Any] | None = None,
    **server_args: Any,
) -> serve.handle.DeploymentHandle:
    """Start Serve (HTTP on `http_host`, loopback by default) and run the LLMServer app (see
    build_llm_app) as application `name`; returns its handle once every replica is ready, or
    raises with the replica's error. Needs `ray.init()` first."""
    app = build_llm_app(model, options, **server_args)
    serve.start(http_options={"host": http_host, "port": http_port})
    try:
        return serve.run(app, name=name, route_prefix=route_prefix)
    except RuntimeError as err:
        raise RuntimeError(f"{err}\n{deployment_error(name)}") from None


def deployment_error(app_name: str = APP_NAME) -> str:
    """The reason the LLMServer deployment of `app_name` is unhealthy, as Serve recorded it (the
    replica's exception: a missing model file, a bad adapter path...), for error messages."""
    try:
        app = serve.status().applications[app_name]
        message = app.deployments[DEPLOYMENT_NAME].message or app.message
    except Exception as err:  # noqa: BLE001 - only decorates another error
        return f"(no Serve status for {app_name!r}: {err})"
    # The replica traceback ends with the exception that matters.
    lines = [line for line in message.strip().splitlines() if line.strip()]
    return "LLMServer replica failed: " + (lines[-1] if lines else "no message recorded")


class _AttemptTimedOut(Exception):
    """Internal: one handle call gave no answer within timeout_s (a replica's own TimeoutError
    arrives as a RayTaskError that is also a TimeoutError, so ours needs a type of its own)."""


@dataclasses.dataclass
class ServeCallStats:
    """Running totals of one ServeLLM client (a copy pickled into an actor counts on its own).
    `calls`: generate/score calls; `retries`: extra attempts; `timeouts`: attempts that got no
    answer within timeout_s (each one cancelled); `overloads`: attempts refused as overloaded;
    `failures`: calls that raised in the end."""

    calls: int = 0
    retries: int = 0
    timeouts: int = 0
    overloads: int = 0
    failures: int = 0


class ServeLLM:
    """The mfray LLM protocol over a DeploymentHandle to LLMServer (e.g.
    `ServeLLM(serve.get_app_handle("mfray-llm"))`). Picklable, holds no event-loop state, so it
    can be handed to Ray actors and used under any asyncio loop.

    Overload (the replica's Overloaded, Serve's BackPressureError) is retried up to `max_retries`
    times, waiting the server's Retry-After or an exponential backoff, whichever is longer; after
    that Overloaded is raised. An attempt with no answer within `timeout_s` (a hung replica) is
    cancelled and retried up to `timeout_retries` times with the same backoff, then TimeoutError
    is raised; its own retry budget because each such attempt costs timeout_s, where an overload
    refusal is immediate. The default timeout leaves room for a call that waits behind a full
    replica queue on a CPU engine. Other errors (UnknownModel, PromptTooLong, engine failures)
    are raised at once. `client_stats` counts calls, retries, timeouts, overloads and failures."""

    def __init__(
        self,
        handle,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_wait_s: float = 30.0,
        timeout_s: float | None = 600.0,
        timeout_retries: int = 1,
    ) -> None:
        if max_retries < 0 or backoff_s < 0 or max_wait_s < 0 or timeout_retries < 0:
            raise ValueError("need max_retries >= 0, backoff_s >= 0, max_wait_s >= 0, timeout_retries >= 0")
        if timeout_s is not None and timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0 seconds, or None to wait forever; got {timeout_s}")
        self.handle = handle
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_wait_s = max_wait_s
        self.timeout_s = timeout_s
        self.timeout_retries = timeout_retries
        self.client_stats = ServeCallStats()

    @classmethod
    def from_app(cls, app_name: str = APP_NAME, **kwargs: Any) -> "ServeLLM":
        """A client for the running application `app_name`."""
        return cls(serve.get_app_handle(app_name), **kwargs)

    async def generate(
        self,
        prompts: list[Prompt],
        sampling: SamplingParams,
        adapter: str | None = None,
        seeds: Sequence[int | None] | None = None,
    ) -> list[Generation]:
        """One Generation per prompt (see LLMReplica.generate). A seed out of range raises
        ValueError here, before the call leaves this process."""
        seeds = prompt_seeds(len(prompts), sampling, seeds)
        gens, retries = await self._call("generate", list(prompts), dataclasses.asdict(sampling), adapter, seeds)
        # Every prompt of a retried call was sent again: each generation carries the retries.
        return [dataclasses.replace(g, retries=g.retries + retries) for g in gens] if retries else gens

    async def score(self, prompts: list[Prompt], completions: list[str], adapter: str | None = None) -> list[list[float]]:
        return (await self._call("score", list(prompts), list(completions), adapter))[0]

    async def stats(self) -> dict[str, Any]:
        """The serving replica's counters (one replica's, when there are several)."""
        return await self.handle.stats.remote()

    def _backoff(self, attempt: int, server_wait: float = 0.0) -> float:
        return min(self.max_wait_s, max(server_wait, self.backoff_s * 2**attempt))

    async def _attempt(self, method: str, args: tuple) -> Any:
        # DeploymentResponse.result(timeout_s=) blocks and is refused inside an event loop, so
        # the awaitable is bounded with wait_for; that only stops our wait, so the request is
        # cancelled too (best effort: unassigned, or ray.cancel on the replica's task).
        response = getattr(self.handle, method).remote(*args)
        try:
            return await asyncio.wait_for(response, self.timeout_s)
        except TimeoutError:  # asyncio's, since Python 3.11
            response.cancel()
            raise _AttemptTimedOut from None

    async def _call(self, method: str, *args: Any) -> tuple[Any, int]:
        """The replica's answer to `method(*args)` and the retries it took (timeouts, overloads)."""
        self.client_stats.calls += 1
        overloads = timeouts = 0
        while True:
            try:
                return await self._attempt(method, args), overloads + timeouts
            except _AttemptTimedOut:
                self.client_stats.timeouts += 1
                timeouts += 1
                if timeouts > self.timeout_retries:
                    self.client_stats.failures += 1
                    raise TimeoutError(
                        f"LLMServer.{method} gave no answer within {self.timeout_s}s, {timeouts} times: a replica "
                        "may be hung (see `serve status` and its log); if calls are legitimately this slow, raise "
                        "ServeLLM(timeout_s=...)"
                    ) from None
                wait = self._backoff(timeouts - 1)
            except Exception as err:
                # A replica's exception arrives wrapped in a RayTaskError whose text is the remote
                # traceback; callers get the original exception with its own message instead.
                cause = err.cause if isinstance(err, RayTaskError) and isinstance(err.cause, Exception) else err
                if not isinstance(cause, (Overloaded, BackPressureError)):
                    self.client_stats.failures += 1
                    if cause is err:
                        raise
                    raise cause from None
                self.client_stats.overloads += 1
                if overloads >= self.max_retries:
                    self.client_stats.failures += 1
                    raise Overloaded(
                        f"LLMServer still overloaded after {overloads} retries: {cause}",
                        getattr(cause, "retry_after_s", None) or self.backoff_s,
                    ) from None
                wait = self._backoff(overloads, getattr(cause, "retry_after_s", None) or 0.0)
                overloads += 1
            self.client_stats.retries += 1
            await asyncio.sleep(wait)
