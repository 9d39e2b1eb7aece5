"""The decision log and contact history: every decision, every piece of feedback and every consent
event posted live, durable in one database shared by every service replica (PostgreSQL) or in one
SQLite file (WAL) per host.

A record is committed before its answer is sent (`record` returns only then), so the log holds
exactly one row per answered decision: the evidence the ROI report and the next training read.
On SQLite with `synchronous=NORMAL` (the service's default) a committed decision survives a crash
of the service but not of the machine; FULL adds an fsync per commit. A database that cannot be
reached or written raises `HistoryUnavailableError` (the service answers 503): nothing is answered
that is not stored.

Contacts are the actions a customer accepted (the latest feedback on each shown action); an
acceptance is checked against the customer's other contacts and stored in one transaction that
holds a per-customer lock (PostgreSQL: an advisory transaction lock on the customer; SQLite: the
database's write lock), so replicas that accept the same action at once cannot both succeed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, bindparam, delete, func, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from serving.history.direct import DirectSqlite
from serving.history.engine import WRITE, Synchronous, describe, history_url, open_engine
from serving.history.schema import consent, decisions, feedback, migrate
from training.config import GREEDY_COLUMN
from training.errors import NextbestError
from training.policy.contact import Contact

ACCEPTED = "accepted"
DECLINED = "declined"
SENT = "sent"  # the feedback outcome of a batch send (`nextbest score --record-contacts`)
#: (customer_id, action_id, channel, ts as ISO text, outcome): the contact history's plain rows
HistoryRows = list[tuple[str, str, str, str, str]]
#: (customer_id, ts, channel, event_type): a consent event (`opt_in` / `opt_out`)
ConsentRow = tuple[str, datetime, str, str]
CONSENT_COLUMNS = ["customer_id", "ts", "channel", "event_type"]
BATCH_COLUMNS = (
    "decision_id", "ts", "customer_id", "channel", "model_version", "action_id", "propensity",
    "control_group", "context",
)  # fmt: skip
CUSTOMER_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended(:customer, 0))"


class UnknownDecisionError(NextbestError):
    """Feedback names a decision the log does not hold."""


class NotOfferedError(NextbestError):
    """Feedback names an action the decision did not show."""


class ContactConflictError(NextbestError):
    """An acceptance the contact policy forbids: the customer already received the action (from
    another decision) inside its cool-down or frequency limit."""


class HistoryUnavailableError(NextbestError):
    """The history's database cannot be reached or written now; nothing was stored."""


@dataclass(frozen=True)
class DecisionRecord:
    """One answered decision (or batch send), as logged."""

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
    arm: str = "champion"  # "champion" or "challenger": which bundle decided
    shadow: bool = False  # decided beside the shown arm: logged, never shown, never a contact
    # the greedy ranking's first action ("control" when empty), shown or not; None: not known
    greedy_action: str | None = None


