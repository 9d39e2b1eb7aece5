"""Each stored customer's raw journey, kept in the online store so that the service can compute
their features again at decision time (serving.online.live_features).

`nextbest materialize` stores, per active customer, their `customers` row and every one of their
`events` and `exposures` rows as the data contract's typed views give them (all of them, not only
those before the store's as-of date: a feature as of *now* reads every event before now). Each
table is one Arrow IPC stream per customer, so the types the feature definition reads (timestamps,
categorical and date attributes, extra columns such as `resolved`) come back exactly.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

TABLE = "history"
HISTORY_TABLES = ("customers", "events", "exposures")
CREATE = (
    f"CREATE TABLE {TABLE} (customer_id TEXT PRIMARY KEY, customers BLOB NOT NULL, "
    "events BLOB NOT NULL, exposures BLOB NOT NULL) WITHOUT ROWID"
)


@dataclass(frozen=True)
class History:
    """One customer's stored journey: the contract's typed tables, one customer each."""

    customers: pa.Table
    events: pa.Table
    exposures: pa.Table


def to_ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def from_ipc(blob: bytes) -> pa.Table:
    with pa.ipc.open_stream(pa.py_buffer(blob)) as reader:
        return reader.read_all()


def history_rows(
    con: duckdb.DuckDBPyConnection, customer_ids: list[str]
) -> Iterator[tuple[str, bytes, bytes, bytes]]:
    """(customer_id, customers, events, exposures) per customer, IPC-encoded, for the store's
    `history` table; reads the data set's typed views once each."""
    ids = sorted(customer_ids)
    con.register("_nextbest_history_ids", pa.table({"customer_id": pa.array(ids, pa.string())}))
    try:
        tables: dict[str, pa.Table] = {}
        for name in HISTORY_TABLES:
            order = "t.customer_id" + (", t.ts" if name != "customers" else "")
            found = con.sql(
                f"SELECT t.* FROM {name} AS t JOIN _nextbest_history_ids AS i "  # noqa: S608
                f"ON t.customer_id = i.customer_id ORDER BY {order}"
            ).to_arrow_table()
            assert found is not None
            tables[name] = found
    finally:
        con.unregister("_nextbest_history_ids")
    bounds = {name: _bounds(table, ids) for name, table in tables.items()}
    for k, customer in enumerate(ids):
        parts = []
        for name in HISTORY_TABLES:
            start, stop = bounds[name][k], bounds[name][k + 1]
            # a copy, not a slice: IPC writes a slice's whole string buffers, which put the
            # neighbouring customers' ids (and text) in each journey and kept them after erasure
            parts.append(to_ipc(tables[name].take(np.arange(start, stop))))
        yield customer, parts[0], parts[1], parts[2]


def _bounds(table: pa.Table, ids: list[str]) -> np.ndarray:
    """Row offsets of each of the sorted `ids` in a table sorted by customer_id (len(ids) + 1)."""
    column = np.asarray(table.column("customer_id").to_pylist(), dtype=object)
    keys = np.asarray(ids, dtype=object)
    starts = np.searchsorted(column, keys, side="left")
    return np.append(starts, len(column))


def read_history(con: sqlite3.Connection, customer_id: str) -> History | None:
    """The customer's stored journey, or None when the store holds no history for them."""
    row = con.execute(
        f"SELECT customers, events, exposures FROM {TABLE} WHERE customer_id = ?",  # noqa: S608
        (customer_id,),
    ).fetchone()
    if row is None:
        return None
    return History(*(from_ipc(blob) for blob in row))


def has_history(con: sqlite3.Connection) -> bool:
    """Whether a store was written with customers' journeys (older stores were not)."""
    found = con.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)
    ).fetchone()
    return found is not None
