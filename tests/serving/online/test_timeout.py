"""The request timeout: a 504 when the answer does not start in time, and no request's timer
left in the event loop once its answer has started."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from bentoml._internal.server.http import traffic

from serving.online.timeout import BENTOML_TIMEOUT, PromptTimeout

SCOPE = {"type": "http", "method": "POST", "path": "/recommend", "headers": []}


def answering():
    """An ASGI app that answers 200 at once."""

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def serve(middleware, scope=SCOPE) -> tuple[list[dict], int]:
    """The messages sent for one request, and the loop's timers still live after it."""
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}"}

    async def send(message: dict) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    await asyncio.sleep(0)  # a cancelled app's own timers go on its next step
    loop = asyncio.get_running_loop()
    live = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
    return sent, len(live)


def test_an_answer_started_in_time_passes_and_leaves_no_timer() -> None:
    sent, live = asyncio.run(serve(PromptTimeout(answering(), timeout=10)))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body"]
    assert sent[0]["status"] == 200
    assert live == 0


def test_bentomls_own_timeout_keeps_each_requests_timer() -> None:
    """Why PromptTimeout exists: BentoML's timer outlives the request (if this starts failing, a
    BentoML upgrade fixed it and serving.online.timeout can go)."""
    _, live = asyncio.run(serve(BENTOML_TIMEOUT(answering(), timeout=10)))
    assert live == 1


def test_an_answer_not_started_in_time_is_a_504_and_the_app_is_cancelled() -> None:
    cancelled = []

    async def slow(scope, receive, send) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    started = time.perf_counter()
    sent, live = asyncio.run(serve(PromptTimeout(slow, timeout=0.2)))
    assert time.perf_counter() - started < 2
    assert sent[0]["status"] == 504
    assert "0.2 seconds" in json.loads(sent[1]["body"])["error"]
    assert cancelled == [True]
    assert live == 0


def test_an_app_that_fails_before_answering_fails_at_once() -> None:
    async def failing(scope, receive, send) -> None:
        raise RuntimeError("broken")

    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="broken"):
        asyncio.run(serve(PromptTimeout(failing, timeout=5)))
    assert time.perf_counter() - started < 1  # not after the timeout


def test_other_scopes_pass_through_without_a_timer() -> None:
    seen = []

    async def lifespan(scope, receive, send) -> None:
        seen.append(scope["type"])

    _, live = asyncio.run(serve(PromptTimeout(lifespan, timeout=10), {"type": "lifespan"}))
    assert seen == ["lifespan"] and live == 0


def test_the_service_builds_its_app_with_it() -> None:
    import serving.online.service  # noqa: F401 (installs it, at import)

    assert traffic.TimeoutMiddleware is PromptTimeout