class DecisionLog:
    """One process's handle on the history (a pool of connections); thread-safe.

    `source`: an SQLite file path, or a `postgresql://` URL. The schema is migrated on open."""

    def __init__(self, source: str | Path, synchronous: Synchronous = "NORMAL") -> None:
        self.url = history_url(source)
        self.where = describe(self.url)
        self.engine = open_engine(source, synchronous)
        self.postgres = self.engine.dialect.name == "postgresql"
        # SQLite: a decision's read and insert past SQLAlchemy (serving.history.direct)
        self._direct = None if self.postgres else DirectSqlite(self.engine)
        with self._write() as con:
            migrate(con)

    @contextmanager
    def _write(
        self, begin: str = WRITE["nextbest_begin"], atomic: bool = True
    ) -> Iterator[Connection]:
        """A connection for one unit of work; a lost database is HistoryUnavailableError.

        SQLite: always a transaction, committed on exit (BEGIN IMMEDIATE takes the write lock at
        once; `begin=""` for a read). PostgreSQL: the engine runs in autocommit, so one statement
        (a decision's insert, a read) is its own transaction without BEGIN and COMMIT round trips;
        `atomic` work (several statements) gets a READ COMMITTED transaction."""
        try:
            with self.engine.connect() as con:
                if self.postgres and not atomic:
                    yield con
                    return
                if self.postgres:
                    con.execution_options(isolation_level="READ COMMITTED")
                else:
                    con.execution_options(nextbest_begin=begin)
                with con.begin():
                    yield con
        except PoolTimeoutError as exc:
            raise HistoryUnavailableError(
                f"the contact history ({self.where}) has no free connection"
            ) from exc
        except (OperationalError, DBAPIError) as exc:
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                raise HistoryUnavailableError(
                    f"the contact history ({self.where}) cannot be written: "
                    f"{type(exc.orig).__name__}"
                ) from exc
            raise

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._write(begin="", atomic=False) as con:
            yield con

    def _one(self, statement: str, params: Mapping[str, object]) -> list[Any] | None:
        """The rows of one statement run past SQLAlchemy on SQLite (DirectSqlite), committed;
        None on PostgreSQL (the caller runs it through the engine)."""
        if self._direct is None:
            return None
        try:
            return self._direct.run(statement, params)
        except (sqlite3.OperationalError, OperationalError) as exc:
            raise HistoryUnavailableError(
                f"the contact history ({self.where}) cannot be written: {type(exc).__name__}"
            ) from exc

    def record(self, record: DecisionRecord) -> None:
        """Insert and commit one decision (one statement: atomic on its own)."""
        row = _row(record)
        if self._one(_INSERT_DECISION_SQL, row) is None:
            with self._write(atomic=False) as con:
                con.execute(_INSERT_DECISION, [row])

    def record_contacts(self, batch: pd.DataFrame) -> int:
        """Record a batch's sends (BATCH_COLUMNS; `action_id` "control" for the control group;
        optionally GREEDY_COLUMN) in one transaction, all or nothing: each a decision row, and each
        sent action a `sent` feedback row, so the service, the next batch and `export-exposures`
        see them (`sent`, not `accepted`: feedback on the send later does not replace it). Returns
        the rows recorded."""
        missing = [c for c in BATCH_COLUMNS if c not in batch.columns]
        if missing:
            raise NextbestError(f"batch contacts: missing columns {missing}")
        ts = [_iso(t) for t in pd.to_datetime(batch["ts"], utc=True)]
        ids, customers, channels, versions, contexts = (
            batch[c].astype(str).tolist()
            for c in ("decision_id", "customer_id", "channel", "model_version", "context")
        )
        actions = batch["action_id"].astype(str).tolist()
        propensity = batch["propensity"].astype(float).tolist()
        control = batch["control_group"].to_numpy(dtype=bool).tolist()
        shown = ["[]" if a == "control" else json.dumps([a]) for a in actions]
        greedy = _optional_text(batch, GREEDY_COLUMN)
        names = ("decision_id", "ts", "customer_id", "channel", "model_version", "action_id",
                 "propensity", "control_group", "actions", "context")  # fmt: skip
        decided = [
            dict(zip(names, values, strict=True))
            | {"explored": 0, "cold_start": 0, GREEDY_COLUMN: g}
            for g, *values in zip(
                greedy,
                ids,
                ts,
                customers,
                channels,
                versions,
                actions,
                propensity,
                [int(c) for c in control],
                shown,
                contexts,
                strict=True,
            )  # fmt: skip
        ]
        sent = [
            {"decision_id": d, "customer_id": c, "action_id": a, "outcome": SENT, "ts": t}
            for d, c, a, t in zip(ids, customers, actions, ts, strict=True)
            if a != "control"
        ]
        try:
            self._insert(decided, sent)
        except (HistoryUnavailableError, DBAPIError) as exc:
            cause = exc.__cause__ if isinstance(exc, HistoryUnavailableError) else exc
            orig = getattr(cause, "orig", cause)
            raise NextbestError(
                f"{self.where}: cannot record the batch's contacts ({orig}); nothing was recorded"
            ) from exc
        return len(batch)

    def _insert(
        self, decided: Sequence[Mapping[str, object]], fed: Sequence[Mapping[str, object]]
    ) -> None:
        """Decision rows and feedback rows in one transaction: all or nothing."""
        with self._write() as con:
            if decided:
                con.execute(insert(decisions), decided)
            if fed:
                con.execute(insert(feedback), fed)

    def feedback(
        self,
        decision_id: str,
        action_id: str,
        outcome: str,
        ts: datetime,
        allowed: Callable[[HistoryRows, str], bool] | None = None,
    ) -> None:
        """Store feedback on an action a logged decision showed; committed before returning.

        An acceptance is checked by `allowed` (the customer's contact history of other decisions,
        as `contact_history` reads it, and the decision's channel) inside the same transaction, under the customer's lock, so of two concurrent acceptances of one
        action (on any replica), the second sees the first and is refused."""
        with self._write() as con:
            found = con.execute(
                select(decisions.c.customer_id, decisions.c.actions, decisions.c.channel).where(
                    decisions.c.decision_id == decision_id, decisions.c.shadow == 0
                )
            ).first()
            if found is None:
                raise UnknownDecisionError(f"unknown decision_id {decision_id!r}")
            customer, shown, channel = found
            if action_id not in json.loads(shown):
                raise NotOfferedError(
                    f"action {action_id!r} was not offered in decision {decision_id}"
                )
            if self.postgres:
                con.execute(text(CUSTOMER_LOCK), {"customer": customer})
            if outcome == ACCEPTED and allowed is not None:
                since = datetime.min.replace(tzinfo=UTC)
                others = _history_rows(con, since, [customer], None, decision_id)
                if not allowed(others, channel):
                    raise ContactConflictError(
                        f"action {action_id!r} was already received by this customer inside "
                        "its cool-down or frequency limit; acceptance not recorded"
                    )
            row = {"decision_id": decision_id, "customer_id": customer, "action_id": action_id}
            con.execute(insert(feedback), [row | {"outcome": outcome, "ts": _iso(ts)}])

    def record_consent(self, events: Sequence[ConsentRow], received: datetime) -> int:
        """Store consent events (ts naive: UTC) in one transaction, committed before returning; an
        event stored already (same customer, time, channel and type) is kept once. Returns the
        events newly stored."""
        if not events:
            return 0
        rows = [
            {"customer_id": c, "ts": _iso(_utc(ts)), "channel": ch, "event_type": kind,
             "received_at": _iso(received)}
            for c, ts, ch, kind in events
        ]  # fmt: skip
        with self._write() as con:
            dialect = postgresql if self.postgres else sqlite
            statement = dialect.insert(consent).on_conflict_do_nothing().returning(consent.c.seq)
            return len(con.execute(statement, rows).all())

    def consent_events(
        self, customers: list[str] | None = None, until: datetime | None = None
    ) -> list[ConsentRow]:
        """The consent events stored (of these customers, up to `until`), oldest first, with ts
        naive UTC as the data's events have it."""
        with self._read() as con:
            return _consent_rows(con, customers, until)

    def customer_policy_history(
        self, customer_id: str, since: datetime
    ) -> tuple[HistoryRows, list[ConsentRow]]:
        """`contact_history` from `since` and `consent_events` of one customer in one statement
        (one round trip on PostgreSQL: a decision's reads)."""
        params = {"since": _iso(since), "other": "", "customer": customer_id}
        found = self._one(POLICY_HISTORY, params)
        if found is None:
            with self._read() as con:
                found = list(con.execute(_POLICY_HISTORY, params).all())
        rows = [(r[0], r[1], r[2], r[3], r[4]) for r in found if r[5] == 0]
        given = [(r[0], _naive(r[3]), r[2], r[4]) for r in found if r[5] == 1]
        return rows, given

    def consent_frame(self, until: datetime) -> pd.DataFrame:
        """`consent_events` of everyone up to `until`, as the batch reads them (CONSENT_COLUMNS)."""
        return pd.DataFrame.from_records(self.consent_events(until=until), columns=CONSENT_COLUMNS)

    def contacts(self, customer_id: str, since: datetime) -> list[Contact]:
        """Actions the customer accepted since `since` (the contact policy's history). Only the
        latest feedback on each shown action counts: a retried POST is one contact, and an
        acceptance corrected to a decline is none."""
        with self._read() as con:
            return _contacts(con, customer_id, since, "")

    def declines(self, customer_id: str, since: datetime) -> list[Contact]:
        """Offers the customer declined since `since` (`suppress_after_declines`); as for
        contacts, only the latest feedback on each shown action counts."""
        with self._read() as con:
            return _contacts(con, customer_id, since, "", DECLINED)

    def contact_history(
        self,
        since: datetime,
        customers: list[str] | None = None,
        id_range: tuple[str | None, str | None] | None = None,
    ) -> HistoryRows:
        """The contact history from `since` on, as plain rows (customer_id, action_id, channel,
        ts as ISO text, outcome), of the given customers, or of low <= customer_id < high
        (`id_range`, None: open), or of everyone. One row per shown action: its latest feedback
        (`accepted`, `declined`, ...), as the service counts; a batch send (`sent`) is a row of
        its own, whatever feedback followed. The channel is the decision's."""
        if customers is not None and len(customers) == 1 and id_range is None:  # a decision's
            params = {"since": _iso(since), "other": "", "customer": customers[0]}
            found = self._one(_ONE_CUSTOMER_SQL, params)
            if found is not None:
                return [(r[0], r[1], r[2], r[3], r[4]) for r in found]
        with self._read() as con:
            return _history_rows(con, since, customers, id_range, "")

    def contact_history_frame(
        self,
        since: datetime,
        customers: list[str] | None = None,
        id_range: tuple[str | None, str | None] | None = None,
    ) -> pd.DataFrame:
        """`contact_history` as a DataFrame (ts as UTC timestamps): the batch side's reads."""
        frame = pd.DataFrame.from_records(
            self.contact_history(since, customers, id_range),
            columns=["customer_id", "action_id", "channel", "ts", "outcome"],
        )
        frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601")
        return frame

    def count(self) -> int:
        with self._read() as con:
            return int(con.execute(select(func.count()).select_from(decisions)).scalar_one())

    def forget(self, customer_ids: Iterable[str]) -> tuple[int, int, int]:
        """Remove every decision, feedback and consent row of these customers; returns (decisions,
        feedback, consent) removed. The freed pages are then rewritten (SQLite: secure_delete,
        VACUUM and a truncated WAL; PostgreSQL: VACUUM), so no copy of an id stays on disk."""
        ids = sorted(set(customer_ids))
        with self._write() as con:
            if not self.postgres:
                con.exec_driver_sql("PRAGMA secure_delete=ON")
            gone_feedback = con.execute(
                delete(feedback).where(feedback.c.customer_id.in_(ids))
            ).rowcount
            gone_decisions = con.execute(
                delete(decisions).where(decisions.c.customer_id.in_(ids))
            ).rowcount
            gone_consent = con.execute(
                delete(consent).where(consent.c.customer_id.in_(ids))
            ).rowcount
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as con:
            if self.postgres:
                con.exec_driver_sql("VACUUM (FULL) decisions, feedback, consent")
            else:
                con.exec_driver_sql("VACUUM")
                con.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        self.engine.dispose()  # connections leave autocommit mode by being replaced
        if self._direct is not None:
            self._direct.close()
        return gone_decisions, gone_feedback, gone_consent

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()
        self.engine.dispose()


