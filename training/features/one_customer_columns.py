"""One customer's journey as numpy columns, read from the contract's Arrow tables once.

`OneCustomer` computes a row as of any time from these columns with numpy alone: the Arrow
calls (filters, vocabulary look-ups, casts), whose per-call cost dwarfs the arithmetic on one
customer's few hundred rows, happen once per journey, and a new event adds only its own rows
(`Encoded.extend`). The columns keep the tables' row order, so sums add in the same order as a
row computed from the tables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.features import sql as fs

TextScores = Callable[[list[str]], dict[str, tuple[float, bool, int]]]
_BLANK = " "  # what DuckDB's trim() strips: a text of spaces only is not scored
_EPOCH = datetime(1970, 1, 1)
_US = timedelta(microseconds=1)


class PostedEvent(Protocol):
    """A contract event as the service receives it (`ts` naive UTC, or with a zone)."""

    @property
    def ts(self) -> datetime: ...
    @property
    def channel(self) -> str | None: ...
    @property
    def event_type(self) -> str | None: ...
    @property
    def value(self) -> float | None: ...
    @property
    def text(self) -> str | None: ...


@dataclass(frozen=True)
class Columns:
    """One source's rows of one customer that have a time, in order: `ts` (us since the epoch)
    and every other column the features read (`data`: name -> array aligned with `ts`)."""

    ts: np.ndarray  # int64
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, index: np.ndarray) -> Columns:
        """The rows at `index` (positions or a boolean mask)."""
        return Columns(self.ts[index], {name: v[index] for name, v in self.data.items()})

    def then(self, other: Columns) -> Columns:
        """These rows followed by `other`'s (the same columns)."""
        if not len(other):
            return self
        if set(other.data) != set(self.data):
            raise ValueError(f"columns {sorted(other.data)} cannot follow {sorted(self.data)}")
        data = {name: np.concatenate([v, other.data[name]]) for name, v in self.data.items()}
        return Columns(np.concatenate([self.ts, other.ts]), data)

    def by_time(self) -> Columns:
        """The rows by time; a stable sort, so rows of one time keep their order."""
        return self.take(np.argsort(self.ts, kind="stable"))


@dataclass(frozen=True)
class Customer:
    """The customer's attributes: numbers (categoricals as codes, NaN when missing), the
    instants of date attributes (None when missing) and the text of each categorical."""

    values: dict[str, float]
    dates: dict[str, int | None]
    categories: dict[str, str | None]


@dataclass(frozen=True)
class Encoded:
    """One customer's journey in columns: the events given at encoding (`stored`, in table
    order), the events added since (`added`, by time) and the exposures (None: no table)."""

    customer_id: str
    customer: Customer
    stored: Columns
    exposures: Columns | None
    added: Columns | None = None

    @cached_property
    def events(self) -> Columns:
        """Every event: the stored ones, then the added ones."""
        return self.stored if self.added is None else self.stored.then(self.added)

    def extend(self, more: Columns) -> Encoded:
        """This journey with `more` events added (kept by time after the stored ones)."""
        added = more if self.added is None else self.added.then(more)
        return replace(self, added=added.by_time())


@dataclass(frozen=True)
class Vocabularies:
    """What the feature definition codes: event types, channels, survey types and actions."""

    types: pa.Array
    channels: pa.Array
    surveys: pa.Array
    actions: pa.Array

    @cached_property
    def index(self) -> dict[str, dict[str, int]]:
        """Per vocabulary, each word's code (its first position, as `pc.index_in` finds it)."""
        found: dict[str, dict[str, int]] = {}
        for name in ("types", "channels", "surveys"):
            words = found[name] = {}
            for k, word in enumerate(getattr(self, name).to_pylist()):
                words.setdefault(word, k)
        return found


def customer_of(customers: pa.Table, static: Sequence[fs.StaticColumn]) -> Customer:
    """The one customers row's attributes as the feature definition reads them."""
    values: dict[str, float] = {}
    dates: dict[str, int | None] = {}
    texts: dict[str, str | None] = {}
    for s in static:
        raw = customers.column(s.column)[0]
        v = raw.as_py()
        if s.kind == "date":
            dates[s.column] = None if v is None else _epoch_us(raw)
        elif v is None:
            values[s.column] = float("nan")
            if s.kind == "categorical":
                texts[s.name] = None
        elif s.kind == "categorical":
            text = str(v)
            known = text in s.categories
            texts[s.name] = text if known else None
            values[s.column] = float(s.categories.index(text)) if known else float("nan")
        else:  # numeric (via double, as the SQL casts) or boolean as 0/1
            values[s.column] = float(np.float32(float(v)))
    return Customer(values, dates, texts)


