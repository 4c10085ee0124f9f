"""An OpenAI-compatible HTTP server over any LLM-protocol object.

Endpoints: GET /v1/models, POST /v1/chat/completions, POST /v1/completions, POST /v1/score
(mfray extension: {model, prompts, completions} -> {"logprobs": [[float]]}), GET /health.

Requests are validated with pydantic (errors come back as 400 in OpenAI's error shape), bodies
are capped (413), and concurrent requests are merged into few `llm.generate` calls by the dynamic
batcher of mfray.llm.batching: that is what makes a local engine efficient behind many small
HTTP requests. This module is the HTTP front only. Optional
limits: prompts longer than `max_prompt_tokens` are refused (400), requests asking for more than
`max_request_tokens` new tokens (prompts x max_tokens) are refused (413), and when more than
`max_queue` prompts already wait for the engine new requests are refused with 429 and a
Retry-After header instead of queueing without bound. With `api_key`, every /v1 route needs
`Authorization: Bearer <key>` (401 otherwise); /health stays open.

Failures inside the server answer 5xx with a generic message and a short error id; the exception
text (which may hold file paths or an upstream's address) goes only to the server log, under
that id.

The routes call a `BatchedLLM` (mfray.llm.batching), which in-process callers (the Ray Serve
deployment's handle methods) call too, so they share the HTTP requests' batches.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import logging
import math
import threading
import time
import uuid
from typing import Any, AsyncIterator, Literal, Sequence

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from mfray.llm.base import LLM, SEED_MAX, SEED_MIN, Generation, Prompt, SamplingParams, prompt_seeds
from mfray.llm.batching import BatchedLLM, DynamicBatcher, Overloaded, PromptTooLong

log = logging.getLogger(__name__)

MAX_TOKENS_LIMIT = 4096
DEFAULT_MAX_TOKENS = 256
MAX_BODY_BYTES = 1 << 20
MAX_PROMPTS_PER_REQUEST = 1024


# -- request models ---------------------------------------------------------------------------


class _TextPart(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ChatMessageIn(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: str | list[_TextPart]

    def as_dict(self) -> dict[str, str]:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": self.role, "content": text}


class _SamplingRequest(BaseModel):
    """Fields shared by chat and text completions. Unknown fields are ignored (as vLLM does);
    fields we cannot honour (n>1, stream, stop, penalties) are refused in `_refuse_unsupported`."""

    model_config = ConfigDict(extra="ignore")

    model: str
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS_LIMIT)
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)  # one range for every backend (base.py)
    top_k: int = Field(0, ge=-1)  # vLLM spells "off" as -1, we as 0
    repetition_penalty: float = Field(1.0, gt=0)
    first_line: bool = False  # mfray extension: keep (and stop at) the first non-empty line
    n: int = 1
    stream: bool = False
    stop: str | list[str] | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0

    def sampling(self) -> SamplingParams:
        return SamplingParams(
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=max(self.top_k, 0),
            repetition_penalty=self.repetition_penalty,
            max_new_tokens=self.max_completion_tokens or self.max_tokens or DEFAULT_MAX_TOKENS,
            first_line=self.first_line,
            seed=self.seed,
        )


class ChatCompletionRequest(_SamplingRequest):
    messages: list[ChatMessageIn] = Field(min_length=1)


class CompletionRequest(_SamplingRequest):
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = None


class ScoreRequest(BaseModel):
    model: str
    prompts: list[str | list[ChatMessageIn]] = Field(min_length=1, max_length=MAX_PROMPTS_PER_REQUEST)
    completions: list[str] = Field(min_length=1, max_length=MAX_PROMPTS_PER_REQUEST)


def _refuse_unsupported(req: _SamplingRequest) -> None:
    if req.stream:
        raise HTTPException(400, "stream=true is not supported by this server; send stream=false")
    if req.n != 1:
        raise HTTPException(400, f"n={req.n} is not supported; only n=1 (send one request per sample)")
    if req.stop:
        raise HTTPException(400, "stop sequences are not supported; use first_line=true or post-process")
    if req.presence_penalty or req.frequency_penalty:
        raise HTTPException(400, "presence/frequency penalties are not supported; use repetition_penalty")


# -- middleware and errors --------------------------------------------------------------------


def _error(status: int, message: str, etype: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": etype, "param": None, "code": status}}, status)


def logged_failure(what: str, cause: BaseException | str) -> str:
    """Log a failure with its cause under a fresh error id; return the message the client gets:
    `what` and the id only. Exception text can hold file paths, an upstream server's address or
    a prompt's content, so it stays in the server log."""
    error_id = uuid.uuid4().hex[:12]
    if isinstance(cause, BaseException):
        log.error("%s [error id %s]", what, error_id, exc_info=cause)
    else:
        log.error("%s [error id %s]: %s", what, error_id, cause)
    return f"{what} (error id {error_id}; the cause is in the server log)"


def json_logprobs(rows: Sequence[Sequence[float]]) -> list[list[float | None]]:
    """Log-probs as JSON can carry them: each non-finite value (NaN, +inf, -inf) becomes null,
    since JSON has no encoding for them (a float that does not fit is no number to report)."""
    return [[float(x) if math.isfinite(x) else None for x in row] for row in rows]


