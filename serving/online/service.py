"""The BentoML service (docs/api.md): `bentoml serve serving.online.service:Nextbest`, or `nextbest serve`.

Thin on purpose: it loads the runtime (bundle + online store), opens the decision log, and turns
requests into calls of serving.online.decision / serving.online.reasons and log records. The hot
path is numpy, SQLite and the contact history's database (serving.history; no pandas, no pyfunc);
each worker runs LightGBM on one thread, freezes the loaded objects out of the garbage collector
and raises its gen-0 threshold, which keeps full collections (pauses of 100+ ms under load) rare. A reload unfreezes, closes the replaced runtime's
store after a grace period and collects it, so nothing of it stays pinned. The APIs are `async def` although their work is
synchronous: a decision is a few milliseconds of CPU with nothing to wait for, so it runs on the
worker's event loop directly instead of paying a hop to a thread pool (measured: c=8 throughput
+30%); one decision at a time per worker is what LightGBM's one thread allows anyway.

Routes: POST /recommend, /score, /feedback (BentoML APIs, OpenAPI at /docs.json); GET / (the agent
desktop page), /metadata (mounted FastAPI routes); /healthz, /livez, /readyz, /metrics (BentoML's
own; /readyz is false until a bundle is loaded through `__is_ready__`, and its JSON body says what
is loaded and the reload loop's last error). Operations: README, "Operations".
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from importlib import resources
from typing import Any, TypeVar, cast

import bentoml
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from bentoml.exceptions import BentoMLException, InvalidArgument, NotFound
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from numpy.typing import NDArray
from pydantic import ValidationError

from serving.history.log import (
    ContactConflictError,
    DecisionLog,
    DecisionRecord,
    HistoryRows,
    HistoryUnavailableError,
    NotOfferedError,
    UnknownDecisionError,
)
from serving.online import live_rows, openapi
from serving.online.api_models import (
    ActionOut,
    EventsRequest,
    EventsResponse,
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
from serving.online.deadline import expired_message, passed
from serving.online.decision import Allowed, Decision, DecisionRequest, UnknownChannelError
from serving.online.events import Event, EventStore, EventStoreUnavailableError
from serving.online.http_guards import (
    API_PATHS,
    ARRIVED,
    DEADLINE,
    OPEN_PATHS,
    TEMPLATES,
    ApiKeyMiddleware,
    ArrivalMiddleware,
    BodyLimitMiddleware,
    DeadlineMiddleware,
    JsonApiMiddleware,
    ReadyDetailMiddleware,
    bound_metric_labels,
)
from serving.online.http_guards import (
    UNAVAILABLE as UNAVAILABLE_REASON,
)
from serving.online.journey import DEFAULT_LIMIT as DEFAULT_JOURNEY
from serving.online.journey import MAX_LIMIT as MAX_JOURNEY
from serving.online.journey import journey as journey_of
from serving.online.live_features import not_in_journey
from serving.online.log_safety import escape_controls, install
from serving.online.outbox import (
    MAX_LIMIT,
    BadCursorError,
    append,
    claim,
    ensure_schema,
    parse_cursor,
)
from serving.online.outbox import page as outbox_page
from serving.online.runtime import (
    Arm,
    Runtime,
    current_key,
    load_runtime,
    store_identity,
)
from serving.online.score_watch import ScoreWatch
from serving.online.settings import ServingSettings
from serving.online.shadow import ShadowRunner, ShadowTask
from serving.online.store import FeatureRow, StoreChangedError
from serving.online.timeout import use_prompt_timeout
from serving.online.triggers import event_inputs, fired, has_triggers, may_fire_each
from training.config import CONTROL
from training.policy.arbitration import UnknownActionError
from training.policy.contact import (
    OPT_IN,
    OPT_OUT,
    ConsentEvents,
    acceptance_allowed,
    consent_mask,
    consent_names,
    history_of_rows,
    on_any_channel,
    policy_mask,
    suppression_reason,
)
from training.policy.control import hash_point

GEN0_THRESHOLD = 50_000  # objects allocated between young collections (CPython's default: 700)
MAX_ID_CHARS = 128
PENDING_GRACE = timedelta(seconds=10)  # a pending event this old lost its request: evaluate it
MAX_TRIGGERED = 3  # actions a triggered decision shows at most
CONSENT_TYPES = (OPT_IN, OPT_OUT)
CONSENT_EVENT_COLUMNS = ("customer_id", "ts", "channel", "event_type")
RETIRE_SECONDS = (
    2.0  # a replaced runtime is closed this long after the swap (requests finish first)
)
logger = logging.getLogger(
    "nextbest.serving"
)  # key=value lines: versions and reasons, no customer data
install()  # no log line a request can forge (serving.online.log_safety)
use_prompt_timeout()  # no request's timer outlives its answer (serving.online.timeout)
SETTINGS = ServingSettings.from_env(service_environ())  # a Bento's defaults under the env
# every URL, when tracing is off: OpenTelemetry's ASGI middleware makes a span of each request and
# of each of its messages even when none is sampled (BentoML's default sample rate is 0)
UNTRACED = [r"."]

DECISIONS = bentoml.metrics.Counter(
    name="nextbest_decisions",
    documentation="Decisions answered, by first action (control: none shown) and kind",
    labelnames=["action_id", "kind"],
)

RELOADS = bentoml.metrics.Counter(
    name="nextbest_reloads",
    documentation="Runtime loads by outcome: loaded, load_failed (bundle or store refused), "
    "check_failed (registry or store path unreadable)",
    labelnames=["outcome"],
)
DROPPED = bentoml.metrics.Counter(
    name="nextbest_decisions_dropped",
    documentation="Decisions made but not logged nor answered: client gone or deadline passed",
    labelnames=["reason"],
)
EXPIRED = bentoml.metrics.Counter(
    name="nextbest_requests_expired",
    documentation="Requests answered 408, not carried out, because the client's X-Request-Deadline "
    "had passed: on arrival (read by a worker too late), before the decision, before the write",
    labelnames=["endpoint", "stage"],
)
PRECOMPUTE_FAILURES = bentoml.metrics.Counter(
    name="nextbest_live_rows_not_shared",
    documentation="Ingested batches whose customers' live rows could not be computed or shared "
    "(the events are stored; the rows are computed on the customers' next requests)",
)
TRIGGER_FAILURES = bentoml.metrics.Counter(
    name="nextbest_trigger_failures",
    documentation="Ingested batches whose triggers could not be evaluated (the events are stored)",
)
ARMS = bentoml.metrics.Counter(
    name="nextbest_arm_decisions",
    documentation="Decisions shown, by the arm that made them (champion or challenger)",
    labelnames=["arm"],
)
LIVE_ROWS = bentoml.metrics.Counter(
    name="nextbest_live_rows",
    documentation="Features of customers with live events, by how: kept (the row of their last "
    "request, moved to now), shared (a row another worker computed for their latest event), "
    "precomputed (at ingestion, then shared) or computed (on a request or a trigger: nothing "
    "kept nor shared, e.g. past the kept row's span or the ingestion's precompute budget)",
    labelnames=["how"],
)
UNAVAILABLE = bentoml.metrics.Counter(
    name="nextbest_store_unavailable",
    documentation="Requests answered 503 because the online store was overwritten in place",
)
HISTORY_DOWN = bentoml.metrics.Counter(
    name="nextbest_history_unavailable",
    documentation="Requests answered 503 because the contact history could not be read or written",
)

desktop = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
desktop.include_router(openapi.pages)  # GET /docs: Swagger UI (BentoML serves /docs.json)
TEMPLATE_PATHS = tuple(template for _, template in TEMPLATES)
KNOWN_PATHS = (*API_PATHS, *OPEN_PATHS, "/metadata", "/outbox", "/docs", *TEMPLATE_PATHS)
KNOWN_PREFIXES = ("/static_content/",)
HEADER_PLACEHOLDER = "__API_KEY_HEADER__"


class ClientErrorLogFilter(logging.Filter):
    """BentoML logs every rejected request as an ERROR with a traceback, and its message quotes
    the input (a customer id, an unknown channel, a context key): a client error, and a 503 of
    ours, becomes one WARNING line with the field and the kind of error and none of the request's
    content. Server errors keep their traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ValidationError):
            details = exc.errors(include_input=False, include_url=False, include_context=False)
            status, what = 400, "; ".join(_field_error(d) for d in details)
        elif isinstance(exc, BentoMLException) and (exc.error_code < 500 or hasattr(exc, "reason")):
            status, what = int(exc.error_code), getattr(exc, "reason", type(exc).__name__)
        else:
            return True
        where = (
            record.args if isinstance(record.args, tuple) and len(record.args) == 2 else ("?", "?")
        )
        record.msg = "rejected %s [%s] (%d): %s"
        record.args = (*(escape_controls(str(w)) for w in where), status, escape_controls(what))
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


