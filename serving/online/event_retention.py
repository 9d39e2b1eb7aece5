"""Keep the event store to what the stored journeys do not hold yet.

Every live row of a customer reads all of their ingested events, so a store that only grows makes
every decision for an active customer slower, day after day. Once events are exported
(`nextbest export-events`), appended to the data set and materialized, the online store's journeys
hold them (by `event_id`) and the service counts them from there (serving.online.live_features).
`prune_materialized` deletes exactly those from the event store, with the shared live rows of the
customers concerned; an event whose triggers are still pending stays until they are evaluated.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from serving.online.events import BUSY_TIMEOUT_MS, EVENT_ID
from serving.online.store import OnlineStore
from training.errors import NextbestError

CHUNK = 500  # sequence numbers per DELETE statement


@dataclass(frozen=True)
class Pruned:
    """What `prune_materialized` found and removed."""

    customers: int  # customers with ingested events
    events: int  # events deleted: the online store's journeys hold them
    kept: int  # events left: not materialized yet, or triggers still pending


def prune_materialized(events: Path, store: Path) -> Pruned:
    """Delete the ingested events whose `event_id` the online store's journey of their customer
    holds (one transaction; pending ones stay), and those customers' shared live rows."""
    if not Path(events).is_file():
        raise NextbestError(f"{events}: no event store")
    online = OnlineStore(store)
    try:
        if not online.has_history:
            raise NextbestError(
                f"{store}: the online store holds no journeys (written by an older version): "
                "materialize it again, then prune"
            )
        con = sqlite3.connect(events, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            return _prune(con, online)
        finally:
            con.close()
    finally:
        online.close()


def _prune(con: sqlite3.Connection, online: OnlineStore) -> Pruned:
    customers = [r[0] for r in con.execute("SELECT DISTINCT customer_id FROM events")]
    doomed: list[int] = []
    touched: list[str] = []
    for customer in customers:
        held = _journey_ids(online, customer)
        if not held:
            continue
        rows = con.execute(
            f"SELECT seq, {EVENT_ID} FROM events WHERE customer_id = ? AND pending = 0",  # noqa: S608
            (customer,),
        ).fetchall()
        found = [int(seq) for seq, event_id in rows if event_id in held]
        if found:
            doomed += found
            touched.append(customer)
    total = int(con.execute("SELECT count(*) FROM events").fetchone()[0])
    con.execute("BEGIN IMMEDIATE")
    try:
        for start in range(0, len(doomed), CHUNK):
            part = doomed[start : start + CHUNK]
            con.execute(f"DELETE FROM events WHERE seq IN ({','.join('?' * len(part))})", part)  # noqa: S608
        if _has_table(con, "live_rows"):
            con.executemany("DELETE FROM live_rows WHERE customer_id = ?", [(c,) for c in touched])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return Pruned(len(customers), len(doomed), total - len(doomed))


def _journey_ids(online: OnlineStore, customer: str) -> set[str]:
    """The event ids of the customer's stored journey (none: not stored, or no id column)."""
    history = online.history(customer)
    if history is None or "event_id" not in history.events.column_names:
        return set()
    return {str(i) for i in history.events.column("event_id").drop_null().to_pylist()}


def _has_table(con: sqlite3.Connection, name: str) -> bool:
    found = con.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return found is not None
