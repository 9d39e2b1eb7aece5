"""ASGI guards in front of the service: a request-size limit and optional API-key authentication.

Both answer in JSON with a 4xx before the body is parsed, and neither logs the key or the body.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

OPEN_PATHS = frozenset(
    {"/", "/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/schema.json"}
)


async def _reply(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`, by its Content-Length or, when streamed, as it arrives."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        too_large = f"request body larger than {self.max_bytes} bytes"
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _reply(send, 413, too_large)
            return
        received = 0
        started = False

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _TooLarge
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited, tracking)
        except _TooLarge:
            if not started:
                await _reply(send, 413, too_large)


class ApiKeyMiddleware:
    """401 unless the request carries the configured key in `header` (health, metrics and the page
    itself stay open; the page sends the key the agent types with its API calls)."""

    def __init__(self, app: ASGIApp, key: str, header: str) -> None:
        self.app = app
        self._key = key.encode()
        self._header = header.lower().encode()

    def __repr__(self) -> str:  # never show the key
        return f"ApiKeyMiddleware(header={self._header.decode()!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        given: Any = dict(scope["headers"]).get(self._header, b"")
        if not hmac.compare_digest(given, self._key):
            await _reply(send, 401, f"missing or wrong {self._header.decode()} header")
            return
        await self.app(scope, receive, send)
