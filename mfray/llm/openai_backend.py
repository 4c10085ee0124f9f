"""An LLM-protocol backend over any OpenAI-compatible HTTP server (vLLM, mfray's own server,
OpenAI proper).

One HTTP request per prompt, all prompts of a batch in flight at once (bounded by a semaphore):
the server does the batching (vLLM's continuous batching, mfray's dynamic batcher). Retries are
ours, not the client library's, so they are counted in `stats` and one failed request does not
lose the rest of its batch.

The failure rule: 408, 429, every 5xx, timeouts, connection errors and 2xx replies whose body is
not the expected JSON (an HTML error page from a proxy, a truncated body) are retried with
backoff; a generate request that still fails after `max_retries` comes back in place as a
Generation with finish_reason="error" (counted in `stats.failures`), a score request raises
LLMRequestError. Other 4xx raise LLMRequestError at once. Bad arguments (a seed out of range)
raise ValueError before anything is sent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
from dataclasses import asdict, dataclass
from typing import Any, Awaitable, Callable, Literal, Sequence, TypeVar

import httpx2  # the HTTP library under openai: raw replies are its Response objects
import openai
from pydantic import BaseModel, Field, ValidationError

from mfray.llm.base import Generation, Prompt, SamplingParams, postprocess, prompt_seeds

log = logging.getLogger(__name__)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

_MAX_BACKOFF_S = 30.0
# 408 is a server-side timeout; 429 rate limiting; every 5xx is the server's fault: worth retrying.
_RETRY_STATUS = frozenset({408, 429})

_HINTS = {
    400: "the server rejected the request; if this is OpenAI proper, pass send_extra_sampling=False "
    "(it rejects top_k/repetition_penalty)",
    401: "set a valid API key in the environment variable named by api_key_env",
    403: "the API key lacks access to this model",
    404: "check that base_url ends in /v1 and that the model (or adapter) name is served there",
    413: "the request body is too large; send fewer or shorter prompts",
    422: "the server rejected a field value; check the sampling parameters",
}


class LLMRequestError(RuntimeError):
    """A request the server refused for a reason retrying cannot fix (a 4xx other than 408/429),
    or a score request that still failed after all retries."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class _Exhausted(Exception):
    """Internal: retries ran out; carries the last error's description and the retries made."""

    def __init__(self, message: str, retries: int) -> None:
        super().__init__(message)
        self.retries = retries


class _Malformed(Exception):
    """Internal: a 2xx reply whose body is not the expected JSON; retried like a 5xx."""


# -- the parts of a reply we read (extra fields are ignored; a missing one makes it malformed) --


class _Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0


class _Message(BaseModel):
    content: str | None = None


class _ChatChoice(BaseModel):
    message: _Message
    finish_reason: str | None = None


class _EchoLogprobs(BaseModel):
    tokens: list[str] | None = None
    text_offset: list[int] | None = None
    token_logprobs: list[float | None] | None = None


class _TextChoice(BaseModel):
    text: str
    finish_reason: str | None = None
    logprobs: _EchoLogprobs | None = None


class _ChatReply(BaseModel):
    choices: list[_ChatChoice] = Field(min_length=1)
    usage: _Usage | None = None


class _TextReply(BaseModel):
    choices: list[_TextChoice] = Field(min_length=1)
    usage: _Usage | None = None


class _ScoreReply(BaseModel):
    logprobs: list[list[float | None]]  # null: a non-finite log-prob (see mfray's /v1/score)


def _parse_reply(response: httpx2.Response, reply_type: type[M]) -> M:
    """The JSON body of a 2xx reply as `reply_type`. Raises _Malformed when it is not one (an HTML page
    from a proxy, a truncated body, JSON of another shape): a server that answers 200 with junk
    is failing, so the caller retries it like a 5xx instead of letting a parse error escape."""
    try:
        return reply_type.model_validate_json(response.content)
    except ValidationError as e:
        ctype = response.headers.get("content-type", "no content-type")
        first = e.errors()[0]
        where = ".".join(str(x) for x in first.get("loc", ())) or "body"
        raise _Malformed(
            f"HTTP {response.status_code} with a malformed body ({ctype}, {len(response.content)} bytes; "
            f"{where}: {first.get('msg', 'invalid')})"
        ) from None


