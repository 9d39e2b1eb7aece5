"""Features at decision time: one customer's features as of now, from their stored journey plus
every event ingested since (`POST /events`), through the bundle's own FeatureBuilder: THE feature
definition, so they equal what `nextbest features` computes on the data with those events
appended (tests/serving/online/test_live_features.py). Windows slide with the clock: an event older
than a window has dropped out of it.

The journey comes from the online store's history table (serving.online.history). The features
are computed by `training.features.one_customer` (the same specs in numpy, equal to the reference
bit for bit); inputs it refuses (`OneCustomer.unsupported`) go through the builder's DuckDB
reference in memory over three one-customer tables, on one thread.

Each worker keeps the journey it last computed a customer's row from, with their ingested events
(`Journey`, up to LIVE_JOURNEYS_KEPT customers), read once into the one-customer path's numpy
columns, so a new event reads only what was stored since and adds only its own rows
(`extended`). It keeps the last row of the customers it served (up to LIVE_ROWS_KEPT), keyed by
the customer's latest event sequence: while no event arrives and the clock stays in the row's span
(`OneRow.valid`: no row entering the past, a window or a day bucket), the row as of a later
request is the kept one with its days-since features recomputed (`OneRow.at`), equal bit for
bit to a row computed anew, and the customer's uplift and scores are reused while no tree reads
the change (serving.online.model_cells). A new event (another sequence) or the end of the span
computes the row anew; the outputs memo stays, for the new row may still walk the same trees.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from serving.online.events import Event
from serving.online.history import History, stored_text_scores
from serving.online.live_rows import SharedRow
from serving.online.model_cells import OutputsMemo
from serving.online.store import FeatureRow, Namespace, namespace_rows, rule_names
from training.features.definition import to_matrix
from training.features.one_customer import OneCustomer, OneRow, instant
from training.features.one_customer_columns import Encoded
from training.registry.bundle import Bundle

LIVE_ROWS_KEPT = 4096  # customers whose last live row a worker keeps (a few kB each)
LIVE_JOURNEYS_KEPT = 1024  # customers whose journey and live events a worker keeps (~30 kB each)


@dataclass(frozen=True)
class Journey:
    """A customer's stored journey and the ingested events up to sequence `seq` that it does not
    hold, in the one-customer path's columns (`columns`), or, when the path refuses them (None),
    as events (`ingested`, in the order they came) for the reference to read with the tables.
    The columns hold the events alone: a worker keeps a thousand journeys, and events kept as
    objects too would be walked by every garbage collection until they were old."""

    history: History
    ingested: tuple[Event, ...]
    seq: int
    columns: Encoded | None


@dataclass(frozen=True)
class _Kept:
    """A customer's last live row, for their event sequence `seq`, and their outputs memo."""

    seq: int
    row: OneRow
    memo: OutputsMemo


