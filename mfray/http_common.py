"""HTTP pieces both of mfray's servers use (the OpenAI-compatible LLM server, mfray.llm.server,
and the simulation endpoint, mfray.endpoint.app): the error body, failures logged under an id,
bearer-token and body-size middleware, validation messages, and running an app with uvicorn."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
import time
import uuid
from typing import Any

import uvicorn
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)


def error_response(status: int, message: str, etype: str = "invalid_request_error") -> JSONResponse:
    """The error body both servers answer with (OpenAI's shape), as a response."""
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


class BearerAuthMiddleware:
    """Require `Authorization: Bearer <api_key>` on every path under `prefix` (401 otherwise).
    Other paths (/health for liveness probes, a page's static files) stay open. The key is
    compared in constant time and never logged or echoed."""

    def __init__(self, app: Any, api_key: str, prefix: str = "/v1") -> None:
        self.app = app
        self._key = api_key.encode()
        self.prefix = prefix

    def _authorized(self, headers: list[tuple[bytes, bytes]]) -> bool:
        scheme, _, token = dict(headers).get(b"authorization", b"").partition(b" ")
        # compare_digest on every request, whatever the scheme: the timing says nothing of the key.
        return hmac.compare_digest(token.strip(), self._key) and scheme.lower() == b"bearer"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path, root = scope["path"], scope.get("root_path", "")
            if root and (path == root or path.startswith(root.rstrip("/") + "/")):  # mounted under a prefix
                path = path[len(root.rstrip("/")):] or "/"  # (a Serve route prefix); "/a" is no prefix of "/api"
            if (path == self.prefix or path.startswith(self.prefix + "/")) and not self._authorized(scope.get("headers") or []):
                message = "missing or wrong API key: send the header 'Authorization: Bearer <key>'"
                response = error_response(401, message, "authentication_error")
                response.headers["WWW-Authenticate"] = "Bearer"
                return await response(scope, receive, send)
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` with 413: by Content-Length up front, and by
    counting chunks for bodies sent without one. `hint` says what to send instead."""

    def __init__(self, app: Any, max_bytes: int, hint: str = "send fewer or shorter prompts") -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.hint = hint

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        msg = f"request body exceeds {self.max_bytes} bytes; {self.hint}"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await error_response(413, msg)(scope, receive, send)
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


def validation_message(exc: RequestValidationError) -> str:
    """One line naming each invalid field (without echoing its value) and what is wrong."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err.get("loc", ())[1:]) or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def is_loopback(host: str) -> bool:
    """Whether a server bound to `host` is reachable from this machine only ("localhost" or a
    loopback address; any other name or address may be reachable from the network)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(app: Any, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve `app` with uvicorn until interrupted. Binds to loopback unless told otherwise."""
    uvicorn.run(app, host=host, port=port, log_level=log_level)


class ServerThread:
    """Run an app with uvicorn in a background thread (tests, in-process use).
    port=0 picks a free port; `base_url` is then e.g. http://127.0.0.1:PORT/v1 (an OpenAI server's)."""

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