def event_columns(
    events: pa.Table,
    customer: str,
    words: Vocabularies,
    resolved: str | None,
    scores: TextScores | None,
) -> Columns:
    """The customer's events with a time: vocabulary codes, values (missing as 0.0) and whether
    present, resolved as 1.0 / 0.0 flags, and (`scores`: text features) each text's scores."""
    mine = _mine(events, customer)
    data = {
        "type": _codes(mine.column("event_type"), words.types),
        "channel": _codes(mine.column("channel"), words.channels),
        "survey": _codes(mine.column("event_type"), words.surveys),
    }
    values = mine.column("value")
    data["valid"] = values.is_valid().to_numpy(zero_copy_only=False)
    data["value"] = pc.fill_null(values, 0.0).to_numpy(zero_copy_only=False)
    if resolved is not None:
        r = mine.column(resolved)
        data["done"] = _flags(pc.fill_null(r, False))
        data["undone"] = _flags(pc.fill_null(pc.invert(r), False))
    if scores is not None and "text" in mine.column_names:
        data |= _text_columns(mine.column("text").to_pylist(), scores)
    return Columns(_times(mine), data)


def posted_columns(
    events: Sequence[PostedEvent],
    words: Vocabularies,
    like: Columns,
    scores: TextScores | None,
) -> Columns | None:
    """Posted events in the columns of `like` (a journey's stored events), as `event_columns`
    reads them from a table in the stored schema: resolved and every other extra column missing;
    None when a value is not finite (the path refuses it)."""
    values = [e.value for e in events]
    if not all(v is None or np.isfinite(v) for v in values):
        return None
    types, channels = [e.event_type for e in events], [e.channel for e in events]
    data = {
        "type": _coded(types, words, "types"),
        "channel": _coded(channels, words, "channels"),
        "survey": _coded(types, words, "surveys"),
        "valid": np.array([v is not None for v in values], dtype=bool),
        "value": np.array([0.0 if v is None else float(v) for v in values], dtype=np.float64),
    }
    if "done" in like.data:
        data["done"] = data["undone"] = np.zeros(len(events))
    if "scored" in like.data:
        assert scores is not None  # the journey's texts were scored
        data |= _text_columns([e.text for e in events], scores)
    ts = np.array([_micros(e.ts) for e in events], dtype=np.int64)
    return Columns(ts, data)


def exposure_columns(exposures: pa.Table, customer: str, words: Vocabularies) -> Columns:
    """The customer's exposures with a time and their actions' codes."""
    mine = _mine(exposures, customer)
    return Columns(_times(mine), {"action": _codes(mine.column("action_id"), words.actions)})


def _text_columns(texts: list[str | None], scores: TextScores) -> dict[str, np.ndarray]:
    """Per row: whether its text is scored (present, not blank), its polarity (float32), whether
    negative, and its topic code (topic + 1); each distinct text scored once."""
    kept = [t if t is not None and t.strip(_BLANK) else None for t in texts]
    distinct = list(dict.fromkeys(t for t in kept if t is not None))
    known = scores(distinct) if distinct else {}
    found = [known[t] if t is not None else (0.0, False, -1) for t in kept]
    return {
        "scored": np.array([t is not None for t in kept], dtype=bool),
        "polarity": np.array([p for p, _, _ in found], dtype=np.float32),
        "negative": np.array([n for _, n, _ in found], dtype=bool),
        "topic": np.array([t + 1 for _, _, t in found], dtype=np.int64),
    }


def _mine(table: pa.Table, customer: str) -> pa.Table:
    """The rows of `customer` that have a time (a missing ts or customer_id never counts)."""
    same = pc.and_(pc.equal(table.column("customer_id"), customer), table.column("ts").is_valid())
    same = pc.fill_null(same, False)
    return table if pc.all(same).as_py() else table.filter(same)


def _times(table: pa.Table) -> np.ndarray:
    return table.column("ts").cast(pa.int64()).to_numpy(zero_copy_only=False).astype(np.int64)


def _flags(column: pa.ChunkedArray) -> np.ndarray:
    return column.to_numpy(zero_copy_only=False).astype(np.float64)


def _codes(column: pa.ChunkedArray, vocabulary: pa.Array) -> np.ndarray:
    """Vocabulary index of each value; anything else (missing too) -> len(vocabulary)."""
    if len(vocabulary) == 0:
        return np.zeros(len(column), dtype=np.int64)
    found = pc.fill_null(pc.index_in(column, value_set=vocabulary), len(vocabulary))
    return found.to_numpy(zero_copy_only=False).astype(np.int64)


def _coded(values: list[str | None], words: Vocabularies, name: str) -> np.ndarray:
    """`_codes` of Python values in vocabulary `name`: a word's code, anything else (missing
    too) -> the vocabulary's length."""
    index, other = words.index[name], len(getattr(words, name))
    return np.array([index.get(v, other) if v is not None else other for v in values], np.int64)


def _micros(ts: datetime) -> int:
    """Microseconds since the epoch of a naive UTC time, or of a zoned one in UTC (as Arrow
    stores a datetime in a timestamp[us] column)."""
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return (ts - _EPOCH) // _US


def _epoch_us(scalar: pa.Scalar) -> int:
    """Microseconds since the epoch of a date32 or timestamp[us] scalar."""
    if pa.types.is_date32(scalar.type):
        return int(scalar.cast(pa.int32()).as_py()) * fs.DAY_US
    return int(scalar.cast(pa.int64()).as_py())