class LiveFeatures:
    """The bundle's feature definition for one customer at a time; one per runtime."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.names = list(bundle.builder.feature_names_)
        self.rule_names = rule_names(bundle)
        self.fast = OneCustomer(bundle.builder)
        self._positions = {name: self.names.index(name) for name in self.rule_names}
        self._con = duckdb.connect(":memory:", config={"threads": 1})
        self._con.execute("SET TimeZone = 'UTC'")
        self._lock = threading.Lock()
        self._kept: OrderedDict[str, _Kept] = OrderedDict()
        self._journeys: OrderedDict[str, Journey] = OrderedDict()
        self._kept_lock = threading.Lock()

    def row(
        self,
        history: History,
        ingested: Sequence[Event],
        now: datetime,
        key: tuple[str, int] | None = None,
    ) -> FeatureRow:
        """The customer's model row and rule inputs as of `now` (model outputs: computed live);
        with `key`, (customer_id, the sequence of their latest event), the row is kept for
        later requests (`kept`). Ingested events the journey holds already count once."""
        seq = key[1] if key is not None else 0
        journey = self._fresh(history, not_in_journey(history, ingested), seq)
        return self._row(journey, now, key)

    def journey(self, customer_id: str) -> Journey | None:
        """The customer's journey with the ingested events kept from their last computed row."""
        with self._kept_lock:
            found = self._journeys.get(customer_id)
            if found is not None:
                self._journeys.move_to_end(customer_id)
        return found

    def extended(
        self, customer_id: str, history: History, base: Journey | None,
        new: Sequence[tuple[int, Event]], now: datetime,
        every: Callable[[], Sequence[tuple[int, Event]]] | None = None,
    ) -> FeatureRow:  # fmt: skip
        """The customer's row as of `now` from their journey `base` (None: `history` alone) plus
        the events stored since (`new`: (sequence, event), in order), kept for the last sequence;
        the journey is kept too, so the next event adds only itself. `every` gives all of the
        customer's stored events, for when the one-customer path refuses a new one and `base`
        holds the earlier ones in its columns only."""
        start = base if base is not None else self._start(history)
        seq = new[-1][0] if new else start.seq
        journey = self._extend(start, not_in_journey(history, [event for _, event in new]), seq)
        if journey is None:
            if every is None:
                raise ValueError("a refused event needs every event of the customer (`every`)")
            journey = self._fresh(history, not_in_journey(history, [e for _, e in every()]), seq)
        with self._kept_lock:
            self._journeys[customer_id] = journey
            self._journeys.move_to_end(customer_id)
            while len(self._journeys) > LIVE_JOURNEYS_KEPT:
                self._journeys.popitem(last=False)
        return self._row(journey, now, (customer_id, seq))

    def _start(self, history: History) -> Journey:
        """The stored journey alone, in columns when the one-customer path reads it; the text
        scores stored with it are kept, so its texts are not scored again."""
        if self.fast.text_model is not None:
            self.fast.remember(*stored_text_scores(history.events, self.fast.text_model.digest))
        columns = None
        if self.fast.unsupported(history.customers, history.events, history.exposures) is None:
            columns = self.fast.encode(history.customers, history.events, history.exposures)
        return Journey(history, (), 0, columns)

    def _fresh(self, history: History, added: list[Event], seq: int) -> Journey:
        """The stored journey with the `added` events (every ingested event it does not hold)."""
        journey = self._extend(self._start(history), added, seq)
        assert journey is not None  # a refused event is read by the reference, with the others
        return journey

    def _extend(self, journey: Journey, added: list[Event], seq: int) -> Journey | None:
        """`journey` with the `added` events, for event sequence `seq`: only their rows are read
        into columns; when the path refuses them, events for the reference, or None if the
        journey's earlier events are in its columns only (they cannot be read back)."""
        columns = journey.columns
        if columns is None:
            return Journey(journey.history, journey.ingested + tuple(added), seq, None)
        more = self.fast.extend(columns, added) if added else columns
        if more is not None:
            return Journey(journey.history, (), seq, more)
        if journey.seq:
            return None
        return Journey(journey.history, tuple(added), seq, None)

    def _row(self, journey: Journey, now: datetime, key: tuple[str, int] | None) -> FeatureRow:
        """The row as of `now`: by the one-customer path (kept under `key`) or the reference."""
        if journey.columns is None:
            history = journey.history
            ingested = _sorted(events_table(journey.ingested, history.events.schema))
            return self.reference_row(history, pa.concat_tables([history.events, ingested]), now)
        found = self.fast.row_of(journey.columns, instant(now))
        memo = None
        if key is not None:
            memo = self._memo(key[0])
            self._keep(key[0], _Kept(key[1], found, memo))
        return FeatureRow(found.vector, self._namespace(found), None, memo)

    def kept(self, customer_id: str, seq: int, now: datetime) -> FeatureRow | None:
        """The customer's row as of `now` from the one kept for event sequence `seq`, or None
        (nothing kept for that sequence, or `now` outside the kept row's span)."""
        with self._kept_lock:
            kept = self._kept.get(customer_id)
            if kept is not None:
                self._kept.move_to_end(customer_id)
        if kept is None or kept.seq != seq:
            return None
        found = kept.row.at(instant(now))
        if found is None:
            return None
        return FeatureRow(found.vector, self._namespace(found), None, kept.memo)

    def shared(self, customer_id: str) -> tuple[int, SharedRow] | None:
        """The customer's kept row, with the event sequence it is for and the model outputs last
        computed on it, in the form other workers adopt (serving.online.live_rows), or None."""
        with self._kept_lock:
            kept = self._kept.get(customer_id)
        if kept is None:
            return None
        outputs = kept.memo.entry(self.bundle)
        if outputs is None:
            return kept.seq, SharedRow(kept.row, None, None)
        return kept.seq, SharedRow(kept.row, outputs.row, outputs.uplift, outputs.scores)

    def adopt(self, customer_id: str, seq: int, shared: SharedRow) -> None:
        """Keep a row another worker computed for event sequence `seq`, with its outputs."""
        memo = OutputsMemo()
        if shared.uplift_row is not None and shared.uplift is not None:
            memo.put(self.bundle, shared.uplift_row, shared.uplift, shared.scores)
        self._keep(customer_id, _Kept(seq, shared.row, memo))

    def forget(self, customer_id: str) -> None:
        """Drop the customer's kept row and journey (their live events are gone: erased)."""
        with self._kept_lock:
            self._kept.pop(customer_id, None)
            self._journeys.pop(customer_id, None)

    def _memo(self, customer_id: str) -> OutputsMemo:
        """The customer's outputs memo: the one of their last kept row (its outputs hold for the
        new row too when no tree reads what the new event changed), else a new one."""
        with self._kept_lock:
            kept = self._kept.get(customer_id)
        return kept.memo if kept is not None else OutputsMemo()

    def _keep(self, customer_id: str, kept: _Kept) -> None:
        with self._kept_lock:
            self._kept[customer_id] = kept
            self._kept.move_to_end(customer_id)
            while len(self._kept) > LIVE_ROWS_KEPT:
                self._kept.popitem(last=False)

    def _namespace(self, found: OneRow) -> Namespace:
        """The rule inputs as `namespace_rows` gives them: floats, category text, None if missing."""
        out: Namespace = {}
        for name, j in self._positions.items():
            if name in found.categories:
                out[name] = found.categories[name]
            else:
                value = float(found.vector[j])
                out[name] = None if math.isnan(value) else value
        return out

    def reference_row(self, history: History, events: pa.Table, now: datetime) -> FeatureRow:
        """The row through the builder's DuckDB reference (`events`: stored and ingested)."""
        with self._lock:
            for name, table in (
                ("customers", history.customers),
                ("events", events),
                ("exposures", history.exposures),
            ):
                self._con.register(name, table)
            try:
                features = self.bundle.builder.transform(self._con, as_of=now)
            finally:
                for name in ("customers", "events", "exposures"):
                    self._con.unregister(name)
        matrix = to_matrix(self.bundle.prepare(features), self.names)
        vector = np.ascontiguousarray(matrix[0], dtype=np.float32)
        return FeatureRow(vector, namespace_rows(features, self.rule_names)[0], None)

    def close(self) -> None:
        with self._lock:
            self._con.close()


