"""Each stored customer's raw journey, kept in the online store so that the service can compute
their features again at decision time (serving.online.live_features).

`nextbest materialize` stores, per active customer, their `customers` row and every one of their
`events` and `exposures` rows as the data contract's typed views give them (all of them, not only
those before the store's as-of date: a feature as of *now* reads every event before now). Each
table is one Arrow IPC stream per customer, so the types the feature definition reads (timestamps,
categorical and date attributes, extra columns such as `resolved`) come back exactly.

With a text model, each event's text is stored with its scores (`TEXT_SCORES` columns, the
model's digest in the table's metadata): the service then scores only the texts that arrive live,
not a customer's whole journey on their first live row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.features.text_cache import TextScoreCache
from training.text.model import TextScorer

TABLE = "history"
TEXT_SCORES = ("_nextbest_text_polarity", "_nextbest_text_negative", "_nextbest_text_topic")
TEXT_MODEL_KEY = b"nextbest_text_model"  # the events' metadata key of the scores' model digest
_BLANK = " "  # what the feature definition strips before it scores a text
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
    con: duckdb.DuckDBPyConnection,
    customer_ids: list[str],
    text_model: TextScorer | None = None,
    cache: TextScoreCache | None = None,
) -> Iterator[tuple[str, bytes, bytes, bytes]]:
    """(customer_id, customers, events, exposures) per customer, IPC-encoded, for the store's
    `history` table; reads the data set's typed views once each. With `text_model` (one that
    scores a text alike for everyone), the events carry their texts' scores (through `cache`,
    the model's kept scores, when given)."""
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
    if text_model is not None and not text_model.per_customer:
        tables["events"] = with_text_scores(tables["events"], text_model, cache)
    bounds = {name: _bounds(table, ids) for name, table in tables.items()}
    for k, customer in enumerate(ids):
        parts = []
        for name in HISTORY_TABLES:
            start, stop = bounds[name][k], bounds[name][k + 1]
            # a copy, not a slice: IPC writes a slice's whole string buffers, which put the
            # neighbouring customers' ids (and text) in each journey and kept them after erasure
            parts.append(to_ipc(tables[name].take(np.arange(start, stop))))
        yield customer, parts[0], parts[1], parts[2]


def with_text_scores(
    events: pa.Table, model: TextScorer, cache: TextScoreCache | None = None
) -> pa.Table:
    """The events with each non-blank text's scores (null for the others), each distinct text
    scored once (or read from `cache`), and the model's digest in the metadata; unchanged
    without a text to score."""
    if "text" not in events.column_names:
        return events
    texts = events.column("text").to_pylist()
    rows = [i for i, t in enumerate(texts) if t is not None and t.strip(_BLANK)]
    if not rows:  # nothing to score (a model asked for no text refuses)
        return events
    distinct = list(dict.fromkeys(texts[i] for i in rows))
    scores = model.score(distinct) if cache is None else cache.scores(distinct, model)
    where = {t: k for k, t in enumerate(distinct)}
    at = np.array([where[texts[i]] for i in rows], dtype=np.int64)
    found = np.zeros(events.num_rows, dtype=bool)
    found[rows] = True
    columns = []
    for values, kind in ((scores.polarity, pa.float32()), (scores.negative, pa.bool_()),
                         (scores.topic, pa.int32())):  # fmt: skip
        full = np.zeros(events.num_rows, dtype=np.asarray(values).dtype)
        full[rows] = np.asarray(values)[at]
        columns.append(pa.array(full, mask=~found).cast(kind))
    for name, column in zip(TEXT_SCORES, columns, strict=True):
        events = events.append_column(name, column)
    metadata = (events.schema.metadata or {}) | {TEXT_MODEL_KEY: model.digest.encode()}
    return events.replace_schema_metadata(metadata)


def stored_text_scores(
    events: pa.Table, digest: str
) -> tuple[list[str], list[tuple[float, bool, int]]]:
    """The texts of a stored journey with the scores stored beside them, when `digest`'s model
    gave them (else none): what the service need not score again."""
    metadata = events.schema.metadata or {}
    if metadata.get(TEXT_MODEL_KEY) != digest.encode() or TEXT_SCORES[0] not in events.column_names:
        return [], []
    scored = pc.is_valid(events.column(TEXT_SCORES[0]))
    if not pc.any(scored).as_py():
        return [], []
    kept = events.filter(scored)
    texts = kept.column("text").to_pylist()
    found = zip(*(kept.column(name).to_pylist() for name in TEXT_SCORES), strict=True)
    return texts, list(found)


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
