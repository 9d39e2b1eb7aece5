"""ASGI guards in front of the service: bounded metric labels, a request-size limit, optional API-key
authentication, the client's deadline, one shape for the JSON APIs' client errors and a `/readyz`
that says why.

All answer in JSON with a 4xx before the body is parsed, and none logs the key or the body.
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Callable, Collection
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.online.deadline import (
    RAW_HEADER,
    BadDeadlineError,
    expired_message,
    parse_deadline,
    passed,
)

OPEN_PATHS = frozenset(
    {"/", "/healthz", "/livez", "/readyz", "/metrics", "/docs", "/docs.json", "/schema.json"}
)
API_PATHS = ("/recommend", "/score", "/feedback", "/events")  # the JSON APIs (and deadline's)
UNKNOWN_PATH = "/_unknown"  # what every path the service does not have is counted as
ARRIVED = "nextbest.arrived"  # scope key: time.monotonic() when the request reached the service
UNAVAILABLE = "nextbest.unavailable"  # scope key: why the service answers this request 503 or 408
DEADLINE = "nextbest.deadline"  # scope key: the client's deadline, epoch seconds (absent: none)
EXPLAINED = (408, 503)  # the answers whose message the service puts in the scope (UNAVAILABLE)
RETRY_AFTER_SECONDS = b"1"


async def _reply(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """413 for a body over `max_bytes`, by its Content-Length or, when streamed (chunked), as it
    arrives: the body is read here, up to the limit, before the app sees any of it, then handed on
    whole. A client that goes away mid-upload ends the request quietly (no app call, no log line)."""

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
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _reply(send, 413, too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks)}]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)


def known_path(path: str, known: Collection[str], prefixes: tuple[str, ...]) -> bool:
    return path in known or path.startswith(prefixes)


#: paths with a variable part, counted in the metrics under their template (one series, not one
#: per customer); the real path travels in the scope and ArrivalMiddleware puts it back
TEMPLATES = ((re.compile(r"/customers/[^/]+/journey"), "/customers/{customer_id}/journey"),)
REAL_PATH = "nextbest.real_path"


def templated(scope: Scope) -> Scope:
    """The scope with a templated path for the metrics, the real one kept under REAL_PATH."""
    for pattern, template in TEMPLATES:
        if pattern.fullmatch(scope["path"]):
            real = (scope["path"], scope.get("raw_path"))
            return dict(scope, path=template, raw_path=template.encode(), **{REAL_PATH: real})
    return scope


def bound_metric_labels(known: Collection[str], prefixes: tuple[str, ...]) -> None:
    """Make BentoML's per-path traffic metrics count every path the service does not have as
    `UNKNOWN_PATH` (and route it there: a 404 as before), so a scanner's distinct URLs add no
    series to /metrics (~20 each otherwise). BentoML puts that middleware outside any the
    service adds, so its call is wrapped here; a BentoML without it is left alone."""
    try:
        from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
    except ImportError:  # pragma: no cover - another BentoML layout: the metrics test says so
        return
    original = RunnerTrafficMetricsMiddleware.__call__
    if getattr(original, "bounds_labels", False):
        return
    known = frozenset(known)

    async def bounded(self: Any, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = templated(scope)
        if scope["type"] == "http" and not known_path(scope["path"], known, prefixes):
            scope = dict(scope, path=UNKNOWN_PATH, raw_path=UNKNOWN_PATH.encode())
        await original(self, scope, receive, send)

    bounded.bounds_labels = True  # type: ignore[attr-defined]
    RunnerTrafficMetricsMiddleware.__call__ = bounded  # type: ignore[method-assign]


class ArrivalMiddleware:
    """Stamps each request's arrival time (`ARRIVED`): the decision's deadline is measured from it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[ARRIVED] = time.monotonic()
            if (
                REAL_PATH in scope
            ):  # templated for the metrics (bound_metric_labels): route the real
                path, raw = scope.pop(REAL_PATH)
                scope = dict(scope, path=path, raw_path=raw)
        await self.app(scope, receive, send)


class DeadlineMiddleware:
    """For the APIs `paths`: the client's deadline (serving.online.deadline) put in the scope
    (`DEADLINE`) for the service's later checks, a 400 naming the header when it is malformed, and
    a 408 when it has passed already (the request waited in the backlog while the workers were
    busy or restarting): nobody waits for that answer, so nothing is done, not even the body read.
    `on_expired(path)` counts those."""

    def __init__(
        self, app: ASGIApp, paths: Collection[str], on_expired: Callable[[str], None]
    ) -> None:
        self.app, self.paths, self.on_expired = app, frozenset(paths), on_expired

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        try:
            deadline = parse_deadline([v for k, v in scope["headers"] if k.lower() == RAW_HEADER])
        except BadDeadlineError as exc:
            await _reply(send, 400, str(exc))
            return
        if deadline is not None:
            now = time.time()
            if passed(deadline, now):
                self.on_expired(scope["path"])
                await _reply(send, 408, expired_message(deadline, now))
                return
            scope[DEADLINE] = deadline
        await self.app(scope, receive, send)


