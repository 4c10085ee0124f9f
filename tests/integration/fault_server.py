"""A fault-injecting OpenAI-compatible chat server on 127.0.0.1, for testing failure accounting.

It stands behind the project's own endpoint interface (OpenAI-compatible /v1/chat/completions, and
/v1/completions for raw-string prompts)
and never claims a capability: every successful answer is a canned text naming its request. What
it injects is a deterministic function of the request body, so a test knows exactly what the
client had to survive:
- one distinct prompt (messages) in `doom_every`, chosen by its content's hash (so not by the
  order requests arrive in, which batching changes), fails on every attempt and every seed (the client gives up; the rollout's own retries, with new seeds, fail
  too: the agent is recorded as failed);
- any other request fails on its first 0, 1 or 2 attempts (by the hash of the whole body, seed
  included), then succeeds;
- a failure is, in turn by attempt: a 500, a 429 with Retry-After, a 200 whose JSON is cut off,
  a 200 HTML page, or a stall longer than the client's timeout.
`faults` counts every failure injected; `answers` every canned text sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

FAULTS = ("500", "429", "cut_json", "html", "stall")


class FaultPlan:
    """Decides each request's fate and counts what was injected (thread-safe)."""

    def __init__(self, doom_every: int = 3, stall_s: float = 3.0, retry_after_s: int = 1) -> None:
        self.doom_every, self.stall_s, self.retry_after_s = doom_every, stall_s, retry_after_s
        self.faults = 0
        self.by_kind = dict.fromkeys(FAULTS, 0)
        self.answers: list[str] = []
        self.requests = 0
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()

    def fate(self, body: dict) -> tuple[str | None, str]:
        """(fault kind or None, canned answer) for this attempt of `body`."""
        messages = json.dumps(body.get("messages", body.get("prompt")), sort_keys=True)  # chat or raw prompt
        key = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        whole = int(key[:8], 16)
        with self._lock:
            self.requests += 1
            attempt = self._attempts.get(key, 0)
            self._attempts[key] = attempt + 1
            doomed = int(hashlib.sha256(messages.encode()).hexdigest()[:8], 16) % self.doom_every == 0
            if doomed or attempt < whole % 3:
                kind = FAULTS[(whole // 3 + attempt) % len(FAULTS)]
                self.faults += 1
                self.by_kind[kind] += 1
                return kind, ""
            answer = f"canned post {key[:10]}"
            self.answers.append(answer)
            return None, answer


def fault_app(plan: FaultPlan) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await answer_or_fault(request, chat=True)

    @app.post("/v1/completions")  # raw-string prompts (the timeline prompt style)
    async def completions(request: Request) -> Response:
        return await answer_or_fault(request, chat=False)

    async def answer_or_fault(request: Request, chat: bool) -> Response:
        body = json.loads(await request.body())
        kind, answer = plan.fate(body)
        if kind == "500":
            return JSONResponse({"error": {"message": "injected"}}, status_code=500)
        if kind == "429":
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429,
                                headers={"Retry-After": str(plan.retry_after_s)})
        if kind == "cut_json":
            return Response('{"id": "x", "object": "chat.completion", "choices": [{"mess', media_type="application/json")
        if kind == "html":
            return HTMLResponse("<html><body><h1>502 Bad Gateway</h1></body></html>")
        if kind == "stall":
            await asyncio.sleep(plan.stall_s)
            return JSONResponse({"error": {"message": "too late"}}, status_code=500)
        choice = ({"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"} if chat
                  else {"index": 0, "text": answer, "finish_reason": "stop"})
        return JSONResponse({
            "id": "x", "object": "chat.completion" if chat else "text_completion", "created": 0, "model": body.get("model"),
            "choices": [choice], "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        })

    return app
