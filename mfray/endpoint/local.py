"""The endpoint in one process, without a Ray cluster (`mfray endpoint`): the local engine behind a
dynamic batcher, so that concurrent simulations share its batches, and LiveSessions in this process."""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI

from mfray.data import demo_event_path
from mfray.endpoint.app import build_app
from mfray.endpoint.catalog import EventCatalog
from mfray.endpoint.host import LocalSessions, SimulationHost
from mfray.eval.annotators import build_local_annotator

_SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def default_event_folders() -> list[Path]:
    """The bundled demo event's folder, and the shared data's event folders where they exist."""
    root = Path(os.environ.get("MFRAY_DATA", _SHARED_DATA))
    return [demo_event_path().parent, *(p for p in (root / "twitter_rumdect", root / "weibo_rumdect") if p.is_dir())]


def build_local_endpoint(model: str = "default", events: list[str] | None = None, store: str = "runs/endpoint",
                         annotator: str = "offline", max_live: int = 4, token: str | None = None) -> FastAPI:
    """The endpoint app over `model` loaded here (see mfray.llm.load_engine) with the IB-Tune
    adapters shipped in mfray/adapters (so mf_ibtune runs; sft needs an adapter trained by
    `make adapters` and is refused), offering the events under `events` (default:
    default_event_folders()), keeping simulations under `store`."""
    from mfray.llm import load_engine
    from mfray.llm.batching import BatchedLLM, DynamicBatcher
    from mfray.train.lora import SHIPPED_ADAPTERS

    catalog = EventCatalog(events or default_event_folders(), Path(store) / "uploads")
    adapters = {name: str(SHIPPED_ADAPTERS / name) for name in ("ib_policy", "ib_mean_field")
                if (SHIPPED_ADAPTERS / name / "adapter_config.json").is_file()}
    engine = load_engine(model, adapters=adapters)
    llm = BatchedLLM(DynamicBatcher(engine), adapters=tuple(adapters))
    host = SimulationHost(LocalSessions(llm), catalog, store, build_local_annotator(annotator), max_live,
                          adapters=set(adapters))
    return build_app(host, token)