class ReadyDetailMiddleware:
    """`/readyz` keeps BentoML's status (200 or 503 from `__is_ready__`) and answers a JSON body
    with `detail()`: the loaded versions and the reload loop's last error and failure count."""

    def __init__(self, app: ASGIApp, detail: Callable[[], dict[str, Any]]) -> None:
        self.app, self.detail = app, detail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/readyz":
            await self.app(scope, receive, send)
            return
        status = 500

        async def keep_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])

        await self.app(scope, receive, keep_status)
        body = json.dumps({"ready": status == 200} | self.detail(), default=str).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class ApiKeyMiddleware:
    """401 unless the request carries the configured key in `header` (health, metrics and the page
    itself stay open; the page sends the key the agent types with its API calls)."""

    open_prefixes = ("/static_content/",)  # the Swagger UI page's (/docs) assets

    def __init__(self, app: ASGIApp, key: str, header: str) -> None:
        self.app = app
        self._key = key.encode()
        self._header = header.lower().encode()

    def __repr__(self) -> str:  # never show the key
        return f"ApiKeyMiddleware(header={self._header.decode()!r})"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"] if scope["type"] == "http" else ""
        if scope["type"] != "http" or path in OPEN_PATHS or path.startswith(self.open_prefixes):
            await self.app(scope, receive, send)
            return
        given: Any = dict(scope["headers"]).get(self._header, b"")
        if not hmac.compare_digest(given, self._key):
            await _reply(send, 401, f"missing or wrong {self._header.decode()} header")
            return
        await self.app(scope, receive, send)


# Bodies BentoML would parse as a form (or as its internal pickle/arrow formats) instead of JSON; a
# malformed multipart body made it answer 500.
NOT_JSON = ("multipart/", "application/x-www-form-urlencoded", "application/vnd.bentoml")


def one_error_object(payload: Any) -> Any:
    """A client error's JSON as one object `{"error": message, ...}`: BentoML wraps the errors the
    service raises in a one-item list, and says only "1 validation error for RecommendRequest" of
    a pydantic error, so the message is rebuilt from its details ("max_actions: Input should be
    greater than 0")."""
    if isinstance(payload, list) and len(payload) == 1 and isinstance(payload[0], dict):
        payload = payload[0]
    if not isinstance(payload, dict):
        return {"error": str(payload)}
    detail = payload.get("detail")
    if isinstance(detail, list) and detail and all(isinstance(d, dict) for d in detail):
        where = (".".join(str(p) for p in d.get("loc", ()) if p != "body") for d in detail)
        parts = [
            f"{w}: {d.get('msg', '')}" if w else str(d.get("msg", ""))
            for w, d in zip(where, detail, strict=True)
        ]
        payload = payload | {"error": "; ".join(parts)}
    return payload


class JsonApiMiddleware:
    """For the JSON API `paths`: 415 for form bodies, every 4xx answer as one JSON object
    `{"error": ...}` whatever part of the stack produced it, and a 503 or 408 the service explained
    (its reason in the scope: BentoML hides every 5xx message and prefixes 4xx ones) as
    `{"error": reason}`, the 503 with Retry-After."""

    def __init__(self, app: ASGIApp, paths: Collection[str]) -> None:
        self.app, self.paths = app, frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
        media = content_type.split(";")[0].strip().lower()
        if media.startswith(NOT_JSON):
            await _reply(
                send, 415, f"send the body as JSON (Content-Type: application/json), not {media}"
            )
            return
        held: Message | None = None
        body = b""

        async def reshaping(message: Message) -> None:
            nonlocal held, body
            if message["type"] == "http.response.start" and (
                400 <= message["status"] < 500
                or (message["status"] == 503 and UNAVAILABLE in scope)
            ):
                held = message  # sent once the whole body is known, with its new length
                return
            if held is None or message["type"] != "http.response.body":
                await send(message)
                return
            body += message.get("body", b"")
            if message.get("more_body", False):
                return
            headers = [(k, v) for k, v in held["headers"] if k.lower() != b"content-length"]
            if held["status"] in EXPLAINED and UNAVAILABLE in scope:
                new = json.dumps({"error": str(scope[UNAVAILABLE])}).encode()
                if held["status"] == 503:
                    headers.append((b"retry-after", RETRY_AFTER_SECONDS))
            else:
                new = json.dumps(_reshaped(body)).encode()
            headers.append((b"content-length", str(len(new)).encode()))
            await send({**held, "headers": headers})
            await send({"type": "http.response.body", "body": new})

        await self.app(scope, receive, reshaping)


def _reshaped(body: bytes) -> dict[str, Any]:
    try:
        return dict(one_error_object(json.loads(body)))
    except ValueError:
        return {"error": body.decode("utf-8", errors="replace")}