class BearerAuthMiddleware:
    """Require `Authorization: Bearer <api_key>` on every path under /v1 (401 otherwise). Other
    paths (/health, for liveness probes) stay open. The key is compared in constant time and
    never logged or echoed."""

    def __init__(self, app: Any, api_key: str) -> None:
        self.app = app
        self._key = api_key.encode()

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        scheme, _, token = dict(headers).get(b"authorization", b"").partition(b" ")
        # compare_digest on every request, whatever the scheme: the timing says nothing of the key.
        return hmac.compare_digest(token.strip(), self._key) and scheme.lower() == b"bearer"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path, root = scope["path"], scope.get("root_path", "")
            if root and path.startswith(root):  # mounted under a prefix (a Serve route prefix)
                path = path[len(root):]
            if (path == "/v1" or path.startswith("/v1/")) and not self._authorized(scope.get("headers") or []):
                message = "missing or wrong API key: send the header 'Authorization: Bearer <key>'"
                response = _error(401, message, "authentication_error")
                response.headers["WWW-Authenticate"] = "Bearer"
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413: by Content-Length up front, and by
    counting chunks for bodies sent without one."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        msg = f"request body exceeds {self.max_bytes} bytes; send fewer or shorter prompts"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await _error(413, msg)(scope, receive, send)
        seen = 0

        async def limited_receive() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # FastAPI re-raises HTTPExceptions from body reading; our handler answers 413.
                    raise HTTPException(413, msg)
            return message

        await self.app(scope, limited_receive, send)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ())[1:]) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


# -- the app ----------------------------------------------------------------------------------


def _usage(gens: list[Generation]) -> dict[str, int]:
    pt = sum(g.prompt_tokens for g in gens)
    ct = sum(g.completion_tokens for g in gens)
    return {"prompt_tokens": pt, "completion_tokens": ct, "total_tokens": pt + ct}


