"""The simulation endpoint's FastAPI app: JSON routes under /api, a Server-Sent Events stream per
simulation, the page at / (static/, no build step) and /health. OpenAPI schema at /openapi.json,
interactive docs at /docs.

Errors are JSON `{"error": {"message", "type", "code"}}`: 404 unknown ids, 409 a request the
simulation's status refuses, 413 a body over the limit, 422 a bad request (the message names the
field and what to change), 429 too many live simulations (with Retry-After), 401 without the
bearer token when one is set. Failures inside answer 500 with an error id only; the cause goes to
the server log. Responses carry no server paths: events are named by id or by the uploader's
own file name.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from mfray.endpoint.catalog import BadEvent, EventNotFound
from mfray.endpoint.host import SimulationHost, TooManyLive, UnknownSimulation
from mfray.endpoint.plots import plot_png
from mfray.endpoint.schemas import MAX_BODY_BYTES, CreateSimulation, Fork, Intervene, Resume, SetSignal
from mfray.endpoint.simulation import BadRequest, Conflict
from mfray.eval.labels import DIMENSIONS
from mfray.sim.methods import REGISTRY
from mfray.http_common import BearerAuthMiddleware, BodyLimitMiddleware, error_response, logged_failure, validation_message

STATIC = Path(__file__).resolve().parent / "static"
MAX_PAGE = 1000  # trajectory records per request
RETRY_AFTER_S = 10


def build_app(host: SimulationHost, token: str | None = None,
              on_request: Callable[[str, int], None] | None = None) -> FastAPI:
    """The endpoint over `host`. `token`: when given, every /api route needs `Authorization:
    Bearer <token>` (the page and /health stay open; the page asks for the token). `on_request`:
    called with (route, status code) after each API request (the Ray deployment counts them)."""
    if token is not None and not token:
        raise ValueError("token must be a non-empty string (or None for no authentication)")
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await host.shutdown()  # live simulations end as cancelled, on disk, readable and forkable

    app = FastAPI(title="mfray simulation endpoint", version="1", lifespan=lifespan,
                  description="Simulate how a population reacts to an event (MF-LLM), live: stream steps, "
                              "intervene, fork what-ifs, compare with the real posts.")
    app.state.host = host
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES, hint="upload a smaller event file")
    if token is not None:
        app.add_middleware(BearerAuthMiddleware, api_key=token, prefix="/api")

    errors: dict[type, tuple[int, str]] = {
        UnknownSimulation: (404, "not_found_error"), EventNotFound: (404, "not_found_error"),
        Conflict: (409, "conflict_error"), BadRequest: (422, "invalid_request_error"),
        BadEvent: (422, "invalid_request_error"),
    }
    for kind, (code, etype) in errors.items():
        app.add_exception_handler(kind, lambda _, exc, code=code, etype=etype: error_response(code, str(exc), etype))

    @app.exception_handler(TooManyLive)
    async def _too_many(_: Request, exc: TooManyLive) -> JSONResponse:
        response = error_response(429, str(exc), "rate_limit_error")
        response.headers["Retry-After"] = str(RETRY_AFTER_S)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(422, validation_message(exc))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), "not_found_error" if exc.status_code == 404 else "invalid_request_error")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, logged_failure("internal server error", exc), "server_error")

    if on_request is not None:
        @app.middleware("http")
        async def _count(request: Request, call_next):
            response = await call_next(request)
            route = request.scope.get("route")
            if request.url.path.startswith("/api") and route is not None:
                on_request(route.path, response.status_code)
            return response

    @app.get("/health", tags=["server"])
    async def health() -> dict:
        """Liveness, the live count and whether /api needs a token (open: no token needed)."""
        return {"status": "ok", "live": host.live, "max_live": host.max_live, "auth": token is not None}

    @app.get("/api/events", tags=["events"])
    async def events() -> dict:
        """The stored events a simulation can be created from."""
        return {"events": host.catalog.listing()}

    @app.get("/api/methods", tags=["events"])
    async def methods() -> dict:
        """The simulation methods (mfray.sim.methods), and whether this server can run each (a
        method whose adapters it does not load cannot)."""
        return {"methods": [{"name": m.name, "summary": m.summary, "uses_mean_field": m.uses_mean_field,
                             "available": host.runnable(m.name) is None} for m in REGISTRY.values()]}

    @app.get("/api/simulations", tags=["simulations"])
    async def simulations() -> dict:
        """Every simulation, live and ended (also those of earlier runs of the server), newest first."""
        return {"simulations": host.listing(), "live": host.live, "max_live": host.max_live}

    @app.post("/api/simulations", status_code=201, tags=["simulations"])
    async def create(req: CreateSimulation) -> dict:
        """Create a simulation from a stored event (event_id) or an uploaded file (upload)."""
        return await (await host.create(req)).info()

    @app.get("/api/simulations/{sim_id}", tags=["simulations"])
    async def info(sim_id: str) -> dict:
        """Where a simulation stands: status, steps done, its plan."""
        return await host.get(sim_id).info()

    @app.post("/api/simulations/{sim_id}/pause", tags=["control"])
    async def pause(sim_id: str) -> dict:
        """Pause after the step under way."""
        sim = host.get(sim_id)
        sim.pause()
        return await sim.info()

    @app.post("/api/simulations/{sim_id}/resume", tags=["control"])
    async def resume(sim_id: str, req: Resume | None = None) -> dict:
        """Run on: to the end, or `steps` more steps."""
        sim = host.get(sim_id)
        sim.start(req.steps if req else None)
        return await sim.info()

    @app.post("/api/simulations/{sim_id}/cancel", tags=["control"])
    async def cancel(sim_id: str) -> dict:
        """End it now; it stays readable (and forkable) with status cancelled."""
        sim = host.get(sim_id)
        await sim.cancel()
        return await sim.info()

    @app.post("/api/simulations/{sim_id}/intervene", tags=["control"])
    async def intervene(sim_id: str, req: Intervene) -> dict:
        """Insert posts as the actions of agents of a coming step."""
        sim = host.get(sim_id)
        await sim.intervene(req.posts, req.agents, req.step)
        return await sim.info()

    @app.post("/api/simulations/{sim_id}/signal", tags=["control"])
    async def signal(sim_id: str, req: SetSignal) -> dict:
        """Set the exogenous signal every prompt shows from a coming step on."""
        sim = host.get(sim_id)
        await sim.set_signal(req.text, req.step)
        return await sim.info()

    @app.post("/api/simulations/{sim_id}/fork", status_code=201, tags=["control"])
    async def fork(sim_id: str, req: Fork) -> dict:
        """A what-if from the start of a past step: a new simulation sharing the past."""
        return await (await host.fork(sim_id, req)).info()

    @app.get("/api/simulations/{sim_id}/stream", tags=["results"],
             responses={200: {"content": {"text/event-stream": {}}, "description": "Server-Sent Events"}})
    async def stream(sim_id: str, request: Request, since: int = Query(0, ge=0)) -> StreamingResponse:
        """Server-Sent Events: every step (posts, mean field, label shares) and status change,
        from message `since` (or the Last-Event-ID header + 1) on, until the simulation ends."""
        sim = host.get(sim_id)
        last = request.headers.get("last-event-id", "")
        start = int(last) + 1 if last.isdigit() and len(last) < 10 else since
        return StreamingResponse(_sse(sim.stream(start), start), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/simulations/{sim_id}/trajectory", tags=["results"])
    async def trajectory(sim_id: str, offset: int = Query(0, ge=0), limit: int = Query(200, ge=1, le=MAX_PAGE),
                         prompts: bool = False) -> dict:
        """Records (one per agent, real and simulated side by side), a page at a time; the
        policy prompts only when asked for (they are long)."""
        sim = host.get(sim_id)
        rows = [dataclasses.asdict(r) for r in sim.records[offset: offset + limit]]
        if not prompts:
            for row in rows:
                row.pop("policy_prompt")
        return {"total": len(sim.records), "offset": offset, "records": rows}

    @app.get("/api/simulations/{sim_id}/metrics", tags=["results"])
    async def metrics(sim_id: str) -> dict:
        """Per dimension, the simulated posts so far against the real ones (KL, Wasserstein, DTW
        over step windows; F1 over same-agent pairs), labelled by the server's annotator."""
        sim = host.get(sim_id)
        rows = sim.metrics()  # on the loop: the drive loop appends records and labels between awaits
        return {"annotator": host.annotator.name, "dimensions": _json_safe(rows)}

    @app.get("/api/simulations/{sim_id}/plot.png", tags=["results"], response_class=Response,
             responses={200: {"content": {"image/png": {}}}})
    async def plot(sim_id: str, dimension: str = Query("attitude", max_length=40),
                   compare: str | None = Query(None, max_length=40)) -> Response:
        """Label shares per step of one dimension, real vs simulated (and a what-if's: compare=<id>)."""
        if dimension not in DIMENSIONS:
            raise BadRequest(f"dimension must be one of {', '.join(DIMENSIONS)}")
        sim = host.get(sim_id)
        other = host.get(compare).messages if compare else None
        title = f"{sim.meta['event_id']} · {sim.meta['method']} · {dimension}"
        png = await asyncio.to_thread(plot_png, list(sim.messages), dimension, title, other, f"what-if {compare}")
        return Response(png, media_type="image/png")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _json_safe(rows: list[dict]) -> list[dict]:
    """NaN (nothing to compare yet) as null: JSON has no NaN."""
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()} for row in rows]


async def _sse(messages: AsyncIterator[dict | None], first: int) -> AsyncIterator[bytes]:
    i = first
    async for message in messages:
        if message is None:
            yield b": keep-alive\n\n"
            continue
        yield f"id: {i}\nevent: {message['type']}\ndata: {json.dumps(message, ensure_ascii=False)}\n\n".encode()
        i += 1