# the logger of bentoml._internal.server.http_app.log_exception, which every API error goes through
logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientErrorLogFilter())


def _field_error(detail: Any) -> str:
    """ "field: kind" of a pydantic error: the top-level field only (deeper parts of the location can
    be the request's own keys, e.g. of `context`) and the error type, never the input."""
    loc = [str(p) for p in detail.get("loc", ()) if p != "body"]
    return f"{loc[0] if loc else 'body'}: {detail.get('type', 'invalid')}"


class NotReady(BentoMLException):
    error_code = HTTPStatus.SERVICE_UNAVAILABLE
    reason = "no bundle loaded"


class Unavailable(BentoMLException):
    """503 with a reason safe to log (no request content)."""

    error_code = HTTPStatus.SERVICE_UNAVAILABLE

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class DeadlinePassed(BentoMLException):
    """408: the client's deadline (X-Request-Deadline) passed; nothing was decided nor stored."""

    error_code = HTTPStatus.REQUEST_TIMEOUT
    reason = "client deadline passed"


class Rejected(InvalidArgument):
    """400 whose log line names the kind of mistake, not the request's values."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class Conflict(BentoMLException):
    error_code = HTTPStatus.CONFLICT
    reason = "contact policy: already received inside its cool-down"


@dataclass
class ReloadStatus:
    """What /readyz says about the reload loop (one per worker process)."""

    loads: int = 0
    failures: int = 0
    last_error: str | None = None
    last_error_at: str | None = None
    loaded_at: str | None = None
    model_version: str | None = None
    store_inode: int | None = None
    challenger_version: str | None = None
    challenger_error: str | None = None
    history_error: str | None = None  # why the contact history cannot be opened (None: open)
    events_error: str | None = None  # why the event store cannot be opened (None: open)


STATUS = ReloadStatus()


def ready_detail() -> dict[str, Any]:
    return dict(vars(STATUS))


@bentoml.service(
    name="nextbest",
    workers=SETTINGS.workers,
    threads=1,
    traffic={"timeout": 10},
    logging={"access": {"enabled": SETTINGS.access_log}},
    tracing={} if SETTINGS.tracing else {"excluded_urls": UNTRACED},
    service_class=openapi.DocumentedService,  # its OpenAPI document: serving/online/openapi.py
)
@bentoml.asgi_app(desktop, path="/")
class Nextbest:
    """Real-time decisions for agent desktops; one instance per worker process."""

    def __init__(self) -> None:
        logger.setLevel(logging.INFO)  # loads and reloads are worth seeing (the root says WARNING)
        logger.disabled = False
        self.settings = SETTINGS
        self._log: DecisionLog | None = None
        self._events: EventStore | None = None
        self._shadow: ShadowRunner | None = None
        self._store_failures: dict[str, str] = {}  # store -> the reason last logged
        self._open_stores()
        self.rng = np.random.default_rng()
        self.runtime: Runtime | None = None
        self._stop = threading.Event()
        self._wake = threading.Event()  # a request saw the store change: check now
        self._last_failure: str | None = None
        self._retiring: list[tuple[float, Runtime]] = []  # (close after, replaced runtime)
        self._watch: dict[str, ScoreWatch] = {}  # served scores vs reference, per arm version
        self._try_load()
        self._sweep()  # triggers a killed worker left pending
        if self.settings.reload_seconds > 0:
            threading.Thread(target=self._reload_loop, name="nextbest-reload", daemon=True).start()

    # -- loading and reloading ------------------------------------------------------------------

    def _try_load(self) -> None:
        """Load (or replace) the runtime; on any failure keep serving what is loaded and say why,
        in one log line per new reason, in /readyz and in /metrics."""
        try:
            runtime: Runtime | None = load_runtime(self.settings, self.runtime)
            self._last_failure = None
            STATUS.last_error = None
        except Exception as exc:  # a bad artifact or store must never take the worker down
            self._failed("load_failed", exc)
            runtime = self._new_store_only()
        if runtime is None:
            return
        self._watch = {arm.version: self._watch.get(arm.version) or _score_watch(arm)
                       for arm in _arms_of(runtime)}  # fmt: skip
        old, self.runtime = self.runtime, runtime  # one swap: requests see old or new, whole
        STATUS.loads += 1
        STATUS.loaded_at = _now_iso()
        STATUS.model_version, STATUS.store_inode = runtime.version, runtime.key[1][0]
        challenger = runtime.challenger
        STATUS.challenger_version = challenger.version if challenger is not None else None
        STATUS.challenger_error = runtime.challenger_error
        RELOADS.labels(outcome="loaded").inc()
        logger.info(
            "event=%s model_version=%s store_as_of=%s store_customers=%d challenger=%s",
            "loaded" if old is None else "reloaded",
            runtime.version,
            runtime.store.info.as_of,
            runtime.store.info.customers,
            STATUS.challenger_version or ("-" if runtime.challenger_error is None else "refused"),
        )
        if runtime.challenger_error is not None:
            logger.warning("event=challenger_not_loaded reason=%r",
                           escape_controls(runtime.challenger_error)[:500])  # fmt: skip
        if old is not None:
            self._retiring.append((time.monotonic() + RETIRE_SECONDS, old))
            del old
        self._prune_live_rows(runtime)
        gc.collect()
        gc.freeze()
        gc.set_threshold(GEN0_THRESHOLD, *gc.get_threshold()[1:])

    def _prune_live_rows(self, runtime: Runtime) -> None:
        """Drop the shared live rows of earlier runtimes; a failure only leaves them there."""
        if self._events is None:
            return
        try:
            live_rows.prune(self._events, runtime.live_tag)
        except Exception as exc:
            logger.warning("event=live_rows_not_pruned reason=%s", type(exc).__name__)

    def _new_store_only(self) -> Runtime | None:
        """After a failed load: the current bundle on a store that changed meanwhile, so a bad
        champion does not also hold back a store swap (None: nothing to do, or that fails too)."""
        current = self.runtime
        try:
            if current is None or store_identity(self.settings.online_store) == current.key[1]:
                return None
            return load_runtime(self.settings, current, keep_bundle=True)
        except Exception as exc:
            self._failed("load_failed", exc)
            return None

    def _retire_due(self) -> None:
        """Close replaced runtimes once the requests that took them have finished, and let the
        garbage collector have them (frozen objects are never collected: unfreeze first)."""
        now = time.monotonic()
        due = [runtime for when, runtime in self._retiring if when <= now]
        if not due:
            return
        self._retiring = [(when, r) for when, r in self._retiring if when > now]
        for runtime in due:
            runtime.close()
        del due, runtime
        gc.unfreeze()
        gc.collect()
        gc.freeze()

    def _failed(self, outcome: str, exc: BaseException) -> None:
        reason = escape_controls(f"{type(exc).__name__}: {exc}")[:500]
        STATUS.failures += 1
        STATUS.last_error, STATUS.last_error_at = reason, _now_iso()
        RELOADS.labels(outcome=outcome).inc()
        if reason != self._last_failure:  # one line per new reason, not one per poll
            serving = self.runtime.version if self.runtime is not None else "nothing"
            logger.warning("event=%s serving=%s reason=%r", outcome, serving, reason)
            self._last_failure = reason

    def _reload_loop(self) -> None:
        """Poll the registry and the store path; survives any error (reported, then retried)."""
        while not self._stop.is_set():
            self._wake.wait(self.settings.reload_seconds)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                self._check()
                self._retire_due()
                self._sweep()
            except Exception as exc:
                self._failed("load_failed", exc)
            self._stop.wait(min(self.settings.reload_seconds, 0.5))  # woken often: not a busy loop

    # -- the contact history and the event store -----------------------------------------------

    def _open_stores(self) -> None:
        """Open the contact history and the event store when they are not open: a file that is
        not a database or a PostgreSQL that is down keeps the worker up and not ready (no crash
        loop), says why in one log line and in /readyz, and is tried again on every poll."""
        if self._log is None:
            try:
                self._log = DecisionLog(
                    self.settings.history_source(), self.settings.log_synchronous
                )
                self._shadow = ShadowRunner(self._log, _shadow_record)
                STATUS.history_error = None
            except Exception as exc:
                STATUS.history_error = self._store_failed("contact history", exc)
        if self._events is None:
            try:
                events = EventStore(self.settings.event_store, self.settings.log_synchronous)
                ensure_schema(events)
                live_rows.ensure_schema(events)
                self._events, STATUS.events_error = events, None
            except Exception as exc:
                STATUS.events_error = self._store_failed("event store", exc)

    def _store_failed(self, what: str, exc: BaseException) -> str:
        """Log why `what` cannot be opened, once per new reason; returns the reason."""
        reason = escape_controls(f"{type(exc).__name__}: {exc}")[:300]
        if self._store_failures.get(what) != reason:
            logger.warning("event=store_not_open store=%r reason=%r", what, reason)
            self._store_failures[what] = reason
        return reason

    # while a store cannot be opened, reaching it is a 503 that says why
    @property
    def log(self) -> DecisionLog:
        return _opened(self._log, "contact history", STATUS.history_error)

    @property
    def events(self) -> EventStore:
        return _opened(self._events, "event store", STATUS.events_error)

    @property
    def shadow(self) -> ShadowRunner:  # made with the contact history
        return _opened(self._shadow, "contact history", STATUS.history_error)

    def _check(self) -> None:
        self._open_stores()
        try:
            key = current_key(self.settings)
        except Exception as exc:
            self._failed("check_failed", exc)
            return
        if self.runtime is None or key != self.runtime.key:
            self._try_load()

    @bentoml.on_shutdown
    def _shutdown(self) -> None:
        self._stop.set()
        self._wake.set()
        for opened in (self._shadow, self._log, self._events):
            if opened is not None:
                opened.close()

    def __is_ready__(self) -> bool:
        return self.runtime is not None and self._log is not None and self._events is not None

    def _runtime(self) -> Runtime:
        runtime = self.runtime
        if runtime is None:
            raise NotReady("no bundle loaded yet")
        return runtime

    # -- the API ----------------------------------------------------------------------------------

    @bentoml.api(route="/recommend")
    async def recommend(
        self, request: RecommendRequest, /, ctx: bentoml.Context
    ) -> RecommendResponse:
        """Ranked actions for one customer on one channel; logged before the answer is sent, and
        neither logged nor answered when its client has gone or its deadline has passed."""
        runtime = self._runtime()
        decider = runtime.decider
        ask = DecisionRequest(
            request.customer_id,
            request.channel,
            request.max_actions,
            tuple(request.exclude),
            request.context,
        )
        try:
            decider.check(ask)
        except UnknownChannelError as exc:
            raise Rejected(str(exc), "unknown channel") from None
        except UnknownActionError as exc:
            raise Rejected(str(exc), "unknown action id in exclude") from None
        now = self.settings.clock()
        _in_time(ctx, "decision")  # after `now`: a logged decision's ts is before the deadline
        with _explained(ctx):
            row = self._row(runtime, request.customer_id, now)
        shown, hidden = self._arms(runtime, ask)
        with _explained(ctx):
            allowed = self._allowed(runtime, shown, row, ask, now)
            hidden_allowed = allowed
            if hidden is not None and not runtime.same_catalog:
                hidden_allowed = self._allowed(runtime, hidden, row, ask, now)
        decision, reasons, why = self._decide(shown, row, ask, now, allowed)
        decision_id = uuid.uuid4().hex
        response = _response(decision_id, request.customer_id, shown, decision, reasons, why)
        await self._still_wanted(ctx)  # last step before the log: nobody waits, nothing logged
        with _explained(ctx):  # not stored, not answered: the client retries
            _in_time(ctx, "write")  # no await from here to the commit
            self.log.record(
                _record(decision_id, now, request.customer_id, request.channel, request.context,
                        shown, decision)
            )  # fmt: skip
        if hidden is not None:  # decided and logged off the answer's path (serving.online.shadow)
            self.shadow.submit(ShadowTask(hidden, row, ask, now, hidden_allowed))
        DECISIONS.labels(action_id=decision.chosen, kind=_kind(decision)).inc()
        ARMS.labels(arm=shown.name).inc()
        watch = self._watch.get(shown.version)
        if watch is not None:
            watch.observe(decision.scores)
        return response

    def _arms(self, runtime: Runtime, ask: DecisionRequest) -> tuple[Arm, Arm | None]:
        """(the arm whose decision is shown, the arm deciding in shadow or None): the challenger
        shows for its share of customers (stable: a salted hash of the id), and in shadow mode
        the other arm decides too. A challenger that cannot take the request (its catalog lacks
        the channel or an excluded action) leaves it to the champion."""
        champion, challenger = runtime.champion, runtime.challenger
        if challenger is None:
            return champion, None
        try:
            challenger.decider.check(ask)
        except (UnknownChannelError, UnknownActionError):
            return champion, None
        point = hash_point(ask.customer_id, self.settings.challenger_salt)
        routed = point < self.settings.challenger_share
        shown, other = (challenger, champion) if routed else (champion, challenger)
        return shown, other if self.settings.shadow else None

    def _decide(
        self,
        arm: Arm,
        row: FeatureRow | None,
        ask: DecisionRequest,
        now: datetime,
        allowed: Allowed,
    ) -> tuple[Decision, dict[str, list[str]], str | None]:
        """The decision of `arm` for `ask` under its contact policy and consent as of `now`
        (`allowed`, from `_allowed`), with its reasons, and why nothing is shown when consent or
        a cap across actions is the cause: one path for /recommend and triggered decisions."""
        decider = arm.decider
        decision = decider.decide(row, ask, allowed.actions, self.rng, allowed.consent)
        reasons = arm.explainer.explain(
            decider.vector(row),
            decision.actions,
            decision.scores["churn_probability"],
            decision.cold_start,
            ask.rule_inputs(),
        )
        why = None
        if not decision.actions:
            why = suppression_reason(allowed.mask, 0, ask.channel, allowed.nowhere)
        return decision, reasons, why

    def _allowed(
        self,
        runtime: Runtime,
        arm: Arm,
        row: FeatureRow | None,
        ask: DecisionRequest,
        now: datetime,
    ) -> Allowed:
        """What `arm`'s contact policy allows this customer (`Allowed`): the same `policy_mask`
        batch scoring applies to a chunk, on this customer's contact history."""
        decider, customer = arm.decider, ask.customer_id
        rules = decider.rules
        channels = rules.evaluated(ask.channel)
        since = now - rules.lookback
        consent, names, nowhere = None, {}, False
        if rules.consent:
            history, posted = self.log.customer_policy_history(customer, since)
            every = tuple(dict.fromkeys([*channels, *rules.channels]))  # evaluated ones first
            attributes = {a: np.array([decider.attribute(row, a)]) for a in rules.consent.values()}
            found = self._consent_events(runtime, customer, posted)
            events = ConsentEvents.of_rows(found, [customer])
            given = consent_mask(rules, 1, every, attributes, events, now)
            assert given is not None
            consent = given[:, : len(channels)]
            nowhere = not given[0, [every.index(c) for c in rules.channels]].any()
            names = {n: bool(v[0]) for n, v in consent_names(rules, every, given).items()}
        else:
            history = self.log.contact_history(since, customers=[customer])
        mask = policy_mask(
            rules, history_of_rows(history, [customer], rules), 1, now, channels, consent
        )
        allowed, _ = on_any_channel(mask.allowed(), rules.offered(channels))
        return Allowed(np.asarray(allowed[0], dtype=bool), dict(names), mask, nowhere)

    def _consent_events(
        self, runtime: Runtime, customer: str, posted: list[tuple[str, datetime, str, str]]
    ) -> list[tuple[str, datetime, str, str]]:
        """The customer's opt_in / opt_out events (customer_id, ts, channel, event_type): from
        the data (the stored journey) and `posted` through /events to any replica (read from the
        shared history); this host's event store adds those posted before the history kept them."""
        found: list[tuple[str, datetime, str, str]] = []
        try:
            history = runtime.store.history(customer)
        except StoreChangedError:
            raise self._store_replaced() from None
        if history is not None:
            table = history.events.select(list(CONSENT_EVENT_COLUMNS))
            chosen = pc.is_in(table["event_type"], value_set=pa.array(CONSENT_TYPES))
            for e in table.filter(chosen).to_pylist():
                found.append((e["customer_id"], e["ts"], e["channel"], e["event_type"]))
        found.extend(posted)
        for e in self.events.for_customer(customer):
            if e.event_type in CONSENT_TYPES:
                found.append((e.customer_id, e.ts, e.channel, e.event_type))
        return found

    def _store_replaced(self) -> Unavailable:
        """A store overwritten in place under a request: a 503 for it, and a reload now."""
        UNAVAILABLE.inc()
        self._wake.set()
        return Unavailable(
            "the online store is being replaced; retry shortly", "store overwritten in place"
        )

    async def _still_wanted(self, ctx: bentoml.Context) -> None:
        """Refuse to log a decision whose client has disconnected or whose server-side deadline
        has passed (a request queued while workers restarted): an exposure nobody saw would bias
        the next training. Best effort: a disconnect can reach the worker after the decision, and
        a request's time in the backlog is not seen; the client's own deadline (`_in_time`,
        X-Request-Deadline) is exact."""
        request = ctx.request
        arrived = request.scope.get(ARRIVED)
        if (
            arrived is not None
            and time.monotonic() - arrived > self.settings.request_deadline_seconds
        ):
            DROPPED.labels(reason="deadline").inc()
            raise Unavailable("the request passed its deadline before it was decided", "deadline")
        await asyncio.sleep(0)  # one turn of the loop: a closed connection is noticed
        if await request.is_disconnected():
            DROPPED.labels(reason="client_gone").inc()
            raise Unavailable("the client disconnected before the decision", "client gone")

    def _row(
        self, runtime: Runtime, customer_id: str, now: datetime, computed: str = "computed"
    ) -> FeatureRow | None:
        """The customer's features: as of `now` from their journey and live events when they have
        ingested events (a row kept for their latest event, by this worker or shared by another
        (serving.online.live_rows), moved to `now`; else computed, counted as `computed`, from the
        journey this worker kept with the events stored since), else the stored row; a store
        overwritten in place is a 503 (and a reload now)."""
        try:
            row = runtime.store.get(customer_id)
            seq = self.events.latest_seq(customer_id) if row is not None else 0
            if row is None or not seq:
                runtime.live.forget(customer_id)  # events erased: nothing of theirs is kept
                return row
            kept = runtime.live.kept(customer_id, seq, now)  # no new event since: still exact
            if kept is not None:
                LIVE_ROWS.labels(how="kept").inc()
                return kept
            shared = self._shared_row(runtime, customer_id, seq, now)
            if shared is not None:
                LIVE_ROWS.labels(how="shared").inc()
                return shared
            journey = runtime.live.journey(customer_id)  # kept: only newer events are read
            history = journey.history if journey else runtime.store.history(customer_id)
            if history is None:  # a store written without journeys: the snapshot it holds
                return row
            new = self.events.after(customer_id, journey.seq if journey else 0)
            LIVE_ROWS.labels(how=computed).inc()
            every = lambda: self.events.after(customer_id, 0)  # noqa: E731 (when refused)
            return runtime.live.extended(customer_id, history, journey, new, now, every)
        except StoreChangedError:
            raise self._store_replaced() from None

    def _shared_row(
        self, runtime: Runtime, customer_id: str, seq: int, now: datetime
    ) -> FeatureRow | None:
        """The row a worker computed for the customer's latest event and shared, adopted (kept
        here from now on) and moved to `now`; None when there is none for this runtime."""
        decider = runtime.decider
        shared = live_rows.get(self.events, customer_id, seq, runtime.live_tag,
                               decider.n_features, len(decider.action_ids))  # fmt: skip
        if shared is None:
            return None
        runtime.live.adopt(customer_id, seq, shared)
        return runtime.live.kept(customer_id, seq, now)

    @bentoml.api(route="/score")
    async def score(self, request: ScoreRequest, /, ctx: bentoml.Context) -> ScoreResponse:
        """The three scores of one customer (not logged: no decision is made)."""
        runtime = self._runtime()
        with _explained(ctx):
            row = self._row(runtime, request.customer_id, self.settings.clock())
        scores = runtime.decider.scores(row)
        return ScoreResponse(
            customer_id=request.customer_id,
            model_version=runtime.version,
            scores=Scores(**scores),
            cold_start=row is None,
        )

    @bentoml.api(route="/feedback")
    async def feedback(self, request: FeedbackRequest, /, ctx: bentoml.Context) -> FeedbackResponse:
        """Store what happened to a shown action; committed before the answer. An acceptance the
        contact policy forbids (the action, or with it more than a cap of the decision's channel
        or across channels, received from another decision: accepted online or sent by a batch) is
        refused with 409, race-free across workers."""
        now = self.settings.clock()
        runtime = self.runtime
        allowed: Callable[[HistoryRows, str], bool] | None = None
        if runtime is not None and request.action_id in runtime.decider.action_ids:
            rules = runtime.decider.rules
            index = runtime.decider.action_ids.index(request.action_id)

            def policy_allows(others: HistoryRows, channel: str) -> bool:
                return acceptance_allowed(rules, others, index, channel, now)

            allowed = policy_allows
        try:
            with _explained(ctx):
                _in_time(ctx, "write")
                self.log.feedback(
                    request.decision_id, request.action_id, request.outcome, now, allowed
                )
        except UnknownDecisionError as exc:
            raise NotFound(str(exc)) from None
        except NotOfferedError as exc:
            raise Rejected(str(exc), "action not offered in the decision") from None
        except ContactConflictError as exc:
            raise Conflict(str(exc)) from None
        return FeedbackResponse(decision_id=request.decision_id, stored=True)

    @bentoml.api(route="/events")
    async def ingest(self, request: EventsRequest, /, ctx: bentoml.Context) -> EventsResponse:
        """Store a batch of live events, all or nothing, committed before the answer; an event
        whose event_id is stored already counts as a duplicate. Every row was validated (a bad
        one is a 400 naming its index and field) before anything is written. Consent events are
        stored in the shared contact history first, so every replica applies them at once."""
        batch = [
            Event(e.customer_id, e.timestamp, e.channel, e.event_type, e.value, e.text, e.event_id)
            for e in request.events
        ]
        runtime = self.runtime
        triggers = runtime is not None and has_triggers(runtime.decider.catalog)
        consents = [(e.customer_id, e.ts, e.channel, e.event_type)
                    for e in batch if e.event_type in CONSENT_TYPES]  # fmt: skip
        with _explained(ctx):
            _in_time(ctx, "write")  # nothing of the batch is stored after its client gave up
            if consents:  # first in the shared history: every replica and batch apply them
                self.log.record_consent(consents, datetime.now(UTC))
            done = self.events.ingest(batch, datetime.now(UTC), pending=triggers)
        if runtime is not None and done.stored:
            self._precompute_safely(runtime, done.stored)
        if runtime is not None and triggers and done.stored:
            self._fire_safely(runtime, done.stored)
        return EventsResponse(accepted=done.accepted, duplicates=done.duplicates)

    def _precompute_safely(self, runtime: Runtime, stored: list[tuple[int, Event]]) -> None:
        """Share the live rows of the batch's stored customers (`_precompute`); a failure leaves
        them to be computed on their first request and never fails the stored events' request."""
        try:
            self._precompute(runtime, stored, self.settings.clock())
        except Exception as exc:
            PRECOMPUTE_FAILURES.inc()
            logger.warning("event=live_rows_not_shared reason=%s", type(exc).__name__)

    def _precompute(self, runtime: Runtime, stored: list[tuple[int, Event]], now: datetime) -> None:
        """Compute the features and uplift of the batch's customers the store holds, in batch
        order until `live_precompute_ms` is spent, and share them with every worker
        (serving.online.live_rows): the first request after a complaint finds its row ready."""
        budget = self.settings.live_precompute_ms / 1000
        if budget <= 0:
            return
        started = time.perf_counter()
        customers = list(dict.fromkeys(event.customer_id for _, event in stored))
        for customer in runtime.store.known(customers):
            if time.perf_counter() - started >= budget:
                return
            row = self._row(runtime, customer, now, computed="precomputed")
            runtime.decider.model_outputs(row)  # the uplift, kept in the row's memo
            kept = runtime.live.shared(customer)
            if kept is not None:  # a row of an older event never replaces a newer one (put)
                live_rows.put(self.events, customer, kept[0], runtime.live_tag, kept[1])

    def _fire_safely(self, runtime: Runtime, stored: list[tuple[int, Event]]) -> None:
        """Evaluate triggers; a failure leaves the events pending (evaluated again later by
        `_sweep`) and never fails the stored events' request."""
        try:
            self._fire_triggers(runtime, stored, self.settings.clock())
        except Exception as exc:
            TRIGGER_FAILURES.inc()
            logger.warning("event=trigger_failed reason=%s", type(exc).__name__)

    def _sweep(self) -> None:
        """Evaluate the triggers of events stored pending whose request died before it could
        (a killed worker), once they are PENDING_GRACE old: at least once, event to outbox."""
        runtime = self.runtime
        if runtime is None or self._events is None or not has_triggers(runtime.decider.catalog):
            return
        wall = datetime.now(UTC)
        leased = self.events.lease_pending(wall - PENDING_GRACE, wall)
        if leased:
            self._fire_safely(runtime, leased)

    def _fire_triggers(
        self, runtime: Runtime, stored: list[tuple[int, Event]], now: datetime
    ) -> None:
        """For each customer of the batch, the first stored event that fires a trigger (on the
        customer's features and scores after the batch) makes one decision, unless a trigger
        fired for them within the cool-down."""
        decider = runtime.decider
        cooldown = timedelta(minutes=decider.decisioning.trigger_cooldown_minutes)
        by_customer: dict[str, list[tuple[int, Event]]] = {}
        for seq, event in stored:
            by_customer.setdefault(event.customer_id, []).append((seq, event))
        maybe = dict(zip((seq for seq, _ in stored),
                         may_fire_each(decider.catalog, [e for _, e in stored]), strict=True))  # fmt: skip
        quiet: list[int] = []  # events that fired nothing: settled together, in one commit
        for customer, events in by_customer.items():
            seqs = [seq for seq, _ in events]
            if not any(maybe[seq] for seq in seqs):
                quiet += seqs  # e.g. a visit, when only complaints trigger
                continue
            row = self._row(runtime, customer, now)
            scores, _ = decider.model_outputs(row, with_uplift=False)
            for seq, event in events:
                mask = fired(decider.catalog, decider.namespace(row, scores, event_inputs(event)))
                if not mask.any():
                    continue
                if claim(self.events, customer, seq, now, cooldown):
                    self._decide_triggered(runtime, row, seq, event, mask, now, seqs)
                break  # one trigger per customer and batch
            quiet += seqs  # nothing fired, cooling down, or settled with the outbox already
        self.events.settle(quiet)

    def _decide_triggered(
        self,
        runtime: Runtime,
        row: FeatureRow | None,
        seq: int,
        event: Event,
        mask: NDArray[np.bool_],
        now: datetime,
        settled: list[int],
    ) -> None:
        """The same decision as /recommend, among the actions the event fired (on the event's
        channel when the catalog knows it), logged with its propensity, then put in the outbox."""
        decider = runtime.decider
        channel = event.channel if event.channel in decider.channels else ""
        exclude = tuple(a for a, hit in zip(decider.action_ids, mask, strict=True) if not hit)
        context = {"trigger_event_type": event.event_type}
        ask = DecisionRequest(event.customer_id, channel, MAX_TRIGGERED, exclude, context)
        champion = runtime.champion  # triggered decisions are the champion's (docs/api.md)
        allowed = self._allowed(runtime, champion, row, ask, now)
        decision, reasons, why = self._decide(champion, row, ask, now, allowed)
        decision_id = uuid.uuid4().hex
        response = _response(decision_id, event.customer_id, champion, decision, reasons, why)
        trigger = dict(context) | {"trigger_event_id": event.event_id}
        self.log.record(
            _record(decision_id, now, event.customer_id, channel, trigger, champion, decision)
        )
        DECISIONS.labels(action_id=decision.chosen, kind=_kind(decision)).inc()
        fired_ids = [a for a, hit in zip(decider.action_ids, mask, strict=True) if hit]
        item = {
            "customer_id": event.customer_id,
            "event_id": event.event_id,
            "event_type": event.event_type,
            "event_ts": event.ts.isoformat(),
            "triggered_by": fired_ids,
            "decided_at": now.isoformat(),
            "decision": response.model_dump(mode="json"),
        }
        append(self.events, event.customer_id, seq, fired_ids, now, item, settled)

    # -- pages --------------------------------------------------------------------------------

    @desktop.get("/", response_class=HTMLResponse, include_in_schema=False)
    def desktop_page(self) -> HTMLResponse:
        """The agent desktop: one page, it calls the JSON API itself."""
        page = resources.files("serving.online").joinpath("static/desktop.html").read_text("utf-8")
        header = json.dumps(self.settings.api_key_header)  # a validated token, quoted for JS
        return HTMLResponse(page.replace(f'"{HEADER_PLACEHOLDER}"', header))

    @desktop.get("/outbox")
    def outbox(self, after: str | None = None, limit: str | None = None) -> JSONResponse:
        """Decisions fired by triggers after the cursor `after`, oldest first, at most `limit`
        (default 100, at most 1000); `cursor` is the one to ask from next (at-least-once)."""
        try:
            start = parse_cursor(after)
            count = _limit(limit)
        except BadCursorError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if self._events is None:
            return _events_not_open()
        try:
            page = outbox_page(self._events, start, count)
        except EventStoreUnavailableError:
            return _unavailable_page(EVENTS_DOWN_MESSAGE)
        return JSONResponse({"decisions": page.decisions, "cursor": page.cursor})

    @desktop.get("/customers/{customer_id}/journey")
    def journey(self, customer_id: str, limit: str | None = None) -> JSONResponse:
        """The customer's recent events, newest first: the stored journey and the live events."""
        runtime = self._runtime()
        if not 1 <= len(customer_id) <= MAX_ID_CHARS:
            return JSONResponse({"error": "customer_id: 1 to 128 characters"}, status_code=400)
        try:
            count = _limit(limit, DEFAULT_JOURNEY, MAX_JOURNEY)
        except BadCursorError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        now = self.settings.clock()
        try:
            known = runtime.store.get(customer_id) is not None
            history = runtime.store.history(customer_id) if known else None
        except StoreChangedError:
            return JSONResponse({"error": "the online store is being replaced"}, status_code=503)
        if self._events is None:
            return _events_not_open()
        try:
            live = self._events.for_customer(customer_id, limit=count)
        except EventStoreUnavailableError:
            return _unavailable_page(EVENTS_DOWN_MESSAGE)
        if history is not None:  # events exported into the data set and materialized: once
            live = not_in_journey(history, live)
        events = journey_of(history, live, now.astimezone(UTC).replace(tzinfo=None), count)
        body = {"customer_id": customer_id, "known": known, "as_of": now.isoformat()}
        return JSONResponse(body | {"events": events})

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