LATEST_ACCEPTED = """
    SELECT action_id, ts FROM (
        SELECT action_id, ts, outcome, row_number() OVER (
            PARTITION BY decision_id, action_id ORDER BY ts DESC, seq DESC) AS k
        FROM feedback WHERE customer_id = :customer AND decision_id != :other) AS latest
    WHERE k = 1 AND outcome = :outcome AND ts >= :since"""

CONTACT_HISTORY = """
    SELECT f.customer_id, f.action_id, d.channel, f.ts, f.outcome{extra} FROM (
        SELECT decision_id, customer_id, action_id, outcome, ts, row_number() OVER (
            PARTITION BY decision_id, action_id, outcome = 'sent'
            ORDER BY ts DESC, seq DESC) AS k
        FROM feedback WHERE ts >= :since AND decision_id != :other AND {customers}) AS f
    JOIN decisions AS d ON d.decision_id = f.decision_id
    WHERE f.k = 1"""
# one customer's contact history (source 0) and consent events (source 1, action_id empty)
POLICY_HISTORY = (
    CONTACT_HISTORY.format(customers="customer_id = :customer", extra=", 0 AS source")
    + " UNION ALL SELECT customer_id, '', channel, ts, event_type, 1 FROM consent"
    " WHERE customer_id = :customer ORDER BY 6, 4"
)
# the statements a decision runs, made once: a text() built per call costs a decision more than
# the query itself on SQLite (an expanding IN list is rendered again on every call)
_ONE_CUSTOMER_SQL = CONTACT_HISTORY.format(customers="customer_id = :customer", extra="")
_ONE_CUSTOMER_HISTORY = text(_ONE_CUSTOMER_SQL)
_POLICY_HISTORY = text(POLICY_HISTORY)
_LATEST_ACCEPTED = text(LATEST_ACCEPTED)
_INSERT_DECISION = insert(decisions)
_RECORD_FIELDS = tuple(f.name for f in fields(DecisionRecord))
_INSERT_DECISION_SQL = (
    f"INSERT INTO decisions ({', '.join(_RECORD_FIELDS)}) "  # noqa: S608 (the fields' names)
    f"VALUES ({', '.join(':' + name for name in _RECORD_FIELDS)})"
)


