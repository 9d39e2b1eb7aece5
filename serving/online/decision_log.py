"""The decision log: every decision and every piece of feedback, durable in one SQLite file (WAL).

Each service worker opens its own connection; SQLite's WAL lets them write one at a time while
readers go on. A record is committed before its answer is sent (`record` returns only then), so
the log holds exactly one row per answered decision: the evidence the ROI report and the next
training read. With `synchronous=NORMAL` (the service's default) a committed decision survives a
crash of the service but not of the machine; FULL adds an fsync per commit (~4 ms here, more than
the whole decision) so it also survives a power loss (`ServingSettings.log_synchronous`).

`export_exposures` turns the log into the data contract's `exposures` table (docs/data.md):
one row per decision of a known customer, the first action shown (or `control`) with the
probability with which it was chosen.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, overload

import pandas as pd

from training.atomic import atomic_file
from training.errors import NextbestError
from training.policy.contact import Contact

ACCEPTED = "accepted"
DECLINED = "declined"
BUSY_TIMEOUT_MS = 10_000
Synchronous = Literal["FULL", "NORMAL"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id   TEXT PRIMARY KEY,
    ts            TEXT NOT NULL,
    customer_id   TEXT NOT NULL,
    channel       TEXT NOT NULL,
    model_version TEXT NOT NULL,
    action_id     TEXT NOT NULL,
    propensity    REAL NOT NULL,
    control_group INTEGER NOT NULL,
    explored      INTEGER NOT NULL,
    cold_start    INTEGER NOT NULL,
    actions       TEXT NOT NULL,
    context       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_customer ON decisions (customer_id, ts);
CREATE TABLE IF NOT EXISTS feedback (
    decision_id TEXT NOT NULL REFERENCES decisions (decision_id),
    customer_id TEXT NOT NULL,
    action_id   TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    ts          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_customer ON feedback (customer_id, outcome, ts);
"""


class UnknownDecisionError(NextbestError):
    """Feedback names a decision the log does not hold."""


class NotOfferedError(NextbestError):
    """Feedback names an action the decision did not show."""


class ContactConflictError(NextbestError):
    """An acceptance the contact policy forbids: the customer already received the action (from
    another decision) inside its cool-down or frequency limit."""


@dataclass(frozen=True)
class DecisionRecord:
    """One answered decision, as logged."""

    decision_id: str
    ts: datetime
    customer_id: str
    channel: str
    model_version: str
    action_id: str  # the first action shown, or "control"
    propensity: float
    control_group: bool
    explored: bool
    cold_start: bool
    actions: tuple[str, ...]  # every action shown, in order
    context: dict[str, object]