def _expired_on_arrival(path: str) -> None:
    """DeadlineMiddleware's count of requests whose deadline passed before a worker read them."""
    EXPIRED.labels(endpoint=path, stage="arrival").inc()


SERVICE = cast("bentoml.Service[Any]", Nextbest)  # what the decorators made of the class
bound_metric_labels(KNOWN_PATHS, KNOWN_PREFIXES)
SERVICE.add_asgi_middleware(ArrivalMiddleware)
SERVICE.add_asgi_middleware(ReadyDetailMiddleware, detail=ready_detail)
SERVICE.add_asgi_middleware(JsonApiMiddleware, paths=API_PATHS)
SERVICE.add_asgi_middleware(DeadlineMiddleware, paths=API_PATHS, on_expired=_expired_on_arrival)
SERVICE.add_asgi_middleware(BodyLimitMiddleware, max_bytes=SETTINGS.max_request_bytes)
if SETTINGS.api_key is not None:
    SERVICE.add_asgi_middleware(
        ApiKeyMiddleware, key=SETTINGS.api_key.get_secret_value(), header=SETTINGS.api_key_header
    )
allow_cross_origin(SERVICE, SETTINGS)  # NEXTBEST_CORS_ORIGINS; outermost of all when set


def _limit(text: str | None, default: int = 100, most: int = MAX_LIMIT) -> int:
    """A `limit` query parameter: 1..most, `default` when absent."""
    if text is None or text == "":
        return default
    if not text.isascii() or not text.isdigit() or not 1 <= int(text[:6]) <= most:
        raise BadCursorError(f"limit: must be an integer from 1 to {most}")
    return int(text)