def build_app(
    llm: LLM,
    model_name: str,
    max_batch: int = 32,
    adapters: list[str] | tuple[str, ...] = (),
    batch_window_s: float = 0.005,
    max_inflight: int = 1,
    max_body_bytes: int = MAX_BODY_BYTES,
    max_queue: int | None = None,
    max_prompt_tokens: int | None = None,
    max_request_tokens: int | None = None,
    api_key: str | None = None,
) -> FastAPI:
    """An OpenAI-compatible FastAPI app over `llm`. `model_name` names the base model;
    `adapters` are LoRA adapter names also accepted in the `model` field (vLLM's convention).

    `max_queue`: prompts allowed to wait for the engine before requests get 429 (None: no bound).
    `max_prompt_tokens`: longer prompts get 400; needs `llm.count_tokens` (LocalEngine has it).
    `max_request_tokens`: a generate request whose prompts x max_tokens exceeds it gets 413.
    `api_key`: when given, /v1 routes need `Authorization: Bearer <api_key>` (401 otherwise).
    `app.state.llm` is the BatchedLLM the routes use (its `.batcher` has the counters)."""
    if max_request_tokens is not None and max_request_tokens < 1:
        raise ValueError(f"max_request_tokens must be >= 1 or None (no cap), got {max_request_tokens}")
    if api_key is not None and not api_key:
        raise ValueError("api_key must be a non-empty string (or None for no authentication)")
    known = [model_name, *adapters]
    batcher = DynamicBatcher(
        llm, max_batch=max_batch, window_s=batch_window_s, max_inflight=max_inflight, max_queue=max_queue
    )
    count_tokens = getattr(llm, "count_tokens", None)
    if max_prompt_tokens is not None and count_tokens is None:
        raise ValueError(f"max_prompt_tokens needs an llm with count_tokens(prompt); {type(llm).__name__} has none")
    front = BatchedLLM(batcher, adapters, max_prompt_tokens, count_tokens)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await batcher.stop()

    app = FastAPI(title="mfray OpenAI-compatible server", lifespan=lifespan)
    app.state.batcher = batcher
    app.state.llm = front
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_body_bytes)
    if api_key is not None:  # added last, so outermost: nothing is read before the key is checked
        app.add_middleware(BearerAuthMiddleware, api_key=api_key)

    @app.exception_handler(RequestValidationError)
    async def _on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, _validation_message(exc))

    @app.exception_handler(HTTPException)
    async def _on_http(_: Request, exc: HTTPException) -> JSONResponse:
        etype = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error(exc.status_code, str(exc.detail), etype)

    @app.exception_handler(Overloaded)
    async def _on_overload(_: Request, exc: Overloaded) -> JSONResponse:
        response = _error(429, str(exc), "rate_limit_error")
        response.headers["Retry-After"] = str(math.ceil(exc.retry_after_s))
        return response

    @app.exception_handler(PromptTooLong)
    async def _on_too_long(_: Request, exc: PromptTooLong) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        return _error(500, logged_failure("internal server error", exc), "server_error")

    def adapter_for(model: str) -> str | None:
        if model not in known:
            raise HTTPException(404, f"model {model!r} not found; known models: {known}")
        return None if model == model_name else model

    async def run(prompts: list[Prompt], req: _SamplingRequest) -> list[Generation]:
        """Generate for the prompts of one request. Several prompts form one batch in the
        protocol's sense: prompt i gets seed + i (as if passed to llm.generate together)."""
        _refuse_unsupported(req)
        adapter = adapter_for(req.model)
        try:
            sampling = req.sampling()
            # seed + i must stay in range for every prompt: refused here, before this request
            # is batched with others (an engine given a bad seed would fail the whole batch).
            prompt_seeds(len(prompts), sampling, None)
        except ValueError as e:
            raise HTTPException(400, str(e)) from None
        asked = len(prompts) * sampling.max_new_tokens
        if max_request_tokens is not None and asked > max_request_tokens:
            raise HTTPException(
                413,
                f"request asks for up to {asked} new tokens ({len(prompts)} prompts x max_tokens "
                f"{sampling.max_new_tokens}), limit {max_request_tokens}; send fewer prompts per request "
                "or lower max_tokens",
            )
        try:
            gens = await front.generate(prompts, sampling, adapter)
        except (Overloaded, PromptTooLong):
            raise  # their handlers answer 429 / 400
        except Exception as e:
            raise HTTPException(500, logged_failure("generation failed", e)) from None
        failed = [g for g in gens if g.finish_reason == "error"]
        if failed:  # 502: the engine behind us failed; clients retry 5xx
            raise HTTPException(502, logged_failure("generation failed upstream", failed[0].error or "no error text"))
        return list(gens)

    def envelope(prefix: str, obj: str, model: str, choices: list, gens: list[Generation]) -> dict:
        return {
            "id": f"{prefix}-{uuid.uuid4().hex}",
            "object": obj,
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": _usage(gens),
        }

    @app.get("/health")
    async def health() -> dict:
        return {
            "status": "ok",
            "batches": batcher.batches,
            "requests": batcher.items,
            "waiting": batcher.waiting,
            "rejected": batcher.rejected,
            # For operators and probes: what this server refuses (None: no bound).
            "limits": {
                "max_queue": max_queue,
                "max_prompt_tokens": max_prompt_tokens,
                "max_request_tokens": max_request_tokens,
            },
        }

    @app.get("/v1/models")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [{"id": m, "object": "model", "created": 0, "owned_by": "mfray"} for m in known],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest) -> dict:
        gens = await run([[m.as_dict() for m in req.messages]], req)
        g = gens[0]
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": g.text},
            "finish_reason": g.finish_reason,
            "logprobs": None,
        }
        return envelope("chatcmpl", "chat.completion", req.model, [choice], gens)

    @app.post("/v1/completions")
    async def completions(req: CompletionRequest) -> dict:
        if req.echo or req.logprobs is not None:
            raise HTTPException(400, "echo/logprobs are not supported here; use POST /v1/score for log-probs")
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not prompts or len(prompts) > MAX_PROMPTS_PER_REQUEST:
            raise HTTPException(400, f"prompt must hold 1..{MAX_PROMPTS_PER_REQUEST} strings")
        gens = await run(prompts, req)
        choices = [
            {"index": i, "text": g.text, "finish_reason": g.finish_reason, "logprobs": None}
            for i, g in enumerate(gens)
        ]
        return envelope("cmpl", "text_completion", req.model, choices, gens)

    @app.post("/v1/score")
    async def score(req: ScoreRequest) -> dict:
        """Per-token log-probs of each completion given its prompt. A non-finite log-prob (NaN,
        +-inf: JSON cannot carry them) is null in `logprobs`."""
        if len(req.prompts) != len(req.completions):
            raise HTTPException(400, f"{len(req.prompts)} prompts but {len(req.completions)} completions")
        adapter = adapter_for(req.model)
        prompts: list[Prompt] = [p if isinstance(p, str) else [m.as_dict() for m in p] for p in req.prompts]
        try:
            rows = await front.score(prompts, req.completions, adapter)
        except (Overloaded, PromptTooLong):
            raise
        except NotImplementedError as e:
            raise HTTPException(400, logged_failure("this model cannot score these prompts", e)) from None
        except Exception as e:
            raise HTTPException(500, logged_failure("score failed", e)) from None
        return {"object": "score", "model": req.model, "logprobs": json_logprobs(rows)}

    return app


# -- running it -------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether a server bound to `host` is reachable from this machine only ("localhost" or a
    loopback address; any other name or address may be reachable from the network)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve `app` with uvicorn until interrupted. Binds to loopback unless told otherwise."""
    uvicorn.run(app, host=host, port=port, log_level=log_level)


class ServerThread:
    """Run an app with uvicorn in a background thread (tests, in-process use).
    port=0 picks a free port; `base_url` is then e.g. http://127.0.0.1:PORT/v1."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning") -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="mfray-uvicorn", daemon=True)
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def start(self, timeout_s: float = 15.0) -> "ServerThread":
        """Start and wait until the socket accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout_s)

    def __enter__(self) -> "ServerThread":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
