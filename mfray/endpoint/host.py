"""The simulations of one endpoint: where their sessions come from, how many may be live at once,
and their files, so that ended (and paused) simulations are listed and found again after a
restart.

Store layout (`store`): `simulations/<id>.meta.json` (small: what the listing shows) and
`simulations/<id>.json` (records, labels, and the session state a fork starts from), each written
whole and renamed into place; `uploads/<id>.<suffix>` (uploaded event files). A simulation that
was live when the server stopped is found again as `interrupted`: it can be read and forked.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
import uuid
from pathlib import Path
from typing import Protocol

from pydantic import ValidationError

from mfray.endpoint.catalog import EventCatalog
from mfray.endpoint.schemas import SIM_ID, CreateSimulation, Fork
from mfray.endpoint.simulation import TERMINAL, BadRequest, Conflict, Session, Simulation, label_records, summary_of
from mfray.eval.annotate import Annotator
from mfray.sim.config import RolloutConfig
from mfray.sim.methods import method_spec
from mfray.sim.session import LiveSession
from mfray.types import Event, StepRecord

# A live session keeps the start of every step for forks, and an mfmdp start carries the macro
# history so far (one (m, r, c) per step, up to f_psi's window): memory grows with the square of
# the steps, so the steps are capped (~50 MB of starts at the cap). At the default 16 agents per
# step this allows the endpoint's whole horizon; longer runs belong to mfray simulate.
MAX_MACRO_STEPS = 512
KEEP_ENDED = 32  # ended simulations kept in memory; older ones are read from disk when asked for


class SessionFactory(Protocol):
    """Opens and closes the live sessions simulations drive (in process, or Ray event actors);
    `name` is the simulation's id."""

    async def open(self, event: Event, cfg: dict | None, seed: int, state: dict | None, name: str) -> Session: ...
    async def close(self, session: Session) -> None: ...


class LocalSessions:
    """LiveSessions in this process over one LLM; give it a BatchedLLM (mfray.llm.batching) so
    that concurrent simulations share the engine's batches."""

    def __init__(self, llm) -> None:
        self.llm = llm

    async def open(self, event: Event, cfg: dict | None, seed: int, state: dict | None, name: str) -> Session:
        return LiveSession(event, self.llm, cfg, seed, state=state)

    async def close(self, session: Session) -> None:
        """Nothing to release: the session is dropped with its simulation's reference."""


class TooManyLive(RuntimeError):
    """The live-simulation limit is reached (429)."""


class UnknownSimulation(LookupError):
    """No simulation has that id (404)."""


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False))
    os.replace(tmp, path)  # a reader never sees half a file


