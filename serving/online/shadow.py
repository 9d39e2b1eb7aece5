"""Shadow decisions off the answer's path: the arm not shown decides the same request on one
background thread per worker and its decision is logged there, after the answer has left.

Nothing waits for it: the shown answer costs what it costs without shadow mode. The thread gets the
request's features, contact-policy mask and time, so it decides exactly what it would have decided
inline; LightGBM's calls release the GIL, so the work mostly runs on the other core. The queue is
bounded: when the thread falls behind (a saturated worker), shadow decisions are dropped and
counted, never queued without end. On shutdown the queued ones are logged before the log closes.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime

import bentoml
import numpy as np

from serving.history.log import DecisionLog, DecisionRecord
from serving.online.decision import Allowed, Decision, DecisionRequest
from serving.online.runtime import Arm
from serving.online.store import FeatureRow

CAPACITY = 256  # shadow decisions waiting at most; more are dropped
logger = logging.getLogger("nextbest.serving")

SHADOW = bentoml.metrics.Counter(
    name="nextbest_shadow_decisions",
    documentation="Decisions made in shadow (logged, not shown), by arm and first action",
    labelnames=["arm", "action_id"],
)
SHADOW_FAILURES = bentoml.metrics.Counter(
    name="nextbest_shadow_failures",
    documentation="Shadow decisions not logged, by reason: failed (an error deciding or logging) "
    "or dropped (the shadow thread was behind); the shown answers are unaffected",
    labelnames=["reason"],
)


@dataclass(frozen=True)
class ShadowTask:
    """What the shadow arm needs to decide a request as it would have inline."""

    arm: Arm
    row: FeatureRow | None
    ask: DecisionRequest
    now: datetime
    allowed: Allowed


#: how the service turns a shadow decision into its log record (decision id, task, decision)
RecordMaker = Callable[[str, ShadowTask, Decision], DecisionRecord]


class ShadowRunner:
    """One worker's shadow thread and its bounded queue."""

    def __init__(self, log: DecisionLog, record: RecordMaker) -> None:
        self.log = log
        self.record = record
        self._queue: queue.Queue[ShadowTask | None] = queue.Queue(maxsize=CAPACITY)
        self._rng = np.random.default_rng()  # its own: a Generator is not thread-safe
        self._thread = threading.Thread(target=self._run, name="nextbest-shadow", daemon=True)
        self._thread.start()

    def submit(self, task: ShadowTask) -> None:
        """Queue a shadow decision; drop it (counted) when the queue is full."""
        try:
            self._queue.put_nowait(task)
        except queue.Full:
            SHADOW_FAILURES.labels(reason="dropped").inc()

    def close(self, timeout: float = 5.0) -> None:
        """Log what is queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (task := self._queue.get()) is not None:
            try:
                allowed = task.allowed
                decision = task.arm.decider.decide(
                    task.row, task.ask, allowed.actions, self._rng, allowed.consent
                )
                record = self.record(uuid.uuid4().hex, task, decision)
                self.log.record(replace(record, shadow=True))
            except Exception as exc:  # a shadow failure never reaches a request
                SHADOW_FAILURES.labels(reason="failed").inc()
                logger.warning("event=shadow_failed arm=%s reason=%s", task.arm.name,
                               type(exc).__name__)  # fmt: skip
                continue
            SHADOW.labels(arm=task.arm.name, action_id=decision.chosen).inc()
