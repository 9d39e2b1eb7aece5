"""Live events: contract events posted to `POST /events`, durable in one SQLite file (WAL).

The online store is an immutable nightly snapshot; what happened since (a complaint an hour ago,
a survey answer during the call) lives here, beside it. Every worker opens its own connection; a
batch is inserted in one write transaction (BEGIN IMMEDIATE), so it is applied whole or not at
all, and is committed before the answer. An `event_id` makes a retried batch harmless: an event
whose id is already stored (or repeated in the batch) is counted as a duplicate and not stored
again. `export_events` writes what was ingested in the data contract's `events` form
(docs/data.md), so the next training sees it.

The same file holds the trigger outbox (serving.online.outbox), so that an event and the decision
it triggered are stored by one transaction of one file.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from training.atomic import atomic_file
from training.errors import NextbestError

BUSY_TIMEOUT_MS = 10_000
# an event's id: the client's `event_id`, else one made from its sequence number, so that an event
# exported into the data set can be told from the same event still in this store
EVENT_ID = "COALESCE(event_id, 'nextbest:seq:' || seq) AS event_id"
EVENT_COLUMNS = ("customer_id", "ts", "channel", "event_type", "value", "text", "event_id")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id    TEXT UNIQUE,
    customer_id TEXT NOT NULL,
    ts          TEXT NOT NULL,
    channel     TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    value       REAL,
    text        TEXT,
    received_at TEXT NOT NULL,
    pending     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS events_customer ON events (customer_id, ts);
CREATE INDEX IF NOT EXISTS events_pending ON events (pending, received_at) WHERE pending = 1;
CREATE TABLE IF NOT EXISTS outbox (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    customer_id TEXT NOT NULL,
    event_seq   INTEGER NOT NULL,
    action      TEXT NOT NULL,
    ts          TEXT NOT NULL,
    decision    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_customer ON outbox (customer_id, ts);
"""


class EventStoreUnavailableError(NextbestError):
    """The event file cannot be read or written (locked past the busy timeout, damaged, a full
    disk): the service answers 503, nothing of the request was stored."""


class _Guard:
    """The store's lock (one thread of the process at a time) that also turns a SQLite error
    inside it into EventStoreUnavailableError naming the file and the error, never a row."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self.path = path

    def __enter__(self) -> _Guard:
        self._lock.acquire()
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        self._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise EventStoreUnavailableError(
                f"{self.path}: the event store cannot be read or written ({type(exc).__name__})"
            ) from None


@dataclass(frozen=True)
class Event:
    """One contract event (ts naive UTC), as posted and as stored."""

    customer_id: str
    ts: datetime
    channel: str
    event_type: str
    value: float | None = None
    text: str | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class Ingested:
    """What one batch did: how many events were stored, how many were already there, and the
    stored events with their sequence numbers (in batch order)."""

    accepted: int
    duplicates: int
    stored: list[tuple[int, Event]]


class EventStore:
    """One process's connection to the event file; thread-safe (one writer at a time per process)."""

    def __init__(self, path: Path | str, synchronous: str = "NORMAL") -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False, isolation_level=None
        )
        self.lock = _Guard(self.path)
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute(f"PRAGMA synchronous={synchronous}")
        self.con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        with self.lock:
            self.con.executescript(_SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: across workers, one writer at a time),
        committed whole when the block ends, rolled back on any error."""
        with self.lock:
            self.con.execute("BEGIN IMMEDIATE")
            try:
                yield self.con
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            self.con.execute("COMMIT")

    def ingest(self, events: Sequence[Event], now: datetime, pending: bool = False) -> Ingested:
        """Store a batch in one transaction; an event whose `event_id` is stored already (or
        earlier in the batch) is a duplicate and is skipped. `pending`: its triggers are still to
        be evaluated (serving.online.outbox clears the mark once they were)."""
        received = iso_utc(now)
        stored: list[tuple[int, Event]] = []
        with self.transaction() as con:
            for event in events:
                cursor = con.execute(
                    "INSERT OR IGNORE INTO events (event_id, customer_id, ts, channel, "
                    "event_type, value, text, received_at, pending) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        event.event_id,
                        event.customer_id,
                        iso_utc(event.ts),
                        event.channel,
                        event.event_type,
                        event.value,
                        event.text,
                        received,
                        int(pending),
                    ),
                )
                if cursor.rowcount == 1:
                    stored.append((int(cursor.lastrowid or 0), event))
        return Ingested(len(stored), len(events) - len(stored), stored)

    def for_customer(self, customer_id: str, limit: int | None = None) -> list[Event]:
        """The customer's ingested events, oldest first (the latest `limit` when given)."""
        query = (
            f"SELECT customer_id, ts, channel, event_type, value, text, {EVENT_ID} FROM events "
            "WHERE customer_id = ? ORDER BY ts DESC, seq DESC LIMIT ?"
        )
        with self.lock:
            rows = self.con.execute(query, (customer_id, -1 if limit is None else limit))
            found = [_event(row) for row in rows]
        return found[::-1]

    def after(self, customer_id: str, seq: int) -> list[tuple[int, Event]]:
        """The customer's events stored after sequence `seq`, with their sequence, in order."""
        query = (
            f"SELECT seq, customer_id, ts, channel, event_type, value, text, {EVENT_ID} "  # noqa: S608
            "FROM events WHERE customer_id = ? AND seq > ? ORDER BY seq"
        )
        with self.lock:
            rows = self.con.execute(query, (customer_id, seq)).fetchall()
        return [(int(row[0]), _event(row[1:])) for row in rows]

    def lease_pending(
        self, received_before: datetime, now: datetime, limit: int = 100
    ) -> list[tuple[int, Event]]:
        """Events whose triggers are still pending and that arrived before `received_before`
        (their request died before evaluating them), re-stamped as received `now` in the same
        statement, so no other worker takes them until they are as old again."""
        with self.lock:
            rows = self.con.execute(
                "UPDATE events SET received_at = ? WHERE seq IN (SELECT seq FROM events "
                "WHERE pending = 1 AND received_at < ? ORDER BY seq LIMIT ?) RETURNING seq, "
                "customer_id, ts, channel, event_type, value, text, event_id",
                (iso_utc(now), iso_utc(received_before), limit),
            ).fetchall()
        return sorted((int(row[0]), _event(row[1:])) for row in rows)

    def settle(self, seqs: Sequence[int]) -> None:
        """Mark events whose triggers were evaluated (none fired, or their customer is cooling
        down); a fired one is settled with its outbox row (serving.online.outbox.append)."""
        if not seqs:
            return
        with self.transaction() as con:  # one commit, not one per event (autocommit)
            con.executemany(
                "UPDATE events SET pending = 0 WHERE seq = ?", [(int(s),) for s in seqs]
            )

    def latest_seq(self, customer_id: str) -> int:
        """The sequence number of the customer's last ingested event (0: none)."""
        with self.lock:
            row = self.con.execute(
                "SELECT max(seq) FROM events WHERE customer_id = ?", (customer_id,)
            ).fetchone()
        return int(row[0] or 0)

    def count(self) -> int:
        with self.lock:
            return int(self.con.execute("SELECT count(*) FROM events").fetchone()[0])

    def close(self) -> None:
        with self.lock:
            self.con.close()


