"""The BentoML service (docs/api.md): `bentoml serve serving.online.service:Nextbest`, or `nextbest serve`.

Thin on purpose: it loads the runtime (bundle + online store), opens the decision log, and turns
requests into calls of serving.online.decision / serving.online.reasons and log records. The hot path is numpy
and SQLite only (no pandas, no pyfunc); each worker runs LightGBM on one thread, freezes the
loaded objects out of the garbage collector and raises its gen-0 threshold, which keeps full
collections (pauses of 100+ ms under load) rare. The APIs are `async def` although their work is
synchronous: a decision is a few milliseconds of CPU with nothing to wait for, so it runs on the
worker's event loop directly instead of paying a hop to a thread pool (measured: c=8 throughput
+30%); one decision at a time per worker is what LightGBM's one thread allows anyway.

Routes: POST /recommend, /score, /feedback (BentoML APIs, OpenAPI at /docs.json); GET / (the agent
desktop page), /metadata (mounted FastAPI routes); /healthz, /livez, /readyz, /metrics (BentoML's
own; /readyz is false until a bundle is loaded through `__is_ready__`).
"""

from __future__ import annotations

import gc
import logging
import threading
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from importlib import resources
from typing import Any, cast

import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException, InvalidArgument, NotFound
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from pydantic import ValidationError

from serving.online import openapi
from serving.online.api_models import (
    ActionOut,
    FeedbackRequest,
    FeedbackResponse,
    Metadata,
    RecommendRequest,
    RecommendResponse,
    ScoreRequest,
    ScoreResponse,
    Scores,
)
from serving.online.bento_args import service_environ
from serving.online.cors import allow_cross_origin
from serving.online.decision import Decision, DecisionRequest, UnknownChannelError
from serving.online.decision_log import (
    DecisionLog,
    DecisionRecord,
    NotOfferedError,
    UnknownDecisionError,
)
from serving.online.http_guards import (
    ApiKeyMiddleware,
    BodyLimitMiddleware,
    JsonApiMiddleware,
    one_error_object,
)
from serving.online.runtime import Runtime, current_key, load_runtime
from serving.online.settings import ServingSettings
from training.errors import NextbestError
from training.policy.arbitration import UnknownActionError
from training.policy.contact import allowed_mask, lookback

GEN0_THRESHOLD = 50_000  # objects allocated between young collections (CPython's default: 700)
logger = logging.getLogger(
    "nextbest.serving"
)  # key=value lines: versions and reasons, no customer data
SETTINGS = ServingSettings.from_env(service_environ())  # a Bento's defaults under the env

DECISIONS = bentoml.metrics.Counter(
    name="nextbest_decisions",
    documentation="Decisions answered, by first action (control: none shown) and kind",
    labelnames=["action_id", "kind"],
)

desktop = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
desktop.include_router(openapi.pages)  # GET /docs: Swagger UI (BentoML serves /docs.json)
API_PATHS = ("/recommend", "/score", "/feedback")


