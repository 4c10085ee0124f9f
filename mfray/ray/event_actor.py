"""One Ray actor per live event, for interactive use: a thin wrapper of the Ray-free
mfray.sim.session.LiveSession (step, run N steps, intervene, set the exogenous signal, read the
trajectory, snapshot, resume, fork) that builds its LLM backend where it runs.

    actor = EventActor.remote("../shared/data/twitter_rumdect/E102.json", {"method": "mf"}, seed=0,
                              backend={"llm": "serve"})
    ray.get(actor.step.remote())                      # records of the step just simulated
    ray.get(actor.intervene.remote(["Officials say the photo is fake."]))
    ray.get(actor.set_signal.remote("Police statement: no one was hurt."))
    ray.get(actor.run.remote(3))                      # three more steps (None: to the end)
    saved = ray.get(actor.state_dict.remote())        # JSON-able; EventActor.remote(..., state=saved)
    fork = EventActor.remote(path, state=ray.get(actor.snapshot.remote(1)))   # a what-if from step 1
"""

from __future__ import annotations

from typing import Literal

import ray
from pydantic import Field

from mfray.config import EndpointConfig, ModelConfig, StrictModel
from mfray.sim.config import RolloutConfig
from mfray.sim.session import LiveSession
from mfray.types import Event


class BackendConfig(StrictModel):
    """Which LLM the actor drives its event with (see mfray.ray.sweep.build_backend)."""

    llm: Literal["serve", "local", "endpoint"] = "serve"
    model: ModelConfig = ModelConfig()
    endpoint: EndpointConfig | None = None
    serve_app: str = Field("mfray-llm", min_length=1)


class LiveEvent(LiveSession):
    """The event actor's body (EventActor = ray.remote(LiveEvent)): a LiveSession whose LLM is
    built from `backend` (a BackendConfig or its dict) in the actor's process."""

    def __init__(self, event: Event | str, cfg: RolloutConfig | dict | None = None, seed: int = 0,
                 backend: BackendConfig | dict | None = None, event_id: str | None = None, state: dict | None = None):
        from mfray.ray.sweep import build_backend

        backend = backend if isinstance(backend, BackendConfig) else BackendConfig.model_validate(backend or {})
        llm = build_backend(backend.llm, backend.model, backend.endpoint, backend.serve_app)
        super().__init__(event, llm, cfg, seed, event_id, state)


EventActor = ray.remote(num_cpus=0.1)(LiveEvent)
