"""The trigger outbox: decisions the service made because an ingested event fired a catalog
`trigger`, for journey tools to pick up (`GET /outbox?after=CURSOR&limit=N`, `nextbest
export-outbox`).

It lives in the event store's file (serving.online.events). Rows are appended in commit order
with an increasing sequence number, which is the cursor: a reader asks for what follows the last
cursor it processed, so delivery is at-least-once (a reader that crashes before saving its cursor
reads the same decisions again). A per-customer claim, taken in a write transaction before the
decision is made, is the cool-down: of two workers handling events of one customer at once, one
decides. Events are stored `pending` until their triggers were evaluated; the outbox row and the
settling of its events are one transaction, and pending events whose request died are evaluated
again by the service (`EventStore.lease_pending`): at least once, from event to outbox too.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from serving.online.events import EventStore, iso_utc
from training.errors import NextbestError

MAX_LIMIT = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trigger_claims (
    customer_id TEXT PRIMARY KEY,
    ts          TEXT NOT NULL,
    event_seq   INTEGER NOT NULL
) WITHOUT ROWID;
"""


class BadCursorError(NextbestError):
    """`after` is not a cursor this outbox gave out."""


@dataclass(frozen=True)
class Page:
    """Outbox decisions after a cursor, and the cursor to ask from next."""

    decisions: list[dict[str, Any]]
    cursor: str


def ensure_schema(store: EventStore) -> None:
    with store.lock:
        store.con.executescript(_SCHEMA)


def claim(
    store: EventStore, customer_id: str, event_seq: int, now: datetime, cooldown: timedelta
) -> bool:
    """Take the customer's trigger slot for this event unless a trigger fired for them (on
    another event) within `cooldown`; atomic across workers (BEGIN IMMEDIATE). A retry of the
    same event (its first attempt died before the outbox) gets the slot again."""
    with store.transaction() as con:
        row = con.execute(
            "SELECT ts, event_seq FROM trigger_claims WHERE customer_id = ?", (customer_id,)
        ).fetchone()
        cooling = row is not None and datetime.fromisoformat(row[0]) > _naive_minus(now, cooldown)
        if cooling and row[1] != event_seq:
            return False  # nothing written: the transaction commits nothing
        con.execute(
            "INSERT OR REPLACE INTO trigger_claims VALUES (?, ?, ?)",
            (customer_id, iso_utc(now), event_seq),
        )
    return True


def _naive_minus(now: datetime, delta: timedelta) -> datetime:
    return datetime.fromisoformat(iso_utc(now)) - delta


def append(
    store: EventStore, customer_id: str, event_seq: int, actions: list[str], now: datetime,
    decision: dict[str, Any], settled: list[int],
) -> int:  # fmt: skip
    """Append a triggered decision and settle the customer's events it answers, in one
    transaction; committed before returning its cursor."""
    with store.transaction() as con:
        cursor = con.execute(
            "INSERT INTO outbox (customer_id, event_seq, action, ts, decision) "
            "VALUES (?, ?, ?, ?, ?)",
            (customer_id, event_seq, ",".join(actions), iso_utc(now), json.dumps(decision)),
        )
        con.executemany("UPDATE events SET pending = 0 WHERE seq = ?", [(int(s),) for s in settled])
    return int(cursor.lastrowid or 0)


def parse_cursor(after: str | None) -> int:
    if after is None or after == "":
        return 0
    if not after.isascii() or not after.isdigit() or len(after) > 18:
        raise BadCursorError(f"after: {after[:40]!r} is not a cursor (a cursor the outbox gave)")
    return int(after)


def read_page(con: sqlite3.Connection, after: int, limit: int) -> Page:
    """Up to `limit` decisions with cursor > `after`, oldest first."""
    rows = con.execute(
        "SELECT seq, decision FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit)
    ).fetchall()
    decisions = [json.loads(text) | {"cursor": str(seq)} for seq, text in rows]
    return Page(decisions, str(rows[-1][0]) if rows else str(after))


def page(store: EventStore, after: int, limit: int) -> Page:
    with store.lock:
        return read_page(store.con, after, limit)


def export_page(path: Path, after: str | None, limit: int) -> Page:
    """The outbox of an event store file, read-only (`nextbest export-outbox`)."""
    if not Path(path).is_file():
        raise NextbestError(f"{path}: no event store")
    with sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True) as con:
        return read_page(con, parse_cursor(after), limit)
