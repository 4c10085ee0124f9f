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
import math
import time
import uuid
from typing import AsyncIterator, Literal, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from mfray.http_common import BearerAuthMiddleware, BodyLimitMiddleware, error_response, logged_failure, validation_message
from mfray.llm.base import LLM, MAX_LOOKUP, SEED_MAX, SEED_MIN, Generation, Prompt, SamplingParams, prompt_seeds
from mfray.llm.batching import BatchedLLM, DynamicBatcher, Overloaded, PromptTooLong

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
    lookup: int = Field(0, ge=0, le=MAX_LOOKUP)  # mfray extension: prompt-lookup draft tokens (SamplingParams)
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
            lookup=self.lookup,
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


def json_logprobs(rows: Sequence[Sequence[float]]) -> list[list[float | None]]:
    """Log-probs as JSON can carry them: each non-finite value (NaN, +inf, -inf) becomes null,
    since JSON has no encoding for them (a float that does not fit is no number to report)."""
    return [[float(x) if math.isfinite(x) else None for x in row] for row in rows]


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
        return error_response(400, validation_message(exc))

    @app.exception_handler(HTTPException)
    async def _on_http(_: Request, exc: HTTPException) -> JSONResponse:
        etype = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return error_response(exc.status_code, str(exc.detail), etype)

    @app.exception_handler(Overloaded)
    async def _on_overload(_: Request, exc: Overloaded) -> JSONResponse:
        response = error_response(429, str(exc), "rate_limit_error")
        response.headers["Retry-After"] = str(math.ceil(exc.retry_after_s))
        return response

    @app.exception_handler(PromptTooLong)
    async def _on_too_long(_: Request, exc: PromptTooLong) -> JSONResponse:
        return error_response(400, str(exc))

    @app.exception_handler(Exception)
    async def _on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        return error_response(500, logged_failure("internal server error", exc), "server_error")

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
