"""The simulation endpoint (mfray.endpoint) as a Ray Serve deployment: the same FastAPI app and page,
with each live simulation an event actor (mfray.ray.event_actor.EventActor) that calls the LLM
Serve application (mfray.ray.serve_llm, or vLLM replicas through an OpenAI-compatible endpoint).

    serve run serve_configs/endpoint.yaml        # the LLM app and this one, on a local Ray

One replica holds the simulations' registry (num_replicas: 1); the work is in the event actors and
the LLM replicas, which scale out. Its request counts and live simulations are Ray metrics
(mfray_endpoint_requests, mfray_live_simulations; cluster/grafana_dashboard.json plots them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import ray
from ray import serve

from mfray.endpoint.app import build_app
from mfray.endpoint.catalog import EventCatalog
from mfray.endpoint.host import SimulationHost
from mfray.endpoint.local import default_event_folders
from mfray.eval.annotators import build_local_annotator
from mfray.ray.event_actor import BackendConfig, EventActor
from mfray.types import Event

APP_NAME = "mfray-endpoint"
ACTOR_PREFIX = "mfray-simulation-"  # an event actor's name: this and the simulation's id


class ActorSession:
    """A LiveSession living in an event actor: the same async methods, each a remote call."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    async def step(self):
        return await self.actor.step.remote()

    async def info(self) -> dict:
        return await self.actor.info.remote()

    async def intervene(self, posts: list[str], agents: list[int] | None = None, step: int | None = None) -> dict:
        return await self.actor.intervene.remote(posts, agents, step)

    async def set_signal(self, text: str, step: int | None = None) -> dict:
        return await self.actor.set_signal.remote(text, step)

    async def state_dict(self) -> dict:
        return await self.actor.state_dict.remote()

    async def snapshot_at(self, step: int | None = None) -> dict:
        return await self.actor.snapshot_at.remote(step)


class ActorSessions:
    """Opens one event actor per simulation, its LLM built from `backend` (mfray.ray.event_actor
    BackendConfig: the Serve LLM app by default), and kills it when the simulation ends."""

    def __init__(self, backend: BackendConfig) -> None:
        self.backend = backend

    async def open(self, event: Event, cfg: dict | None, seed: int, state: dict | None, name: str) -> ActorSession:
        # Named after the simulation, so the Ray dashboard shows which actor runs which one.
        actor = EventActor.options(name=f"{ACTOR_PREFIX}{name}").remote(event, cfg, seed, self.backend, state=state)
        try:  # the constructor's refusal (a ValueError) comes back with the first call
            await actor.info.remote()
        except ray.exceptions.RayActorError as err:
            ray.kill(actor)
            cause = getattr(err, "cause", None)
            if isinstance(cause, ValueError):
                raise ValueError(str(cause)) from None
            raise
        return ActorSession(actor)

    async def close(self, session: ActorSession) -> None:
        ray.kill(session.actor)


class SimEndpointReplica:
    """The endpoint's replica. `events`: folders of stored events (default: the bundled demo and
    the shared data, as `mfray endpoint`); `store`: where simulations are kept (on the replica's
    node: give a shared volume on a cluster); `token_env`: the environment variable holding the
    bearer token /api requires (None: no token; the Serve HTTP proxy must then stay on loopback);
    `backend`: the event actors' LLM (BackendConfig fields)."""

    def __init__(self, events: list[str] | None = None, store: str = "runs/endpoint", annotator: str = "offline",
                 max_live: int = 8, token_env: str | None = None, backend: dict | None = None) -> None:
        from mfray.ray.metrics import endpoint_requests_counter, live_simulations_gauge

        token = None
        if token_env is not None:
            token = os.environ.get(token_env)
            if not token:
                raise ValueError(f"token_env names {token_env!r}, which is unset or empty in the replica's environment")
        catalog = EventCatalog(events or default_event_folders(), Path(store) / "uploads")
        backend_cfg = BackendConfig.model_validate(backend or {})
        self.host = SimulationHost(ActorSessions(backend_cfg), catalog, store, build_local_annotator(annotator), max_live)
        requests, live = endpoint_requests_counter(), live_simulations_gauge()

        def observe(route: str, code: int) -> None:
            requests.inc(1, tags={"route": route, "code": str(code)})
            live.set(self.host.live)

        self.http_app = build_app(self.host, token, on_request=observe)

    def __serve_build_asgi_app__(self):
        # Serve calls this after the constructor: the app needs the host built there.
        return self.http_app


SimEndpoint = serve.deployment(name="SimEndpoint", num_replicas=1, ray_actor_options={"num_cpus": 0.5},
                               # every open event stream holds a request: room for many watchers
                               max_ongoing_requests=1024)(serve.ingress()(SimEndpointReplica))


def app_builder(args: dict) -> serve.Application:
    """Serve application builder (`import_path: mfray.ray.sim_endpoint:app_builder`): `args` are
    SimEndpointReplica's constructor arguments."""
    return SimEndpoint.bind(**dict(args or {}))