class ClientErrorLogFilter(logging.Filter):
    """BentoML logs every rejected request as an ERROR with a traceback, and pydantic's message
    quotes the input (a customer id, say): a client error becomes one WARNING line with what was
    wrong and no input. Server errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            details = exc.errors(include_input=False, include_url=False, include_context=False)
            status, what = 400, one_error_object({"detail": details})["error"]
        elif isinstance(exc, BentoMLException) and exc.error_code < 500:
            status, what = int(exc.error_code), str(exc)
        else:
            return True
        where = (
            record.args if isinstance(record.args, tuple) and len(record.args) == 2 else ("?", "?")
        )
        record.msg, record.args = "rejected %s [%s] (%d): %s", (*where, status, what)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


# the logger of bentoml._internal.server.http_app.log_exception, which every API error goes through
logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientErrorLogFilter())


class NotReady(BentoMLException):
    error_code = HTTPStatus.SERVICE_UNAVAILABLE


@bentoml.service(
    name="nextbest",
    workers=SETTINGS.workers,
    threads=1,
    traffic={"timeout": 10},
    logging={"access": {"enabled": SETTINGS.access_log}},
    service_class=openapi.DocumentedService,  # its OpenAPI document: serving/online/openapi.py
)
@bentoml.asgi_app(desktop, path="/")
class Nextbest:
    """Real-time decisions for agent desktops; one instance per worker process."""

    def __init__(self) -> None:
        self.settings = SETTINGS
        self.log = DecisionLog(self.settings.decision_log, self.settings.log_synchronous)
        self.rng = np.random.default_rng()
        self.runtime: Runtime | None = None
        self._try_load()
        self._stop = threading.Event()
        if self.settings.reload_seconds > 0:
            threading.Thread(target=self._reload_loop, name="nextbest-reload", daemon=True).start()

    # -- loading and reloading ------------------------------------------------------------------

    def _try_load(self) -> None:
        """Load (or replace) the runtime; on failure keep serving what is loaded and say why."""
        try:
            runtime = load_runtime(self.settings)
        except NextbestError as exc:
            logger.warning("event=load_failed reason=%r", str(exc))
            return
        self.runtime = runtime  # one reference swap: requests see the old or the new, whole
        logger.info(
            "event=loaded model_version=%s store_as_of=%s store_customers=%d",
            runtime.version,
            runtime.store.info.as_of,
            runtime.store.info.customers,
        )
        gc.collect()
        gc.freeze()
        gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])

    def _reload_loop(self) -> None:
        while not self._stop.wait(self.settings.reload_seconds):
            try:
                key = current_key(self.settings)
            except (NextbestError, OSError) as exc:
                logger.warning("event=reload_check_failed reason=%r", str(exc))
                continue
            if self.runtime is None or key != self.runtime.key:
                self._try_load()

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._stop.set()
        self.log.close()

    def __is_ready__(self) -> bool:
        return self.runtime is not None

    def _runtime(self) -> Runtime:
        runtime = self.runtime
        if runtime is None:
            raise NotReady("no bundle loaded yet")
        return runtime

    # -- the API ----------------------------------------------------------------------------------

    @bentoml.api(route="/recommend")
    async def recommend(self, request: RecommendRequest, /) -> RecommendResponse:
        """Ranked actions for one customer on one channel; logged before the answer is sent."""
        runtime = self._runtime()
        decider = runtime.decider
        ask = DecisionRequest(
            request.customer_id, request.channel, request.max_actions, tuple(request.exclude)
        )
        try:
            decider.check(ask)
        except (UnknownChannelError, UnknownActionError) as exc:
            raise InvalidArgument(str(exc)) from None
        row = runtime.store.get(request.customer_id)
        now = datetime.now(UTC)
        contacts = self.log.contacts(request.customer_id, now - lookback(decider.catalog))
        allowed = allowed_mask(decider.catalog, contacts, now)
        decision = decider.decide(row, ask, allowed, self.rng)
        decision_id = uuid.uuid4().hex
        self.log.record(_record(decision_id, now, request, runtime.version, decision))
        DECISIONS.labels(action_id=decision.chosen, kind=_kind(decision)).inc()
        reasons = runtime.explainer.explain(
            decider.vector(row),
            decision.actions,
            decision.scores["churn_probability"],
            decision.cold_start,
        )
        return _response(decision_id, request.customer_id, runtime, decision, reasons)

    @bentoml.api(route="/score")
    async def score(self, request: ScoreRequest, /) -> ScoreResponse:
        """The three scores of one customer (not logged: no decision is made)."""
        runtime = self._runtime()
        row = runtime.store.get(request.customer_id)
        scores = runtime.decider.scores(row)
        return ScoreResponse(
            customer_id=request.customer_id,
            model_version=runtime.version,
            scores=Scores(**scores),
            cold_start=row is None,
        )

    @bentoml.api(route="/feedback")
    async def feedback(self, request: FeedbackRequest, /) -> FeedbackResponse:
        """Store what happened to a shown action; committed before the answer."""
        try:
            self.log.feedback(
                request.decision_id, request.action_id, request.outcome, datetime.now(UTC)
            )
        except UnknownDecisionError as exc:
            raise NotFound(str(exc)) from None
        except NotOfferedError as exc:
            raise InvalidArgument(str(exc)) from None
        return FeedbackResponse(decision_id=request.decision_id, stored=True)

    # -- pages --------------------------------------------------------------------------------

    @desktop.get("/", response_class=HTMLResponse, include_in_schema=False)
    def desktop_page(self) -> HTMLResponse:
        """The agent desktop: one page, it calls the JSON API itself."""
        page = resources.files("serving.online").joinpath("static/desktop.html").read_text("utf-8")
        return HTMLResponse(page)

    @desktop.get("/metadata")
    def metadata(self) -> Metadata:
        """Bundle version, training date, metrics, catalog and store versions."""
        runtime = self._runtime()
        bundle, info = runtime.decider.bundle, runtime.store.info
        return Metadata(
            model_version=runtime.version,
            trained_at=bundle.metadata.trained_at.isoformat(),
            training_as_of=[d.isoformat() for d in bundle.metadata.as_of],
            metrics=bundle.metadata.metrics,
            feature_version=bundle.metadata.feature_version,
            catalog_version=bundle.metadata.catalog_version,
            actions=list(runtime.decider.action_ids),
            channels=sorted(runtime.decider.channels),
            currency=bundle.config.objective.currency,
            store_as_of=info.as_of.isoformat(),
            store_customers=info.customers,
            control_share=bundle.config.decisioning.control_share,
            exploration=bundle.config.decisioning.exploration,
        )


SERVICE = cast("bentoml.Service[Any]", Nextbest)  # what the decorators made of the class
SERVICE.add_asgi_middleware(JsonApiMiddleware, paths=API_PATHS)
SERVICE.add_asgi_middleware(BodyLimitMiddleware, max_bytes=SETTINGS.max_request_bytes)
if SETTINGS.api_key is not None:
    SERVICE.add_asgi_middleware(
        ApiKeyMiddleware, key=SETTINGS.api_key.get_secret_value(), header=SETTINGS.api_key_header
    )
allow_cross_origin(SERVICE, SETTINGS)  # NEXTBEST_CORS_ORIGINS; outermost of all when set


def _kind(decision: Decision) -> str:
    if decision.control_group:
        return "control_group"
    if decision.cold_start:
        return "cold_start"
    return "explored" if decision.explored else "greedy"


def _record(
    decision_id: str, now: datetime, request: RecommendRequest, version: str, decision: Decision
) -> DecisionRecord:
    return DecisionRecord(
        decision_id=decision_id,
        ts=now,
        customer_id=request.customer_id,
        channel=request.channel,
        model_version=version,
        action_id=decision.chosen,
        propensity=decision.propensity,
        control_group=decision.control_group,
        explored=decision.explored,
        cold_start=decision.cold_start,
        actions=tuple(a.action_id for a in decision.actions),
        context=dict(request.context),
    )


def _response(
    decision_id: str,
    customer_id: str,
    runtime: Runtime,
    decision: Decision,
    reasons: dict[str, list[str]],
) -> RecommendResponse:
    catalog = runtime.decider.catalog
    actions = []
    for ranked in decision.actions:
        action = catalog.actions[ranked.index]
        actions.append(
            ActionOut(
                action_id=action.id,
                name=action.name,
                script=action.script,
                expected_value=ranked.expected_value,
                cost=action.cost,
                roi=ranked.roi if np.isfinite(ranked.roi) else None,
                uplift=ranked.uplift,
                reasons=reasons.get(action.id, []),
            )
        )
    return RecommendResponse(
        decision_id=decision_id,
        customer_id=customer_id,
        model_version=runtime.version,
        scores=Scores(**decision.scores),
        actions=actions,
        cold_start=decision.cold_start,
        control_group=decision.control_group,
        explored=decision.explored,
        propensity=decision.propensity,
        currency=runtime.decider.bundle.config.objective.currency,
    )