class SimulationHost:
    """Creates, forks, finds and persists simulations. `max_live`: simulations holding a session
    (running or paused) at once; one more is refused with TooManyLive. `adapters`: the LoRA
    adapters the sessions' LLM serves, so that a method needing another is refused at creation
    (None: not known here; the LLM refuses it at the first step)."""

    def __init__(self, sessions: SessionFactory, catalog: EventCatalog, store: str | Path, annotator: Annotator,
                 max_live: int = 4, adapters: set[str] | None = None) -> None:
        if max_live < 1:
            raise ValueError(f"max_live must be >= 1, got {max_live}")
        self.sessions = sessions
        self.catalog = catalog
        self.annotator = annotator
        self.max_live = max_live
        self.adapters = adapters
        self.dir = Path(store) / "simulations"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sims: dict[str, Simulation] = {}
        self.metas: dict[str, dict] = {}  # every simulation's meta, from disk and this run
        for path in sorted(self.dir.glob("*.meta.json")):
            meta = json.loads(path.read_text())
            if meta["status"] not in TERMINAL:
                meta["status"] = "interrupted"  # live when the server stopped: no session now
            self.metas[meta["id"]] = meta
        self._lock = asyncio.Lock()  # one create or fork at a time, so the live count holds

    @property
    def live(self) -> int:
        return sum(sim.live for sim in self.sims.values())

    def listing(self) -> list[dict]:
        """Every simulation, newest first: the live ones as they stand, the others from their meta."""
        rows = [self.sims[i].summary() if i in self.sims else summary_of(meta) for i, meta in self.metas.items()]
        return sorted(rows, key=lambda row: row["created"], reverse=True)

    def runnable(self, method: str) -> str | None:
        """Why this server cannot run `method` (an adapter it does not load), or None."""
        spec = method_spec(method)
        missing = [a for a in (spec.policy_adapter, spec.mean_field_adapter) if a and self.adapters is not None and a not in self.adapters]
        if missing:
            return (f"method {method} needs the adapter(s) {missing}, which this server does not load "
                    f"(it serves {sorted(self.adapters) or 'none'}); pick another method")
        return None

    def get(self, sim_id: str) -> Simulation:
        """The simulation `sim_id`, read from disk if it is not in memory."""
        if not SIM_ID.match(sim_id) or sim_id not in self.metas:
            raise UnknownSimulation(f"no simulation {sim_id!r}; GET /api/simulations lists them")
        if sim_id not in self.sims:
            data = json.loads((self.dir / f"{sim_id}.json").read_text())
            sim = Simulation(sim_id, None, self.annotator, self.metas[sim_id],
                             [StepRecord(**r) for r in data["records"]], [tuple(pair) for pair in data["labels"]])
            sim.final_state = data["state"]
            self._hold(sim)
        return self.sims[sim_id]

    async def create(self, req: CreateSimulation) -> Simulation:
        """A new simulation of a stored or uploaded event, started unless req.start is false."""
        cfg = _rollout_config(req.rollout_config())
        problem = self.runnable(req.method)
        if problem:
            raise BadRequest(problem)
        steps = -(-req.horizon // req.agents_per_step)
        if method_spec(req.method).macro_state and steps > MAX_MACRO_STEPS:
            raise BadRequest(f"method {req.method} is limited to {MAX_MACRO_STEPS} steps here (horizon {req.horizon} at "
                             f"{req.agents_per_step} agents per step is {steps}): each step's saved start carries the "
                             "macro history; raise agents_per_step, or run longer ones with mfray simulate")
        sim_id = uuid.uuid4().hex[:12]
        if req.upload is None:
            origin = {"stored": req.event_id, "pick": req.pick}
            return await self._open(sim_id, self._event(origin), origin, None, cfg, req.seed, None, req.start, req.steps)
        file = self.catalog.save_upload(sim_id, req.upload.suffix, req.upload.content, req.upload.encoding)
        origin = {"upload": req.upload.filename, "file": file, "pick": req.pick}
        try:
            return await self._open(sim_id, self._event(origin), origin, None, cfg, req.seed, None, req.start, req.steps)
        except BaseException:
            (self.catalog.uploads / file).unlink(missing_ok=True)  # a refused upload is not kept
            raise

    async def fork(self, sim_id: str, req: Fork) -> Simulation:
        """A new simulation from the start of step req.step of `sim_id` (live or ended)."""
        parent = self.get(sim_id)
        event = self._event(parent.meta["origin"])
        try:
            if parent.live:
                state = await parent.session.snapshot_at(req.step)
            elif parent.final_state is not None:
                # The ended run's session rebuilt from its final state only to cut the snapshot: no model runs.
                state = LiveSession(event, None, state=parent.final_state).snapshot(req.step)
            else:
                raise Conflict(f"simulation {sim_id} kept no state to fork from (it failed mid-step)")
        except ValueError as err:  # a step not reached (the message names those that are)
            raise BadRequest(str(err)) from None
        return await self._open(uuid.uuid4().hex[:12], event, parent.meta["origin"], {"id": sim_id, "step": req.step},
                                state["config"], state["seed"], state, req.start, req.steps)

    async def shutdown(self) -> None:
        """End every live simulation as cancelled (saved: readable and forkable after a restart)."""
        for sim in list(self.sims.values()):
            if sim.live:
                await sim.cancel()

    # ---- helpers ------------------------------------------------------------------------------
    def _event(self, origin: dict) -> Event:
        if "stored" in origin:
            return self.catalog.stored(origin["stored"], origin.get("pick"))
        return self.catalog.uploaded(origin["file"], origin.get("pick"), origin["upload"])

    async def _open(self, sim_id: str, event: Event, origin: dict, parent: dict | None, cfg: dict, seed: int,
                    state: dict | None, start: bool, steps: int | None) -> Simulation:
        async with self._lock:
            if self.live >= self.max_live:
                raise TooManyLive(f"{self.live} simulations are live, the limit is {self.max_live}: cancel one, or "
                                  "wait for one to end")
            try:
                session = await self.sessions.open(event, cfg, seed, state, name=sim_id)
            except ValueError as err:  # the session's own refusal, e.g. mfmdp with no labelled warm-up post
                raise BadRequest(str(err)) from None
            meta = {"id": sim_id, "event_id": event.event_id, "origin": origin, "parent": parent, "method": cfg["method"],
                    "seed": seed, "horizon": cfg["horizon"], "config": cfg, "created": time.time(), "status": "paused",
                    "error": None}
            records = [StepRecord(**r) for r in state["records"]] if state else []
            labels = await label_records(records, self.annotator)
            sim = Simulation(sim_id, session, self.annotator, meta, records, labels)
            sim.on_change = self._changed
            self.metas[sim_id] = meta
            self._hold(sim)
        await self._changed(sim)
        if start:
            sim.start(steps)
        return sim

    def _hold(self, sim: Simulation) -> None:
        self.sims[sim.id] = sim
        ended = [s for s in self.sims.values() if not s.live]
        for old in sorted(ended, key=lambda s: s.meta["created"])[: max(0, len(ended) - KEEP_ENDED)]:
            del self.sims[old.id]

    async def _changed(self, sim: Simulation) -> None:
        """Persist a simulation after a status change; release the session of an ended one."""
        sim.summary()  # brings the counts in its meta up to date
        if sim.session is not None:
            state = sim.final_state if sim.status in TERMINAL else await sim.session.state_dict()
        else:
            state = sim.final_state
        _write_json(self.dir / f"{sim.id}.json", {"records": [dataclasses.asdict(r) for r in sim.records],
                                                   "labels": sim.labels, "state": state})
        _write_json(self.dir / f"{sim.id}.meta.json", sim.meta)
        if sim.status in TERMINAL and sim.session is not None:
            session, sim.session = sim.session, None
            await self.sessions.close(session)


def _rollout_config(cfg: dict) -> dict:
    try:
        return RolloutConfig.model_validate(cfg).model_dump(mode="json")
    except ValidationError as err:
        raise BadRequest("; ".join(e["msg"] for e in err.errors())) from None
