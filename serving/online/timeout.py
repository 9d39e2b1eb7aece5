"""The request timeout (the service's `traffic.timeout`: a 504 when the answer has not started in
time), with its timer cancelled as soon as the answer starts.

BentoML's own TimeoutMiddleware (bentoml 1.4) schedules one timer per request and never cancels
it, so every request's timer, its future and the context it copied stay alive for the whole
timeout: a few hundred requests a second leave thousands of them in each worker. The garbage
collector's young collections walk every one still alive, and they pile up into its older
generations, whose collections then stall the worker for a whole collection of them.
`use_prompt_timeout` puts `PromptTimeout` in its place: the same answer on a timeout, and
nothing of a request is kept once it has started answering.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BENTOML_TIMEOUT = traffic.TimeoutMiddleware  # what use_prompt_timeout replaces


class PromptTimeout:
    """ASGI middleware: 504 (JSON) when `app` has not started its answer `timeout` seconds after
    the request came; the app is then cancelled. Its timer is cancelled when the answer starts,
    or when the app ends without answering."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self.app = app
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        started: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(self.timeout, _expire, started)

        async def answer(message: Message) -> None:
            _start(started)
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, answer))
        task.add_done_callback(lambda _: _start(started))  # ended without answering: no wait
        try:
            await started
        except TimeoutError:
            if task.cancel():
                message = f"Not able to process the request in {self.timeout} seconds"
                await JSONResponse({"error": message}, status_code=504)(scope, receive, send)
            return
        finally:
            timer.cancel()
        await task


def _start(started: asyncio.Future[None]) -> None:
    if not started.done():
        started.set_result(None)


def _expire(started: asyncio.Future[Any]) -> None:
    if not started.done():
        started.set_exception(TimeoutError())


def use_prompt_timeout() -> None:
    """Make the app BentoML builds for a service use PromptTimeout for its `traffic.timeout`
    (BentoML looks its timeout middleware up in this module when it builds the app)."""
    traffic.TimeoutMiddleware = PromptTimeout  # type: ignore[misc,assignment]