def _history_rows(
    con: Connection,
    since: datetime,
    customers: list[str] | None,
    id_range: tuple[str | None, str | None] | None,
    other_than: str,
) -> HistoryRows:
    """`DecisionLog.contact_history` on an open connection, leaving out decision `other_than`."""
    params: dict[str, object] = {"since": _iso(since), "other": other_than}
    if customers is not None and not customers:
        return []
    if customers is not None and len(customers) == 1:  # a decision's, or a feedback's, read
        query, params["customer"] = _ONE_CUSTOMER_HISTORY, customers[0]
    elif customers is not None:
        query = text(CONTACT_HISTORY.format(customers="customer_id IN :customers", extra=""))
        query = query.bindparams(bindparam("customers", expanding=True))
        params["customers"] = list(customers)
    else:
        low, high = id_range or (None, None)
        conds = ["1 = 1"]
        if low is not None:
            conds.append("customer_id >= :low")
            params["low"] = low
        if high is not None:
            conds.append("customer_id < :high")
            params["high"] = high
        query = text(CONTACT_HISTORY.format(customers=" AND ".join(conds), extra=""))  # noqa: S608
    return [(r[0], r[1], r[2], r[3], r[4]) for r in con.execute(query, params).all()]


def _consent_rows(
    con: Connection, customers: list[str] | None, until: datetime | None
) -> list[ConsentRow]:
    """`DecisionLog.consent_events` on an open connection."""
    query = select(consent.c.customer_id, consent.c.ts, consent.c.channel, consent.c.event_type)
    if customers is not None:
        query = query.where(consent.c.customer_id.in_(customers))
    if until is not None:
        query = query.where(consent.c.ts <= _iso(_utc(until)))
    rows = con.execute(query.order_by(consent.c.ts, consent.c.seq)).all()
    return [(c, _naive(ts), ch, kind) for c, ts, ch, kind in rows]