@dataclass
class BackendStats:
    """Running totals. `requests` counts logical requests (one per prompt, one per score item or
    score chunk), `retries` the extra attempts, `failures` requests that ended in error."""

    requests: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class OpenAIBackend:
    """LLM protocol over an OpenAI-compatible server.

    String prompts go to /v1/completions as is; chat prompts go to /v1/chat/completions (the
    server renders the chat template). mode="completions" is for servers without chat support:
    chat prompts are then refused up front. `adapter` is sent as the `model` field, after
    `adapter_prefix` (vLLM's multi-LoRA convention; "<model_id>:" under ray.serve.llm), else `model`.

    `send_extra_sampling`: send top_k and repetition_penalty in the body (vLLM and mfray's server
    accept them; OpenAI proper rejects unknown fields). `send_first_line`: send mfray's
    `first_line` extension so mfray's server stops at the first line (vLLM would only warn).
    `score_endpoint`: use mfray's /v1/score extension for `score` (needed for chat prompts).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        mode: Literal["chat", "completions"] = "chat",
        max_concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        send_extra_sampling: bool = True,
        send_first_line: bool = False,
        score_endpoint: bool = False,
        score_chunk: int = 32,
        rng_seed: int = 0,
        adapter_prefix: str = "",
    ) -> None:
        if mode not in ("chat", "completions"):
            raise ValueError(f"mode must be 'chat' or 'completions', got {mode!r}")
        if max_concurrency < 1 or max_retries < 0 or timeout_s <= 0 or backoff_s < 0:
            raise ValueError("need max_concurrency >= 1, max_retries >= 0, timeout_s > 0, backoff_s >= 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.mode = mode
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.send_extra_sampling = send_extra_sampling
        self.send_first_line = send_first_line
        self.score_endpoint = score_endpoint
        self.score_chunk = max(1, score_chunk)
        self.adapter_prefix = adapter_prefix
        self.stats = BackendStats()
        # Local servers accept any key; the key itself is only handed to the client, never logged.
        self._api_key = os.environ.get(api_key_env) or "EMPTY"
        self._rng = random.Random(rng_seed)  # seeded jitter: runs are reproducible
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: openai.AsyncOpenAI | None = None
        self._sem: asyncio.Semaphore | None = None

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, mode={self.mode!r})"

    # -- plumbing -----------------------------------------------------------------------------

    def _ensure_client(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        # Pooled connections and semaphores belong to one event loop; a backend reused under a
        # fresh loop (a second asyncio.run, per-test loops) gets a fresh client instead of hanging.
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._client is None or self._sem is None:
            self._client = openai.AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._api_key,
                timeout=self.timeout_s,
                max_retries=0,  # our own loop retries, so retries are counted
            )
            self._sem = asyncio.Semaphore(self.max_concurrency)
            self._loop = loop
        return self._client, self._sem

    async def aclose(self) -> None:
        """Close the HTTP connection pool."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    def _request_error(self, e: openai.APIStatusError) -> LLMRequestError:
        hint = _HINTS.get(e.status_code, "fix the request; retrying will not help")
        return LLMRequestError(
            f"HTTP {e.status_code} from {self.base_url}: {e.message} -- {hint}", status=e.status_code
        )

    def _delay(self, attempt: int, err: Exception) -> float:
        delay = self.backoff_s * (2**attempt) * (1.0 + 0.5 * self._rng.random())
        if isinstance(err, openai.APIStatusError):
            # Honour a server's Retry-After (rate limiters know best), capped so a bad header
            # cannot stall a run.
            try:
                delay = max(delay, float(err.response.headers.get("retry-after", 0)))
            except ValueError:
                pass
        return min(delay, _MAX_BACKOFF_S)

    async def _call(self, fn: Callable[[openai.AsyncOpenAI], Awaitable[T]]) -> tuple[T, int]:
        """Run one request (and the parse of its reply) with retries on 408/429/5xx, timeouts,
        connection errors and malformed 2xx bodies; returns the reply and the retries it took.
        Raises LLMRequestError on other 4xx and _Exhausted when retries run out."""
        client, sem = self._ensure_client()
        attempt = 0
        while True:
            async with sem:  # held per attempt, not during backoff, so others can proceed
                try:
                    return await fn(client), attempt
                except openai.APIStatusError as e:
                    if e.status_code not in _RETRY_STATUS and e.status_code < 500:
                        raise self._request_error(e) from e
                    err: Exception = e
                    desc = f"HTTP {e.status_code}: {e.message}"
                except openai.APIConnectionError as e:  # includes APITimeoutError
                    err = e
                    desc = f"{type(e).__name__}: {e.message}"
                except _Malformed as e:
                    err = e
                    desc = str(e)
            if attempt >= self.max_retries:
                raise _Exhausted(f"{desc} (from {self.base_url}, after {attempt} retries)", attempt)
            delay = self._delay(attempt, err)
            attempt += 1
            self.stats.retries += 1
            log.debug("retry %d in %.2fs after %s", attempt, delay, desc)
            await asyncio.sleep(delay)

    async def _gather(self, coros: list[Awaitable[T]]) -> list[T]:
        # Like gather, but a fatal error (LLMRequestError) cancels the siblings instead of leaving
        # them running against a server that is misconfigured anyway.
        tasks = [asyncio.ensure_future(c) for c in coros]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    # -- generate -----------------------------------------------------------------------------

    @staticmethod
    async def _create(resource: Any, reply_type: type[M], **kw: Any) -> M:
        # The raw reply, parsed by us: the SDK would hand back an HTML page as a str and raise
        # a bare JSONDecodeError on a truncated body.
        response = await resource.with_raw_response.create(**kw)
        return _parse_reply(response.http_response, reply_type)

    def _model(self, adapter: str | None) -> str:
        """The `model` field of a request for `adapter` (None: the base model)."""
        return self.model if adapter is None else f"{self.adapter_prefix}{adapter}"

    def _sampling_kwargs(self, s: SamplingParams, seed: int | None) -> dict[str, Any]:
        kw: dict[str, Any] = {"temperature": s.temperature, "top_p": s.top_p, "max_tokens": s.max_new_tokens}
        if seed is not None:
            kw["seed"] = seed
        extra: dict[str, Any] = {}
        if self.send_extra_sampling:
            extra.update(top_k=s.top_k, repetition_penalty=s.repetition_penalty)
        if self.send_first_line:
            extra["first_line"] = s.first_line
        if extra:
            kw["extra_body"] = extra
        return kw

    async def generate(
        self,
        prompts: list[Prompt],
        sampling: SamplingParams,
        adapter: str | None = None,
        seeds: Sequence[int | None] | None = None,
    ) -> list[Generation]:
        """One request per prompt, all in flight together, each with its own seed
        (`prompt_seeds`); results in prompt order. A request that still fails after retries comes
        back with finish_reason="error". Raises ValueError for a seed out of range (before
        sending anything) and LLMRequestError for a request the server refuses (4xx)."""
        seeds = prompt_seeds(len(prompts), sampling, seeds)
        if self.mode == "completions" and any(not isinstance(p, str) for p in prompts):
            raise ValueError(
                "mode='completions' cannot send chat prompts: render them to strings first or use mode='chat'"
            )
        model = self._model(adapter)
        return await self._gather([self._generate_one(p, sampling, seed, model) for p, seed in zip(prompts, seeds)])

    async def _generate_one(self, prompt: Prompt, sampling: SamplingParams, seed: int | None, model: str) -> Generation:
        t0 = time.perf_counter()
        self.stats.requests += 1
        kw = self._sampling_kwargs(sampling, seed)
        try:
            reply: _TextReply | _ChatReply
            if isinstance(prompt, str):
                reply, retries = await self._call(
                    lambda c: self._create(c.completions, _TextReply, model=model, prompt=prompt, **kw)
                )
                raw = reply.choices[0].text
            else:
                reply, retries = await self._call(
                    lambda c: self._create(c.chat.completions, _ChatReply, model=model, messages=prompt, **kw)
                )
                raw = reply.choices[0].message.content or ""
        except _Exhausted as e:
            self.stats.failures += 1
            log.warning("request failed after retries: %s", e)
            return Generation("", 0, 0, "error", time.perf_counter() - t0, error=str(e), retries=e.retries)
        pt = reply.usage.prompt_tokens if reply.usage else 0
        ct = reply.usage.completion_tokens if reply.usage else 0
        self.stats.prompt_tokens += pt
        self.stats.completion_tokens += ct
        reason = reply.choices[0].finish_reason
        return Generation(
            text=postprocess(raw, sampling.first_line),
            prompt_tokens=pt,
            completion_tokens=ct,
            finish_reason="length" if reason == "length" else "stop",
            latency_s=time.perf_counter() - t0,
            retries=retries,
        )

    # -- score --------------------------------------------------------------------------------

    async def score(
        self, prompts: list[Prompt], completions: list[str], adapter: str | None = None
    ) -> list[list[float]]:
        """Per-token log-probs of each completion given its prompt. With score_endpoint=True this
        uses mfray's /v1/score (a null there, a non-finite log-prob, becomes NaN); otherwise
        string prompts only, via /v1/completions with echo. Raises LLMRequestError when a request
        still fails after retries (no partial result)."""
        if len(prompts) != len(completions):
            raise ValueError(f"{len(prompts)} prompts but {len(completions)} completions")
        model = self._model(adapter)
        if self.score_endpoint:
            chunks = [
                (prompts[i : i + self.score_chunk], completions[i : i + self.score_chunk])
                for i in range(0, len(prompts), self.score_chunk)
            ]
            parts = await self._gather([self._score_remote(p, c, model) for p, c in chunks])
            return [lp for part in parts for lp in part]
        if any(not isinstance(p, str) for p in prompts):
            raise NotImplementedError(
                "score over chat prompts needs the local engine or the mfray server's /v1/score "
                "(OpenAIBackend(..., score_endpoint=True))"
            )
        return await self._gather([self._score_echo(p, c, model) for p, c in zip(prompts, completions)])

    async def _scored(self, fn: Callable[[openai.AsyncOpenAI], Awaitable[T]]) -> T:
        self.stats.requests += 1
        try:
            return (await self._call(fn))[0]
        except _Exhausted as e:
            self.stats.failures += 1
            raise LLMRequestError(f"score request failed: {e}") from None

    async def _score_remote(self, prompts: list[Prompt], completions: list[str], model: str) -> list[list[float]]:
        body = {"model": model, "prompts": prompts, "completions": completions}

        async def request(c: openai.AsyncOpenAI) -> _ScoreReply:
            reply = _parse_reply(await c.post("/score", cast_to=httpx2.Response, body=body), _ScoreReply)
            if len(reply.logprobs) != len(prompts):
                raise _Malformed(
                    f"/v1/score returned {len(reply.logprobs)} rows of log-probs for {len(prompts)} prompts"
                )
            return reply

        reply = await self._scored(request)
        return [[math.nan if x is None else x for x in row] for row in reply.logprobs]

    async def _score_echo(self, prompt: str, completion: str, model: str) -> list[float]:
        full = prompt + completion
        # max_tokens=0 + echo: the server only scores the text (vLLM's prompt-logprobs path).
        reply = await self._scored(
            lambda c: self._create(
                c.completions, _TextReply, model=model, prompt=full, echo=True, logprobs=1, max_tokens=0, temperature=0
            )
        )
        lp = reply.choices[0].logprobs
        if lp is None or lp.text_offset is None or lp.token_logprobs is None or lp.tokens is None:
            raise LLMRequestError(
                f"{self.base_url} returned no echo logprobs; this server cannot score via /v1/completions "
                "(use the local engine or mfray's server with score_endpoint=True)"
            )
        return completion_logprobs(lp.tokens, lp.text_offset, lp.token_logprobs, len(prompt), len(full))


def completion_logprobs(
    tokens: list[str], offsets: list[int], logprobs: list[float | None], start: int, end: int
) -> list[float]:
    """Pick the log-probs of the tokens covering characters [start, end) of an echoed text.
    A token straddling the prompt/completion boundary counts as completion (it carries completion
    characters); tokens past `end` (generated, not echoed) are dropped, and so is the first
    token's missing (None) log-prob."""
    out: list[float] = []
    for i, (off, lp) in enumerate(zip(offsets, logprobs)):
        tok_end = offsets[i + 1] if i + 1 < len(offsets) else off + len(tokens[i])
        if off < start and tok_end <= start:
            continue  # prompt token
        if off >= end:
            break
        if lp is not None:
            out.append(float(lp))
    return out