T = TypeVar("T")
HISTORY_DOWN_MESSAGE = "the contact history cannot be reached; nothing was stored, retry shortly"
EVENTS_DOWN_MESSAGE = "the event store cannot be read or written; nothing was stored, retry shortly"


@contextmanager
def _explained(ctx: bentoml.Context) -> Iterator[None]:
    """A contact history that cannot be read or written is a 503 saying so (never a 500), and so
    is any other `Unavailable` of the block (a store not open, a store being replaced), with
    Retry-After (serving.online.http_guards): nothing was stored nor answered; retry."""
    try:
        yield
    except Unavailable as exc:
        ctx.request.scope[UNAVAILABLE_REASON] = str(exc)
        raise
    except EventStoreUnavailableError:
        ctx.request.scope[UNAVAILABLE_REASON] = EVENTS_DOWN_MESSAGE
        raise Unavailable(EVENTS_DOWN_MESSAGE, "event store unavailable") from None
    except HistoryUnavailableError:
        HISTORY_DOWN.inc()
        ctx.request.scope[UNAVAILABLE_REASON] = HISTORY_DOWN_MESSAGE
        raise Unavailable(HISTORY_DOWN_MESSAGE, "contact history unavailable") from None


def _in_time(ctx: bentoml.Context, stage: str) -> None:
    """A 408 saying so (nothing decided, nothing stored) once the client's deadline has passed,
    on the wall clock whatever NEXTBEST_NOW says: `stage` is where the request stopped."""
    scope = ctx.request.scope
    deadline, now = scope.get(DEADLINE), time.time()
    if deadline is None or not passed(deadline, now):
        return
    EXPIRED.labels(endpoint=scope["path"], stage=stage).inc()
    message = expired_message(deadline, now)
    scope[UNAVAILABLE_REASON] = message
    raise DeadlinePassed(message)