class DecisionLog:
    """One process's connection to the log; thread-safe (one writer at a time per process)."""

    def __init__(self, path: Path | str, synchronous: Synchronous = "NORMAL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
        )
        self._lock = threading.Lock()
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute(f"PRAGMA synchronous={synchronous}")
        self._con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        with self._lock:
            self._con.executescript(_SCHEMA)

    def record(self, record: DecisionRecord) -> None:
        """Insert and commit one decision (autocommit: one transaction per statement)."""
        row = asdict(record)
        row["ts"] = _iso(record.ts)
        row["actions"] = json.dumps(list(record.actions))
        row["context"] = json.dumps(record.context, sort_keys=True)
        with self._lock:
            self._con.execute(
                "INSERT INTO decisions VALUES (:decision_id, :ts, :customer_id, :channel, "
                ":model_version, :action_id, :propensity, :control_group, :explored, :cold_start, "
                ":actions, :context)",
                row,
            )

    def feedback(
        self,
        decision_id: str,
        action_id: str,
        outcome: str,
        ts: datetime,
        allowed: Callable[[list[Contact]], bool] | None = None,
    ) -> None:
        """Store feedback on an action a logged decision showed; committed before returning.

        An acceptance is checked by `allowed` against the customer's other contacts inside the
        same write transaction (BEGIN IMMEDIATE holds SQLite's write lock across processes), so of
        two concurrent acceptances of one action, the second sees the first and is refused."""
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                found = self._con.execute(
                    "SELECT customer_id, actions FROM decisions WHERE decision_id = ?",
                    (decision_id,),
                ).fetchone()
                if found is None:
                    raise UnknownDecisionError(f"unknown decision_id {decision_id!r}")
                if action_id not in json.loads(found[1]):
                    raise NotOfferedError(
                        f"action {action_id!r} was not offered in decision {decision_id}"
                    )
                if outcome == ACCEPTED and allowed is not None:
                    others = self._contacts(found[0], datetime.min.replace(tzinfo=UTC), decision_id)
                    if not allowed(others):
                        raise ContactConflictError(
                            f"action {action_id!r} was already received by this customer inside "
                            "its cool-down or frequency limit; acceptance not recorded"
                        )
                self._con.execute(
                    "INSERT INTO feedback VALUES (?, ?, ?, ?, ?)",
                    (decision_id, found[0], action_id, outcome, _iso(ts)),
                )
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def contacts(self, customer_id: str, since: datetime) -> list[Contact]:
        """Actions the customer accepted since `since` (the contact policy's history). Only the
        latest feedback on each shown action counts: a retried POST is one contact, and an
        acceptance corrected to a decline is none."""
        with self._lock:
            return self._contacts(customer_id, since, "")

    def declines(self, customer_id: str, since: datetime) -> list[Contact]:
        """Offers the customer declined since `since` (`suppress_after_declines`); as for
        contacts, only the latest feedback on each shown action counts."""
        with self._lock:
            return self._contacts(customer_id, since, "", DECLINED)

    def _contacts(
        self, customer_id: str, since: datetime, other_than: str, outcome: str = ACCEPTED
    ) -> list[Contact]:
        """Latest contacts with this outcome of decisions other than `other_than` (caller holds
        the lock)."""
        rows = self._con.execute(
            LATEST_ACCEPTED, (customer_id, other_than, outcome, _iso(since))
        ).fetchall()
        return [Contact(a, datetime.fromisoformat(ts)) for a, ts in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._con.execute("SELECT count(*) FROM decisions").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._con.close()


LATEST_ACCEPTED = """
    SELECT action_id, ts FROM (
        SELECT action_id, ts, outcome, row_number() OVER (
            PARTITION BY decision_id, action_id ORDER BY ts DESC, rowid DESC) AS k
        FROM feedback WHERE customer_id = ? AND decision_id != ?)
    WHERE k = 1 AND outcome = ? AND ts >= ?"""


def _iso(ts: datetime) -> str:
    """UTC ISO-8601 with microseconds: sorts as text in time order."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds")


def exposures_frame(log: Path, include_cold_start: bool = False) -> pd.DataFrame:
    """The contract's exposures (customer_id, ts, action_id, propensity) of the logged decisions.

    Cold-start decisions are left out unless asked for: their customers are not in the data set the
    log's decisions were made on, and the contract refuses exposures of unknown customers.
    """
    if not Path(log).is_file():
        raise NextbestError(f"{log}: no decision log")
    with sqlite3.connect(f"file:{Path(log).resolve()}?mode=ro", uri=True) as con:
        where = "" if include_cold_start else "WHERE cold_start = 0"
        frame = pd.read_sql_query(
            f"SELECT customer_id, ts, action_id, propensity FROM decisions {where} ORDER BY ts",  # noqa: S608
            con,
        )
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601").dt.tz_localize(None)
    return frame


def export_exposures(log: Path, out: Path, include_cold_start: bool = False) -> tuple[int, Path]:
    """Write `out/exposures.parquet` atomically; returns (rows, file)."""
    frame = exposures_frame(log, include_cold_start)
    target = Path(out) / "exposures.parquet"
    with atomic_file(target) as tmp:
        frame.to_parquet(tmp, index=False)
    return len(frame), target


LATEST_FEEDBACK = """
    SELECT customer_id, ts, action_id, outcome, decision_id FROM (
        SELECT f.*, row_number() OVER (
            PARTITION BY f.decision_id, f.action_id ORDER BY f.ts DESC, f.rowid DESC) AS k
        FROM feedback AS f JOIN decisions AS d USING (decision_id)
        WHERE d.cold_start = 0 OR ?)
    WHERE k = 1 ORDER BY ts"""


def feedback_frame(log: Path, include_cold_start: bool = False) -> pd.DataFrame:
    """What happened to shown actions (customer_id, ts, action_id, outcome, decision_id): the
    latest feedback on each, the offers accepted and declined per action that a next training can
    turn into features; cold starts left out unless asked for, as for exposures."""
    if not Path(log).is_file():
        raise NextbestError(f"{log}: no decision log")
    with sqlite3.connect(f"file:{Path(log).resolve()}?mode=ro", uri=True) as con:
        frame = pd.read_sql_query(LATEST_FEEDBACK, con, params=(int(include_cold_start),))
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601").dt.tz_localize(None)
    return frame


def export_feedback(log: Path, out: Path, include_cold_start: bool = False) -> tuple[int, Path]:
    """Write `out/feedback.parquet` atomically; returns (rows, file)."""
    frame = feedback_frame(log, include_cold_start)
    target = Path(out) / "feedback.parquet"
    with atomic_file(target) as tmp:
        frame.to_parquet(tmp, index=False)
    return len(frame), target


# --- the contact history in bulk (batch scoring and the contact policy) ---------------------------
# Two functions of plain SQL on the two tables above, kept apart so that they port to any store:
# the contacts of many customers in a time window, and the contacts of a batch recorded at once.

SENT = "sent"  # the feedback outcome of a batch send (`nextbest score --record-contacts`)

CONTACT_HISTORY = """
    SELECT f.customer_id, f.action_id, d.channel, f.ts, f.outcome FROM (
        SELECT decision_id, customer_id, action_id, outcome, ts, row_number() OVER (
            PARTITION BY decision_id, action_id, outcome = 'sent'
            ORDER BY ts DESC, rowid DESC) AS k
        FROM feedback WHERE ts >= ? AND {customers}) AS f
    JOIN decisions AS d USING (decision_id)
    WHERE f.k = 1"""


HistoryRows = list[tuple[str, str, str, str, str]]


@overload
def contact_history(
    log: Path | str | sqlite3.Connection,
    since: datetime,
    customers: list[str] | None = ...,
    id_range: tuple[str | None, str | None] | None = ...,
    rows: Literal[False] = ...,
) -> pd.DataFrame: ...


@overload
def contact_history(
    log: Path | str | sqlite3.Connection,
    since: datetime,
    customers: list[str] | None = ...,
    id_range: tuple[str | None, str | None] | None = ...,
    *,
    rows: Literal[True],
) -> HistoryRows: ...


def contact_history(
    log: Path | str | sqlite3.Connection,
    since: datetime,
    customers: list[str] | None = None,
    id_range: tuple[str | None, str | None] | None = None,
    rows: bool = False,
) -> pd.DataFrame | HistoryRows:
    """The contact history from `since` on (columns customer_id, action_id, channel, ts (UTC),
    outcome) of the given customers, or of low <= customer_id < high (`id_range`, None: open), or
    of everyone. One row per shown action: its latest feedback (`accepted`, `declined`, ...), as
    the service has always counted; a batch send (`sent`) is a row of its own, whatever feedback
    followed. The channel is the decision's. `rows`: the plain tuples (ts as ISO text) instead
    of a DataFrame, for the service's one customer (no pandas on its hot path)."""
    where, params = _customer_filter(customers, id_range)
    query = CONTACT_HISTORY.format(customers=where)  # noqa: S608 (placeholders only)
    if isinstance(log, sqlite3.Connection):
        found = log.execute(query, (_iso(since), *params)).fetchall()
    else:
        if not Path(log).is_file():
            raise NextbestError(f"{log}: no decision log")
        with closing(sqlite3.connect(f"file:{Path(log).resolve()}?mode=ro", uri=True)) as con:
            found = con.execute(query, (_iso(since), *params)).fetchall()
    if rows:
        return found
    frame = pd.DataFrame.from_records(
        found, columns=["customer_id", "action_id", "channel", "ts", "outcome"]
    )
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
    return frame


def _customer_filter(
    customers: list[str] | None, id_range: tuple[str | None, str | None] | None
) -> tuple[str, list[str]]:
    if customers is not None:
        return f"customer_id IN ({', '.join('?' * len(customers))})", list(customers)
    low, high = id_range or (None, None)
    conds: list[str] = ["1 = 1"]
    params: list[str] = []
    if low is not None:
        conds, params = [*conds, "customer_id >= ?"], [*params, low]
    if high is not None:
        conds, params = [*conds, "customer_id < ?"], [*params, high]
    return " AND ".join(conds), params


BATCH_COLUMNS = (
    "decision_id", "ts", "customer_id", "channel", "model_version", "action_id", "propensity",
    "control_group", "context",
)  # fmt: skip


def record_contacts(log: Path | str, batch: pd.DataFrame) -> int:
    """Record a batch's decisions (BATCH_COLUMNS; `action_id` "control" for the control group)
    in one transaction, all or nothing: each a decision row, and each sent action a `sent`
    feedback row, so the service, the next batch and `export-exposures` see them. Returns the
    rows recorded."""
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with closing(
        sqlite3.connect(Path(log), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    ) as con:
        con.execute("PRAGMA journal_mode=WAL")
        con.executescript(_SCHEMA)
        ts = [_iso(t) for t in pd.to_datetime(batch["ts"], utc=True)]
        control = batch["control_group"].to_numpy(dtype=bool)
        action = batch["action_id"].astype(str).tolist()
        columns = [
            batch[c].astype(str).tolist()
            for c in ("decision_id", "customer_id", "channel", "model_version", "context")
        ]
        propensity = batch["propensity"].astype(float).tolist()
        decisions = (
            (d, t, cu, ch, mv, a, p, int(g), 0, 0, "[]" if a == "control" else json.dumps([a]), cx)
            for d, t, cu, ch, mv, a, p, g, cx in zip(
                columns[0],
                ts,
                columns[1],
                columns[2],
                columns[3],
                action,
                propensity,
                control,
                columns[4],
                strict=True,
            )
        )
        sent = (
            (d, cu, a, SENT, t)
            for d, cu, a, t in zip(columns[0], columns[1], action, ts, strict=True)
            if a != "control"
        )
        con.execute("BEGIN IMMEDIATE")
        try:
            con.executemany(
                "INSERT INTO decisions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", decisions
            )
            con.executemany("INSERT INTO feedback VALUES (?, ?, ?, ?, ?)", sent)
        except BaseException as exc:
            con.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise NextbestError(
                    f"{log}: cannot record the batch's contacts ({exc}); nothing was recorded"
                ) from None
            raise
        con.execute("COMMIT")
    return len(batch)