def _contacts(
    con: Connection, customer_id: str, since: datetime, other_than: str, outcome: str = ACCEPTED
) -> list[Contact]:
    """Latest contacts with this outcome of decisions other than `other_than`."""
    params = {"customer": customer_id, "other": other_than, "outcome": outcome}
    rows = con.execute(_LATEST_ACCEPTED, params | {"since": _iso(since)}).all()
    return [Contact(a, datetime.fromisoformat(ts)) for a, ts in rows]


def _row(record: DecisionRecord) -> dict[str, object]:
    """The record as a row of `decisions` (a shallow copy: its tuple and dict go to JSON)."""
    row = {name: getattr(record, name) for name in _RECORD_FIELDS}
    row["ts"] = _iso(record.ts)
    row["actions"] = json.dumps(list(record.actions))
    row["context"] = json.dumps(record.context, sort_keys=True)
    for flag in ("control_group", "explored", "cold_start", "shadow"):
        row[flag] = int(row[flag])
    return row


def _optional_text(batch: pd.DataFrame, column: str) -> list[str | None]:
    """A text column's values, None where missing (or everywhere when there is no such column)."""
    if column not in batch.columns:
        return [None] * len(batch)
    return [None if pd.isna(v) else str(v) for v in batch[column].tolist()]


def _utc(ts: datetime) -> datetime:
    """A naive timestamp is UTC (the data contract's convention)."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def _naive(ts: str) -> datetime:
    """Stored ISO text back to a naive UTC datetime."""
    return datetime.fromisoformat(ts).astimezone(UTC).replace(tzinfo=None)


def _iso(ts: datetime) -> str:
    """UTC ISO-8601 with microseconds: sorts as text in time order."""
    return ts.astimezone(UTC).isoformat(timespec="microseconds")