def _event(row: Sequence[object]) -> Event:
    customer_id, ts, channel, event_type, value, text, event_id = row
    return Event(
        str(customer_id),
        _naive(datetime.fromisoformat(str(ts))),
        str(channel),
        str(event_type),
        None if value is None else float(value),  # type: ignore[arg-type]
        None if text is None else str(text),
        None if event_id is None else str(event_id),
    )


def _naive(ts: datetime) -> datetime:
    """Naive UTC, as the data contract's timestamps are."""
    return ts.astimezone(UTC).replace(tzinfo=None) if ts.tzinfo is not None else ts


def iso_utc(ts: datetime) -> str:
    """UTC ISO-8601 with microseconds, no zone: sorts as text in time order."""
    return _naive(ts).isoformat(timespec="microseconds")


def events_frame(path: Path, after: int = 0) -> pd.DataFrame:
    """The ingested events stored after sequence `after` (0: all) as a contract `events` table
    (oldest first); `text` and `event_id` are extra columns, which the contract allows. Every
    event has an id (`EVENT_ID`), so once the table is in the data set and materialized, the
    service counts each event once."""
    return _numbered_events(path, after).drop(columns="seq")


def _numbered_events(path: Path, after: int) -> pd.DataFrame:
    """`events_frame` with each event's sequence number (`seq`), read in one statement."""
    if not Path(path).is_file():
        raise NextbestError(f"{path}: no event store")
    with sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True) as con:
        frame = pd.read_sql_query(
            f"SELECT customer_id, ts, channel, event_type, value, text, {EVENT_ID}, seq "  # noqa: S608
            "FROM events WHERE seq > ? ORDER BY ts, seq",
            con,
            params=(after,),
        )
    frame["ts"] = pd.to_datetime(frame["ts"], format="ISO8601")
    frame["value"] = frame["value"].astype("float64")
    return frame


def export_events(path: Path, out: Path, after: int = 0) -> tuple[int, Path, int]:
    """Write the events stored after sequence `after` to `out/events.parquet` atomically;
    returns (rows, file, the last sequence written: the next export's `after`)."""
    frame = _numbered_events(path, after)
    last = int(frame["seq"].max()) if len(frame) else after
    target = Path(out) / "events.parquet"
    with atomic_file(target) as tmp:
        frame.drop(columns="seq").to_parquet(tmp, index=False)
    return len(frame), target, last