def not_in_journey(history: History, ingested: Sequence[Event]) -> list[Event]:
    """The ingested events that the stored journey does not hold already, by `event_id`: events
    exported into the data set (`nextbest export-events`) and materialized since count once."""
    if not ingested or "event_id" not in history.events.column_names:
        return list(ingested)
    stored = {str(i) for i in history.events.column("event_id").drop_null().to_pylist()}
    return [e for e in ingested if e.event_id is None or e.event_id not in stored]


def _sorted(events: pa.Table) -> pa.Table:
    """Events by time; a stable sort, so events of one time stay in the order they came."""
    if events.num_rows < 2:
        return events
    return events.take(pc.array_sort_indices(events.column("ts").combine_chunks()))


def events_table(events: Sequence[Event], schema: pa.Schema) -> pa.Table:
    """Ingested events in the stored events' schema: the contract columns (and `text` when the
    data set has it) from the events, every other column (e.g. `resolved`) missing."""
    columns = {
        "customer_id": [e.customer_id for e in events],
        "ts": [e.ts for e in events],
        "channel": [e.channel for e in events],
        "event_type": [e.event_type for e in events],
        "value": [e.value for e in events],
        "text": [e.text for e in events],
    }
    arrays = [
        pa.array(columns.get(field.name, [None] * len(events)), type=field.type) for field in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)
