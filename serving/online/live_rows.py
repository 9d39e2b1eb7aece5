"""Live rows shared by every worker: a customer's features as of their last ingested event, with
the uplift and scores computed on them, kept in the event store's file (serving.online.events).

`POST /events` computes the rows of the batch's stored customers (within a time budget) and
writes them here, so the first `/recommend` after a complaint, on whichever worker it lands,
moves a ready row to now (`OneRow.at`) instead of computing features and running every uplift
model. A row is valid for one event sequence (the customer's latest event when it was computed)
and one runtime (`tag`: the bundle and the online store file it was computed from); any other
is ignored, and a worker that loads a new runtime deletes the other runtimes' rows (`prune`).
Rows are plain numbers and JSON, never pickle; a row that cannot be decoded is ignored and
computed anew, never an error of the request.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from serving.online.events import EventStore
from training.features.one_customer import OneRow

_SCHEMA = """
CREATE TABLE IF NOT EXISTS live_rows (
    customer_id TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL,
    tag         TEXT NOT NULL,
    state       TEXT NOT NULL,
    vector      BLOB NOT NULL,
    uplift_row  BLOB,
    uplift      BLOB
) WITHOUT ROWID;
"""

Uplift = dict[str, NDArray[np.float64]]


@dataclass(frozen=True)
class SharedRow:
    """A decoded live row: the features, and the uplift and score models' outputs (by score
    column) computed on `uplift_row` (or None)."""

    row: OneRow
    uplift_row: NDArray[np.float32] | None
    uplift: Uplift | None
    scores: dict[str, float] | None = None


def ensure_schema(store: EventStore) -> None:
    with store.lock:
        store.con.executescript(_SCHEMA)


def put(store: EventStore, customer_id: str, seq: int, tag: str, shared: SharedRow) -> None:
    """Keep the customer's row for event sequence `seq`; a row of a later sequence (another
    worker's, newer) is never overwritten by an older one."""
    state, vector, uplift_row, uplift = encode(shared)
    with store.lock:
        store.con.execute(
            "INSERT INTO live_rows VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (customer_id) DO "
            "UPDATE SET seq = excluded.seq, tag = excluded.tag, state = excluded.state, "
            "vector = excluded.vector, uplift_row = excluded.uplift_row, uplift = excluded.uplift "
            "WHERE excluded.seq >= live_rows.seq",
            (customer_id, seq, tag, state, vector, uplift_row, uplift),
        )


def get(
    store: EventStore, customer_id: str, seq: int, tag: str, n_features: int, k: int
) -> SharedRow | None:
    """The customer's row for exactly `seq` and `tag`, or None (none kept, another event since,
    another bundle or store, or a row that does not decode to `n_features` and `k` actions)."""
    with store.lock:
        found = store.con.execute(
            "SELECT state, vector, uplift_row, uplift FROM live_rows "
            "WHERE customer_id = ? AND seq = ? AND tag = ?",
            (customer_id, seq, tag),
        ).fetchone()
    if found is None:
        return None
    state, vector, uplift_row, uplift = found
    return decode(state, vector, uplift_row, uplift, n_features, k)


def prune(store: EventStore, tag: str) -> int:
    """Delete the rows of other runtimes (an earlier bundle or store: no worker reads them once
    it has loaded `tag`'s); rows removed. Keeps the table to one store's customers with events."""
    with store.lock:
        return int(store.con.execute("DELETE FROM live_rows WHERE tag != ?", (tag,)).rowcount)


def encode(shared: SharedRow) -> tuple[str, bytes, bytes | None, bytes | None]:
    """(state JSON, vector, uplift row, uplift) of a row: float32 and float64 bytes, in order."""
    row = shared.row
    outcomes = list(shared.uplift) if shared.uplift is not None else None
    scores = (
        None if shared.scores is None else {n: _json_float(v) for n, v in shared.scores.items()}
    )
    state = {
        "categories": row.categories,
        "now": row.now,
        "since": [[j, instant] for j, instant in row.since.items()],
        "valid": list(row.valid),
        "outcomes": outcomes,
        "scores": scores,
    }
    vector = np.asarray(row.vector, dtype=np.float32).tobytes()
    if shared.uplift is None or shared.uplift_row is None:
        return json.dumps(state), vector, None, None
    uplift_row = np.asarray(shared.uplift_row, dtype=np.float32).tobytes()
    values = np.concatenate([np.asarray(v, dtype=np.float64) for v in shared.uplift.values()])
    return json.dumps(state), vector, uplift_row, values.tobytes()


def decode(
    state: str,
    vector: bytes,
    uplift_row: bytes | None,
    uplift: bytes | None,
    n_features: int,
    k: int,
) -> SharedRow | None:
    """The row `encode` wrote, or None when it is not a row of `n_features` features (and an
    uplift of `k` actions per outcome): damaged, or written by another feature definition."""
    try:
        meta = json.loads(state)
        features = np.frombuffer(vector, dtype=np.float32)
        row = OneRow(
            features,
            {str(name): None if text is None else str(text)
             for name, text in meta["categories"].items()},
            int(meta["now"]),
            {int(j): int(instant) for j, instant in meta["since"]},
            (int(meta["valid"][0]), int(meta["valid"][1])),
        )  # fmt: skip
        if len(features) != n_features or any(not 0 <= j < n_features for j in row.since):
            return None
        if uplift_row is None or uplift is None or meta["outcomes"] is None:
            return SharedRow(row, None, None)
        outcomes = [str(o) for o in meta["outcomes"]]
        x = np.frombuffer(uplift_row, dtype=np.float32)
        values = np.frombuffer(uplift, dtype=np.float64)
        if len(x) != n_features or len(values) != k * len(outcomes):
            return None
        by_outcome = {o: values[i * k : (i + 1) * k] for i, o in enumerate(outcomes)}
        return SharedRow(row, x, by_outcome, _scores(meta.get("scores")))
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return None


def _json_float(value: float) -> float | None:
    """A score as JSON holds it: NaN (an untrained score) as null."""
    return None if math.isnan(value) else float(value)


def _scores(found: object) -> dict[str, float] | None:
    """The scores `encode` wrote (null: NaN), or None (none kept: a row of an earlier version)."""
    if found is None:
        return None
    if not isinstance(found, dict):
        raise ValueError("scores are not an object")
    return {str(n): math.nan if v is None else float(v) for n, v in found.items()}