def _unavailable_page(message: str) -> JSONResponse:
    """The pages' 503 saying why (the API's: `_explained`)."""
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": "1"})


def _not_open_message(what: str, reason: str | None) -> str:
    return f"the {what} cannot be opened ({reason})"


def _opened(store: T | None, what: str, reason: str | None) -> T:
    """`store` when it is open, else a 503 naming it and why it is not."""
    if store is None:
        message = f"{_not_open_message(what, reason)}; nothing was stored, retry shortly"
        raise Unavailable(message, f"{what} not open")
    return store


def _events_not_open() -> JSONResponse:
    return _unavailable_page(
        f"{_not_open_message('event store', STATUS.events_error)}; retry shortly"
    )


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _kind(decision: Decision) -> str:
    if decision.control_group:
        return "control_group"
    if decision.cold_start:
        return "cold_start"
    return "explored" if decision.explored else "greedy"


def _record(
    decision_id: str,
    now: datetime,
    customer_id: str,
    channel: str,
    context: Mapping[str, object],
    arm: Arm,
    decision: Decision,
) -> DecisionRecord:
    """The decision log's row of a decision (asked for by /recommend or fired by a trigger),
    naming the arm and model version that made it."""
    return DecisionRecord(
        decision_id=decision_id,
        ts=now,
        customer_id=customer_id,
        channel=channel,
        model_version=arm.version,
        action_id=decision.chosen,
        propensity=decision.propensity,
        control_group=decision.control_group,
        explored=decision.explored,
        cold_start=decision.cold_start,
        actions=tuple(a.action_id for a in decision.actions),
        context=dict(context),
        arm=arm.name,
        greedy_action=decision.greedy[0] if decision.greedy else CONTROL,
    )


def _shadow_record(decision_id: str, task: ShadowTask, decision: Decision) -> DecisionRecord:
    """The log record of a shadow decision (flagged shadow by the runner)."""
    ask = task.ask
    return _record(decision_id, task.now, ask.customer_id, ask.channel, ask.context, task.arm,
                   decision)  # fmt: skip


def _arms_of(runtime: Runtime) -> list[Arm]:
    return [runtime.champion, *([runtime.challenger] if runtime.challenger is not None else [])]


def _score_watch(arm: Arm) -> ScoreWatch:
    bundle = arm.decider.bundle
    return ScoreWatch(bundle.reference, bundle.config.drift, arm.version)


def _response(
    decision_id: str,
    customer_id: str,
    arm: Arm,
    decision: Decision,
    reasons: dict[str, list[str]],
    why: str | None = None,
) -> RecommendResponse:
    catalog = arm.decider.catalog
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
        model_version=arm.version,
        scores=Scores(**decision.scores),
        actions=actions,
        cold_start=decision.cold_start,
        control_group=decision.control_group,
        explored=decision.explored,
        propensity=decision.propensity,
        currency=arm.decider.bundle.config.objective.currency,
        reason=why,
    )
