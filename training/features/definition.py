"""Point-in-time features: THE one feature definition shared by training, batch and online scoring.

`FeatureBuilder.fit` learns vocabularies (event types, channels, actions, static attributes) from the
training data; `transform` then computes, for each (customer, as-of time T), features from events and
exposures with ``ts < T`` only, always with the same columns in the same order. Windows ``w`` come from
`FeatureSettings.windows` (default 7, 30, 90, 365 days); an event is in the window when
``T - w days <= ts < T``. "days since" features are fractional days, NaN when nothing happened.
Names are lowercase with every character outside ``[a-z0-9_]`` replaced by ``_`` (a leading digit
gets an ``x`` prefix; a clash with another name gets a ``_2`` suffix).

Features, in output order (numeric ones float32, string attributes pandas Categorical):

- static attributes of ``customers`` as-is (numeric, boolean as 0/1, strings as categoricals with the
  fitted categories, unseen -> NaN); a DATE/TIMESTAMP attribute X becomes ``days_since_X``
  (future -> NaN).
- ``days_since_first_event``, ``days_since_last_event``, ``events_<w>d``.
- per fitted event type t: ``<t>_count_<w>d``, ``days_since_last_<t>`` (left out where the fixed
  blocks below already define that name); for types that carry values also ``<t>_value_sum_<w>d``
  and, for windows of 90 days or more, ``<t>_value_mean_<w>d``.
- per fitted channel c: ``channel_<c>_count_<w>d``.
- contact centre (always present; 0/NaN when the types are absent): ``contacts_<w>d``,
  ``unresolved_contacts_<w>d`` and ``resolution_rate_<w>d`` (from the boolean ``resolved`` events
  column, NaN without it; the rate is NaN when no contact has a known outcome),
  ``contact_minutes_<w>d`` (sum of contact values), ``complaints_<w>d``,
  ``days_since_last_complaint``, ``revenue_<w>d``, ``purchases_<w>d``, ``purchase_days_<w>d``
  (distinct days with a purchase: several orders on one day are one), ``days_since_last_purchase``,
  ``days_since_first_purchase``.
- per survey type s (nps, csat), over answers with a value: ``<s>_last``, ``<s>_prev``,
  ``<s>_trend`` (last - previous answer), ``<s>_mean_365d``, ``<s>_mean_all`` and ``<s>_answers``
  (mean and number of answers over the whole history; the mean is NaN when none), ``days_since_last_<s>``.
- exposures: ``exposures_90d``, ``exposures_365d``, ``days_since_last_exposure`` and per fitted
  action a (``control`` included): ``<a>_exposures_365d``, ``days_since_<a>``.
- texts, only with a text model (`with_text`), from the events' optional ``text`` column scored as
  they are read (polarity P(positive) - P(negative) in [-1, 1], negative or not, topic):
  ``days_since_last_text``, ``text_score_last``, ``texts_<w>d``, ``text_score_mean_<w>d``,
  ``text_negative_share_<w>d``, ``text_topic_<k>_count_<w>d`` per topic k,
  ``days_since_last_negative_text``. Without text the counts are 0 and the rest NaN.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import date, datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from training.config import FeatureSettings
from training.errors import ConfigError, ContractError, NextbestError
from training.features import sql as fs
from training.features.text_cache import TextScoreCache
from training.features.text_cache import key_sql as text_key_sql
from training.text.model import TextScorer

# Bump when the meaning of any feature changes: saved builders of another version are refused.
DEFINITION_VERSION = "3"
FORMAT = 1
MAX_CATEGORIES = 100
CHUNK_ROWS = 50_000_000  # joined event rows per aggregate query: bounds DuckDB's memory
TEXT_BATCH_ROWS = 100_000  # texts scored per batch
EVENT_COLUMNS = ("customer_id", "ts", "channel", "event_type", "value")
_NUMERIC = re.compile(r"^(TINYINT|SMALLINT|INTEGER|BIGINT|HUGEINT|U\w*INT|FLOAT|DOUBLE|DECIMAL.*)$")
_DATE = re.compile(r"^(DATE|TIMESTAMP.*)$")
_TEXT = re.compile(r"^(VARCHAR|ENUM.*)$")

AsOf = date | datetime | str
Con = duckdb.DuckDBPyConnection


def sanitize(raw: str) -> str:
    """A feature-name fragment: lowercase, non [a-z0-9_] -> "_", never empty or digit-first."""
    name = re.sub(r"[^a-z0-9_]", "_", str(raw).lower()) or "blank"
    return "x" + name if name[0].isdigit() else name


def to_timestamp(as_of: AsOf) -> pd.Timestamp:
    """A naive timestamp (UTC if it had a zone) from a date, datetime or ISO string."""
    try:
        ts = pd.Timestamp(as_of)
    except (ValueError, TypeError) as exc:
        raise NextbestError(f"as_of: cannot read {as_of!r} as a date or timestamp") from exc
    if pd.isna(ts):
        raise NextbestError(f"as_of: cannot read {as_of!r} as a date or timestamp")
    return ts.tz_convert(None) if ts.tzinfo is not None else ts


def _ts_literal(ts: Any) -> str:
    return f"TIMESTAMP '{pd.Timestamp(ts).strftime('%Y-%m-%d %H:%M:%S.%f')}'"


# ------------------------------------------------------------------------------ database helpers
def _columns(con: Con, table: str) -> dict[str, str] | None:
    """Column name -> DuckDB type of a table or view, or None when it does not exist."""
    try:
        rows = con.execute(f"DESCRIBE {fs.quote_ident(table)}").fetchall()
    except duckdb.CatalogException:
        return None
    return {str(r[0]): str(r[1]) for r in rows}


def _require(con: Con, table: str, needed: Iterable[str]) -> dict[str, str]:
    """Columns of a table or view that must exist with the given columns."""
    cols = _columns(con, table)
    if cols is None:
        raise ContractError(table, None, "table or view not found")
    for col in needed:
        if col not in cols:
            raise ContractError(table, col, "required column is missing")
    return cols


def _scalar(con: Con, sql: str) -> Any:
    """The single value of a one-row, one-column query (fetched to the end)."""
    rows = con.execute(sql).fetchall()
    return rows[0][0] if rows else None


@contextmanager
def _insertion_order(con: Con, keep: bool) -> Iterator[None]:
    """Temporarily set DuckDB's preserve_insertion_order (off lets big aggregations stream)."""
    old = bool(_scalar(con, "SELECT current_setting('preserve_insertion_order')"))
    con.execute(f"SET preserve_insertion_order = {keep}")
    try:
        yield
    finally:
        con.execute(f"SET preserve_insertion_order = {old}")


def _static_kind(duck_type: str) -> str | None:
    """Feature kind of a customers column type; None for types that are not features."""
    if duck_type == "BOOLEAN":
        return "bool"
    if _NUMERIC.match(duck_type):
        return "numeric"
    if _DATE.match(duck_type):
        return "date"
    return "categorical" if _TEXT.match(duck_type) else None


def _top(con: Con, table: str, column: str, limit: int | None) -> list[tuple[str, int, int]]:
    """(value, rows, rows with a non-null `value` column) of the most frequent values, ties by value."""
    col = fs.quote_ident(column)
    nv = "count(value)" if table == "events" else "0"
    sql = (
        f"SELECT CAST({col} AS VARCHAR) AS k, count(*) AS n, {nv} AS nv "
        f"FROM {fs.quote_ident(table)} WHERE {col} IS NOT NULL GROUP BY k ORDER BY n DESC, k"
    )
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [(str(k), int(n), int(v)) for k, n, v in con.execute(sql).fetchall()]


# -------------------------------------------------------------------------------- the builder
class FeatureBuilder:
    """Fitted, serialisable point-in-time feature definition (sklearn-like: fit / transform)."""

    def __init__(self, settings: FeatureSettings = FeatureSettings()) -> None:  # noqa: B008
        self.settings = settings
        self.text_model_: TextScorer | None = None

    def fit(self, con: Con) -> FeatureBuilder:
        """Learn vocabularies and attribute kinds from the canonical views of `con`."""
        s = self.settings
        if not s.windows or min(s.windows) <= 0:
            raise ConfigError(f"features.windows: need positive day counts, got {s.windows}")
        events = _require(con, "events", EVENT_COLUMNS)
        customers = _require(con, "customers", ("customer_id",))
        types = _top(con, "events", "event_type", s.max_event_types)
        self.event_types_ = [t for t, _, _ in types]
        self.value_types_ = [t for t, _, nv in types if nv > 0]
        self.channels_ = [c for c, _, _ in _top(con, "events", "channel", s.max_channels)]
        exposures = _columns(con, "exposures")
        has_actions = exposures is not None and "action_id" in exposures
        actions = _top(con, "exposures", "action_id", None) if has_actions else []
        self.actions_ = sorted(a for a, _, _ in actions)
        self.has_resolved_ = events.get(s.resolved_column) == "BOOLEAN"
        self.static_ = _fit_static(con, customers)
        self._finish()
        return self

    def with_text(self, model: TextScorer | None) -> FeatureBuilder:
        """Score the events' text with `model` (None: no text features); names and version follow."""
        self._check_fitted()
        self.text_model_ = model
        self._finish()
        return self

    @property
    def text_feature_names_(self) -> list[str]:
        """The features read from text (empty without a text model)."""
        self._check_fitted()
        return [s.name for s in self.specs_ if s.source in ("texts", "text_last")]

    @property
    def topic_terms_(self) -> list[list[str]]:
        """The top terms of each text topic (empty without a text model)."""
        return [] if self.text_model_ is None else self.text_model_.topic_terms()

    def _finish(self) -> None:
        """Derive the definition, specs, names and version from the fitted state."""
        s = self.settings
        self.definition_ = fs.Definition(
            windows=tuple(sorted(set(s.windows))),
            event_types=tuple(self.event_types_),
            value_types=tuple(self.value_types_),
            channels=tuple(self.channels_),
            actions=tuple(self.actions_),
            static=tuple(self.static_),
            contact_types=tuple(s.contact_event_types),
            complaint_types=tuple(s.complaint_event_types),
            purchase_type=s.purchase_event_type,
            survey_types=tuple(s.survey_event_types),
            has_resolved=self.has_resolved_,
            resolved_column=s.resolved_column,
            text_topics=-1 if self.text_model_ is None else self.text_model_.n_topics,
        )
        names = {
            f"{kind}:{raw}": sanitize(raw)
            for kind, values in (
                ("type", self.event_types_),
                ("channel", self.channels_),
                ("action", self.actions_),
                ("survey", s.survey_event_types),
            )
            for raw in values
        }
        self.specs_ = fs.specs(self.definition_, names)
        self.feature_names_ = [spec.name for spec in self.specs_]
        self.version_ = self._version()

    @property
    def version(self) -> str:
        """Hash of the feature definition and the fitted state (what a model bundle records)."""
        self._check_fitted()
        return self.version_

    def _state(self) -> dict[str, Any]:
        text = {}  # only with a text model, so builders without one keep their version
        if self.text_model_ is not None:
            model = self.text_model_
            text = {"text": {"digest": model.digest, "topics": model.n_topics,
                             "topic_terms": model.topic_terms()}}  # fmt: skip
        return text | {
            "format": FORMAT,
            "settings": self.settings.model_dump(mode="json"),
            "event_types": list(self.event_types_),
            "value_types": list(self.value_types_),
            "channels": list(self.channels_),
            "actions": list(self.actions_),
            "has_resolved": self.has_resolved_,
            "static": [asdict(s) | {"categories": list(s.categories)} for s in self.static_],
        }

    def _version(self) -> str:
        """Hash of the definition version, the fitted state and the resulting specs."""
        specs = [asdict(spec) for spec in self.specs_]
        blob = {"definition": DEFINITION_VERSION, "state": self._state(), "specs": specs}
        return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable fitted state, with the feature names and the definition version."""
        self._check_fitted()
        return self._state() | {"feature_names": self.feature_names_, "version": self.version_}

    @classmethod
    def from_dict(
        cls, state: dict[str, Any], text_model: TextScorer | None = None
    ) -> FeatureBuilder:
        """Rebuild a fitted builder (with its saved text model, if it had one); refuses a state
        this code would compute differently."""
        if state.get("format") != FORMAT:
            raise NextbestError(f"feature state format {state.get('format')!r} is not {FORMAT}")
        saved = state.get("text")
        if saved is None and text_model is not None:
            raise NextbestError("feature state has no text model, but one was given")
        if saved is not None and (text_model is None or text_model.digest != saved["digest"]):
            raise NextbestError("feature state needs the text model it was fitted with")
        self = cls(FeatureSettings(**state["settings"]))
        self.text_model_ = text_model
        self.event_types_ = list(state["event_types"])
        self.value_types_ = list(state["value_types"])
        self.channels_ = list(state["channels"])
        self.actions_ = list(state["actions"])
        self.has_resolved_ = bool(state["has_resolved"])
        self.static_ = [
            fs.StaticColumn(s["column"], s["name"], s["kind"], tuple(s["categories"]))
            for s in state["static"]
        ]
        self._finish()
        if state.get("version", self.version_) != self.version_:
            raise NextbestError(
                f"feature definition changed: saved version {state['version']}, this code gives "
                f"{self.version_}; retrain with this version of nextbest"
            )
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "specs_"):
            raise NextbestError("FeatureBuilder is not fitted: call fit() or from_dict() first")

    def fit_transform(
        self, con: Con, as_of: AsOf | None = None, spine: str | None = None
    ) -> pd.DataFrame:
        """`fit` then `transform` on the same connection."""
        return self.fit(con).transform(con, as_of=as_of, spine=spine)

    def transform(
        self,
        con: Con,
        as_of: AsOf | None = None,
        spine: str | None = None,
        *,
        chunk_rows: int = CHUNK_ROWS,
        text_cache: TextScoreCache | None = None,
    ) -> pd.DataFrame:
        """Features of every customer as of one time, or of every (customer_id, as_of) spine row.

        Output: one row per spine row (customers sorted by id for one as-of; spine order for a
        spine) with columns customer_id, as_of, then `feature_names_`. Without as_of and spine,
        as of midnight after the last event. `chunk_rows` (joined event rows per query) trades
        memory for extra scans; it never changes the result. `text_cache` keeps the text model's
        scores between runs (only texts it does not hold are scored); it never changes the result.
        """
        self._check_fitted()
        model = self.text_model_
        if text_cache is not None and (model is None or text_cache.model_digest != model.digest):
            raise NextbestError("transform: the text score cache belongs to another text model")
        if as_of is not None and spine is not None:
            raise NextbestError("transform: give either as_of or spine, not both")
        resolved = (self.settings.resolved_column,) if self.has_resolved_ else ()
        _require(con, "events", (*EVENT_COLUMNS, *resolved))
        customers = _require(con, "customers", ("customer_id",))
        for s in self.static_:
            if s.column not in customers:
                raise ContractError("customers", s.column, "attribute seen in training is missing")
        table = f"_nextbest_spine_{uuid.uuid4().hex}"
        texts = f"_nextbest_texts_{uuid.uuid4().hex}"
        try:
            _make_spine(con, table, as_of, spine)
            scored = _score_texts(con, model, table, texts, text_cache)
            return _features(con, self.definition_, self.specs_, table, chunk_rows, scored)
        finally:
            con.execute(f"DROP TABLE IF EXISTS {fs.quote_ident(table)}")
            con.execute(f"DROP TABLE IF EXISTS {fs.quote_ident(texts)}")


def _fit_static(con: Con, columns: dict[str, str]) -> list[fs.StaticColumn]:
    """Kind and categories of every customers attribute that can be a feature."""
    out = []
    for column, duck_type in columns.items():
        kind = _static_kind(duck_type)
        if column == "customer_id" or kind is None:
            continue
        name = ("days_since_" if kind == "date" else "") + sanitize(column)
        cats: tuple[str, ...] = ()
        if kind == "categorical":
            cats = tuple(sorted(c for c, _, _ in _top(con, "customers", column, MAX_CATEGORIES)))
        out.append(fs.StaticColumn(column, name, kind, cats))
    return out


def _score_texts(
    con: Con,
    model: TextScorer | None,
    spine: str,
    table: str,
    cache: TextScoreCache | None = None,
) -> str | None:
    """Score the texts of the spine's customers before their latest as-of into `table`
    (customer_id, ts, polarity, negative, topic); None when there is no model or no text column.

    Texts are scored when features are computed (training, materialize, batch), never per request;
    each distinct text once (per group of writers when scores depend on the writer: cross-fitting),
    and with a `cache` only the texts it does not hold yet."""
    if model is None or "text" not in (_columns(con, "events") or {}):
        return None
    bound = _scalar(con, f"SELECT max(as_of) FROM {fs.quote_ident(spine)}")
    where = (
        "WHERE e.text IS NOT NULL AND trim(e.text) <> '' "
        f"AND e.ts < {_ts_literal(bound if bound is not None else pd.Timestamp(0))} "
        f"AND e.customer_id IN (SELECT customer_id FROM {fs.quote_ident(spine)})"
    )
    target = fs.quote_ident(table)
    if cache is not None:
        with cache.reading():
            _score_cached(con, model, where, table, cache)
        return table
    if model.per_customer:  # each distinct text once per group of writers (fold)
        id_sql = f"SELECT DISTINCT CAST(e.customer_id AS VARCHAR) FROM events e {where}"
        ids = [r[0] for r in con.execute(id_sql).fetchall()]
        groups = pa.table({"customer_id": pa.array(ids, pa.string()),
                           "grp": pa.array(model.group_of(ids), pa.int64())})  # fmt: skip
        rows = fs.quote_ident(f"{table}_rows")
        with _registered(con, groups) as g:  # rows first: joined with `g` alone, the scores
            con.execute(  # would pair every writer of a group with every text of it
                f"CREATE TEMP TABLE {rows} AS SELECT g.customer_id, e.ts, "
                f"CAST(e.text AS VARCHAR) AS text, g.grp FROM events e "
                f"JOIN {g} g ON CAST(e.customer_id AS VARCHAR) = g.customer_id {where}"
            )
        try:
            sql = (
                f"SELECT grp, text, any_value(customer_id) AS customer_id FROM {rows} GROUP BY ALL"
            )
            with _registered(con, _scored(con, sql, model, ("grp", "customer_id"))) as view:
                con.execute(
                    f"CREATE TEMP TABLE {target} AS SELECT r.customer_id, r.ts, s.polarity, "
                    f"s.negative, s.topic FROM {rows} r JOIN {view} s "
                    "ON s.grp = r.grp AND s.text = r.text"
                )
        finally:
            con.execute(f"DROP TABLE IF EXISTS {rows}")
        return table
    sql = f"SELECT DISTINCT CAST(e.text AS VARCHAR) AS text FROM events e {where}"
    with _registered(con, _scored(con, sql, model, ())) as view:
        con.execute(
            f"CREATE TEMP TABLE {target} AS SELECT CAST(e.customer_id AS VARCHAR) AS customer_id, "
            f"e.ts, s.polarity, s.negative, s.topic FROM events e "
            f"JOIN {view} s ON CAST(e.text AS VARCHAR) = s.text {where}"
        )
    return table


def _score_cached(
    con: Con, model: TextScorer, where: str, table: str, cache: TextScoreCache
) -> None:
    """`_score_texts` through the kept scores: each event is keyed by its text's hash and takes the
    kept scores in one join; the keys the cache lacks are scored (each distinct text once), kept,
    and filled in. Events are read again only when there are new texts, from the first one's time."""
    target, fresh = fs.quote_ident(table), fs.quote_ident(f"{table}_new")
    text = "CAST(e.text AS VARCHAR)"
    con.execute(
        f"CREATE TEMP TABLE {target} AS SELECT r.customer_id, r.ts, k1, k2, c.polarity, "
        f"c.negative, c.topic, c.k1 IS NULL AS fresh FROM (SELECT CAST(e.customer_id AS VARCHAR) "
        f"AS customer_id, e.ts, {text_key_sql(text)} FROM events e {where}) r "
        f"LEFT JOIN {cache.relation()} c USING (k1, k2)"
    )
    since = _scalar(con, f"SELECT min(ts) FROM {target} WHERE fresh")
    if since is None:
        return
    try:
        con.execute(
            f"CREATE TEMP TABLE {fresh} AS SELECT DISTINCT k1, k2 FROM {target} WHERE fresh"
        )
        recent = f"{where} AND e.ts >= {_ts_literal(since)}"
        sql = (
            f"SELECT k1, k2, any_value(text) AS text FROM (SELECT {text} AS text, "
            f"{text_key_sql(text)} FROM events e {recent}) SEMI JOIN {fresh} USING (k1, k2) "
            "GROUP BY k1, k2"
        )
        scored = _scored(con, sql, model, ("k1", "k2")).drop_columns(["text"])
        cache.add(scored)
        with _registered(con, scored) as view:
            con.execute(
                f"UPDATE {target} AS t SET polarity = s.polarity, negative = s.negative, "
                f"topic = s.topic FROM {view} s WHERE t.fresh AND t.k1 = s.k1 AND t.k2 = s.k2"
            )
    finally:
        con.execute(f"DROP TABLE IF EXISTS {fresh}")


def _scored(con: Con, sql: str, model: TextScorer, keep: tuple[str, ...]) -> pa.Table:
    """The rows of `sql` (a `text` column, a `customer_id` one when kept) with their scores,
    read and scored in batches."""
    parts = []
    for batch in con.sql(sql).to_arrow_reader(TEXT_BATCH_ROWS):
        texts = batch.column("text").to_pylist()
        ids = batch.column("customer_id").to_pylist() if "customer_id" in keep else None
        scores = model.score(texts, ids)
        columns = {name: batch.column(name) for name in (*keep, "text")}
        parts.append(pa.table(columns | {
            "polarity": pa.array(scores.polarity, pa.float32()),
            "negative": pa.array(scores.negative, pa.bool_()),
            "topic": pa.array(scores.topic, pa.int16()),
        }))  # fmt: skip
    if parts:
        return pa.concat_tables(parts)
    schema = con.sql(sql).limit(0).to_arrow_table().schema
    empty = {f.name: pa.array([], f.type) for f in schema}
    return pa.table(empty | {"polarity": pa.array([], pa.float32()),
                             "negative": pa.array([], pa.bool_()),
                             "topic": pa.array([], pa.int16())})  # fmt: skip


@contextmanager
def _registered(con: Con, table: pa.Table) -> Iterator[str]:
    """An Arrow table as a temporary DuckDB view, for the length of the block."""
    view = f"_nextbest_arrow_{uuid.uuid4().hex}"
    con.register(view, table)
    try:
        yield view
    finally:
        con.unregister(view)


def _make_spine(con: Con, table: str, as_of: AsOf | None, spine: str | None) -> None:
    """Temp table (i, customer_id, as_of): all customers at one time, or a copy of `spine`."""
    with _insertion_order(con, keep=True):
        if spine is not None:
            _require(con, spine, ("customer_id", "as_of"))
            con.execute(fs.spine_from_table(table, spine))
            bad = con.execute(
                f"SELECT customer_id, as_of FROM {fs.quote_ident(table)} "
                "WHERE customer_id IS NULL OR as_of IS NULL LIMIT 1"
            ).fetchall()
            if bad:
                column = "as_of" if bad[0][1] is None else "customer_id"
                raise ContractError(spine, column, "has an empty value", bad[0])
            return
        if as_of is None:
            last = _scalar(con, "SELECT max(ts) FROM events") or pd.Timestamp.now()
            ts = pd.Timestamp(last).normalize() + pd.Timedelta(days=1)
        else:
            ts = to_timestamp(as_of)
        con.execute(fs.spine_from_customers(table, _ts_literal(ts)))


# ------------------------------------------------------------------------- numpy assembly
class _Grouped:
    """Aggregated rows (i, code, [b], stats); selecting codes gathers only their rows."""

    def __init__(self, table: pa.Table, n_codes: int) -> None:
        code = table["code"].to_numpy()
        self.order = np.argsort(code, kind="stable")
        self.bounds = np.searchsorted(code, np.arange(n_codes + 2), sorter=self.order)
        self.cols: dict[str, np.ndarray] = {}
        for name in table.column_names:
            if name != "code":
                self.cols[name] = _numpy(table[name])
            table = table.drop_columns([name])  # free each Arrow column once converted

    def select(self, codes: tuple[int, ...] | None) -> dict[str, np.ndarray]:
        """Rows of some codes (None: all rows, in no particular order)."""
        if codes is None:
            return self.cols
        rows = np.concatenate([self.order[self.bounds[c] : self.bounds[c + 1]] for c in codes])
        return {k: v[rows] for k, v in self.cols.items()}


def _numpy(col: pa.ChunkedArray) -> np.ndarray:
    """A column as numpy: null sums become 0, other nulls NaN."""
    if pa.types.is_floating(col.type):
        return col.to_numpy()  # nulls -> NaN
    return pc.fill_null(col, 0).to_numpy()


class _Stats:
    """Window statistics of one selection of aggregated rows, per spine row, computed lazily."""

    def __init__(self, rows: dict[str, np.ndarray], n: int, n_buckets: int) -> None:
        self.rows, self.n, self.nb = rows, n, n_buckets
        self.flat = rows["i"].astype(np.int64) * n_buckets + rows.get("b", 0)
        self.cache: dict[str, np.ndarray] = {}

    def cum(self, col: str) -> np.ndarray:
        """(n, buckets) sums of `col` over the rows in each window (cumulative over buckets)."""
        if col not in self.cache:
            weights = np.nan_to_num(self.rows[col].astype(np.float64))
            sums = np.bincount(self.flat, weights=weights, minlength=self.n * self.nb)
            self.cache[col] = np.cumsum(sums.reshape(self.n, self.nb), axis=1)
        return self.cache[col]

    def extreme(self, col: str, largest: bool) -> np.ndarray:
        """Per spine row min (or max) of `col`, NaN where there is no row."""
        out = np.full(self.n, -np.inf if largest else np.inf, dtype=np.float32)
        (np.maximum if largest else np.minimum).at(out, self.rows["i"], self.rows[col])
        out[np.isinf(out)] = np.nan
        return out

    def value(self, col: str) -> np.ndarray:
        """Per spine row value of `col` (one row per spine row at most), NaN where missing."""
        out = np.full(self.n, np.nan, dtype=np.float32)
        out[self.rows["i"]] = self.rows[col]
        return out


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def _column(spec: fs.Spec, st: _Stats) -> np.ndarray:
    """The values of one feature from the statistics of its selection."""
    w, stat = spec.window, spec.stat
    if spec.source == "surveys":
        if stat == "trend":
            return st.value("last") - st.value("prev")
        if stat == "n_all":  # a count: no answers is 0, not unknown
            return np.nan_to_num(st.value(stat), nan=0.0)
        return st.value({"age": "amin"}.get(stat, stat))
    if spec.source in ("texts", "text_last"):
        return _text_column(spec, st)
    if stat == "count":
        return st.cum("n")[:, w]
    if stat == "days":
        return st.cum("nd")[:, w]
    if stat == "sum":
        return st.cum("sv")[:, w]
    if stat == "mean":
        return _ratio(st.cum("sv")[:, w], st.cum("nv")[:, w])
    if stat == "unresolved":
        return st.cum("nrf")[:, w]
    if stat == "rate":
        done = st.cum("nrt")[:, w]
        return _ratio(done, done + st.cum("nrf")[:, w])
    if stat in ("last", "first"):
        return st.extreme("amax" if stat == "first" else "amin", largest=stat == "first")
    raise ValueError(f"unknown feature statistic {spec.source}.{stat}")


def _text_column(spec: fs.Spec, st: _Stats) -> np.ndarray:
    """The values of one text feature."""
    w, stat = spec.window, spec.stat
    if stat == "count":
        return st.cum("n")[:, w]
    if stat == "score_mean":
        return _ratio(st.cum("ss")[:, w], st.cum("n")[:, w])
    if stat == "negative_share":
        return _ratio(st.cum("nn")[:, w], st.cum("n")[:, w])
    if stat == "last":
        return st.extreme("amin", largest=False)
    if stat == "negative_age":
        return st.extreme("aneg", largest=False)
    if stat == "score_last":
        return st.value("score_last")
    raise ValueError(f"unknown text statistic {stat}")


def _source_sql(
    con: Con, d: fs.Definition, source: str, scope: fs.Scope, texts: str | None
) -> str | None:
    """The aggregate query of a source, or None when its input does not exist."""
    if source in ("texts", "text_last"):
        if texts is None:
            return None
        return (
            fs.texts_sql(d, scope, texts) if source == "texts" else fs.text_last_sql(scope, texts)
        )
    if source == "events":
        return fs.events_sql(d, scope)
    if source == "channels":
        return fs.channels_sql(d, scope)
    if source == "surveys":
        return fs.surveys_sql(d, scope) if d.survey_types else None
    exposures = _columns(con, "exposures") or {}
    if all(c in exposures for c in ("customer_id", "ts", "action_id")):
        return fs.exposures_sql(d, scope)
    return None


_CODES = {
    "events": lambda d: len(d.type_codes),
    "channels": lambda d: len(d.channels),
    "surveys": lambda d: len(d.survey_types),
    "exposures": lambda d: len(d.actions),
    "texts": lambda d: d.text_topics + 1,
    "text_last": lambda d: 1,
}


def _scopes(con: Con, table: str, chunk_rows: int) -> list[fs.Scope]:
    """Customer-id ranges of the spine, each joining about `chunk_rows` event rows at most.

    Chunking bounds DuckDB's hash tables (memory) at the price of one more scan per chunk.
    """
    spine = fs.quote_ident(table)
    latest = _scalar(con, f"SELECT max(as_of) FROM {spine}")
    bound = _ts_literal(latest if latest is not None else pd.Timestamp(0))
    stats = con.execute(f"SELECT count(*), count(DISTINCT customer_id) FROM {spine}").fetchall()
    rows, customers = stats[0]
    joined = (_scalar(con, "SELECT count(*) FROM events") or 0) * rows / max(customers, 1)
    k = min(int(joined // max(chunk_rows, 1)) + 1, max(customers, 1))
    if k == 1:
        return [fs.Scope(table, bound)]
    cuts = [j / k for j in range(1, k)]
    edges = sorted(set(_scalar(con, f"SELECT quantile_disc(customer_id, {cuts}) FROM {spine}")))
    lows: list[str | None] = [None, *edges]
    highs: list[str | None] = [*edges, None]
    return [fs.Scope(table, bound, lo, hi) for lo, hi in zip(lows, highs, strict=True)]


def _aggregate(
    con: Con, d: fs.Definition, source: str, scopes: list[fs.Scope], texts: str | None
) -> pa.Table:
    """A source's aggregated rows over all chunks."""
    if source in ("surveys", "exposures"):  # small inputs: one pass
        scopes = [fs.Scope(scopes[0].spine, scopes[0].bound)]
    tables = []
    for scope in scopes:
        sql = _source_sql(con, d, source, scope, texts)
        assert sql is not None
        tables.append(con.sql(sql).to_arrow_table())
    return pa.concat_tables(tables)


def _fill_source(
    con: Con,
    d: fs.Definition,
    specs: list[tuple[int, fs.Spec]],
    scopes: list[fs.Scope],
    n: int,
    out: np.ndarray,
    texts: str | None = None,
) -> None:
    """Run one source's aggregate queries and write its features into their columns of `out`."""
    source = specs[0][1].source
    if _source_sql(con, d, source, scopes[0], texts) is None:
        for k, spec in specs:
            out[:, k] = 0.0 if spec.stat in ("count", "days") else np.nan
        return
    grouped = _Grouped(_aggregate(con, d, source, scopes, texts), _CODES[source](d))
    n_buckets = len(fs.EXPOSURE_WINDOWS if source == "exposures" else d.windows) + 1
    stats: tuple[tuple[int, ...] | None, _Stats] | None = None
    for k, spec in specs:
        if stats is None or stats[0] != spec.select:
            stats = (spec.select, _Stats(grouped.select(spec.select), n, n_buckets))
        out[:, k] = _column(spec, stats[1])


def _features(
    con: Con,
    d: fs.Definition,
    specs: list[fs.Spec],
    table: str,
    chunk_rows: int,
    texts: str | None = None,
) -> pd.DataFrame:
    """Compute every feature of the spine rows in `table` and assemble the output frame."""
    with _insertion_order(con, keep=False):
        head = con.sql(fs.static_sql(d, table)).to_arrow_table()
        n = head.num_rows
        if _scalar(con, f"SELECT count(*) FROM {fs.quote_ident(table)}") != n:
            raise ContractError("customers", "customer_id", "is not unique")
        numeric = [(k, s) for k, s in enumerate(specs) if s.stat != "category"]
        out = np.empty((n, len(numeric)), dtype=np.float32, order="F")
        position = {k: j for j, (k, _) in enumerate(numeric)}
        statics = {s.column: f"_s{j}" for j, s in enumerate(d.static)}
        for k, spec in numeric:
            if spec.source == "static":
                out[:, position[k]] = head[statics[spec.column]].to_numpy()
            elif spec.source == "missing":
                out[:, position[k]] = np.nan
        scopes = _scopes(con, table, chunk_rows)
        for source in ("events", "channels", "surveys", "exposures", "texts", "text_last"):
            mine = [(position[k], s) for k, s in numeric if s.source == source]
            if mine:
                _fill_source(con, d, mine, scopes, n, out, texts)
    return _assemble(head, d, specs, numeric, out)


def _assemble(
    head: pa.Table,
    d: fs.Definition,
    specs: list[fs.Spec],
    numeric: list[tuple[int, fs.Spec]],
    out: np.ndarray,
) -> pd.DataFrame:
    """customer_id, as_of, then the features in spec order; categoricals with fitted categories."""
    frame = pd.DataFrame(out, columns=[s.name for _, s in numeric], copy=False)
    frame.insert(0, "customer_id", head["customer_id"].to_pandas())
    frame.insert(1, "as_of", head["as_of"].to_pandas())
    by_column = {s.column: (j, s) for j, s in enumerate(d.static)}
    for k, spec in enumerate(specs):
        if spec.stat == "category":
            j, static = by_column[spec.column]
            cats = pa.array(static.categories, pa.string())
            codes = pc.fill_null(pc.index_in(head[f"_s{j}"], value_set=cats), -1)
            values = pd.Categorical.from_codes(
                codes.to_numpy(), categories=pd.Index(static.categories)
            )
            frame.insert(k + 2, spec.name, pd.Series(values, copy=False))
    return frame


# ------------------------------------------------------------------------------ descriptions
_WINDOWED = [
    (r"offer_(shown|accepted|declined|ignored)_(.+)_count_(\d+)d", "offers of {1} {0}"),
    (r"events_(\d+)d", "events"),
    (r"texts_(\d+)d", "texts written"),
    (r"text_score_mean_(\d+)d", "average tone of the texts (-1 negative, 1 positive)"),
    (r"text_negative_share_(\d+)d", "share of negative texts"),
    (r"text_topic_(\d+)_count_(\d+)d", "texts about {T}"),
    (r"contacts_(\d+)d", "contacts with customer service"),
    (r"unresolved_contacts_(\d+)d", "unresolved contacts"),
    (r"resolution_rate_(\d+)d", "share of contacts resolved"),
    (r"contact_minutes_(\d+)d", "minutes in contact with customer service"),
    (r"complaints_(\d+)d", "complaints"),
    (r"revenue_(\d+)d", "revenue"),
    (r"purchases_(\d+)d", "purchases"),
    (r"purchase_days_(\d+)d", "days with a purchase"),
    (r"exposures_(\d+)d", "actions received"),
    (r"channel_(.+)_count_(\d+)d", "events via {0}"),
    (r"(.+)_value_sum_(\d+)d", "total {0} value"),
    (r"(.+)_value_mean_(\d+)d", "average {0} value"),
    (r"(.+)_exposures_(\d+)d", "times given {0}"),
    (r"(.+)_mean_(\d+)d", "average {S} answer"),
    (r"(.+)_count_(\d+)d", "{0} events"),
]
_FIXED = {
    "days_since_first_event": "days since the first recorded event",
    "days_since_first_purchase": "days since the first purchase",
    "days_since_last_event": "days since the last event",
    "days_since_last_exposure": "days since the last action",
    "days_since_last_text": "days since the last text",
    "days_since_last_negative_text": "days since the last negative text",
    "text_score_last": "tone of the last text (-1 negative, 1 positive)",
}
_PLAIN = [
    (
        r"days_since_last_offer_(shown|accepted|declined|ignored)_(.+)",
        "days since {1} was last {0}",
    ),
    (r"(.+)_last", "last {S} answer"),
    (r"(.+)_prev", "previous {S} answer"),
    (r"(.+)_trend", "change between the last two {S} answers"),
    (r"(.+)_mean_all", "average {S} answer ever given"),
    (r"(.+)_answers", "number of {S} answers given"),
    (r"days_since_last_(.+)", "days since the last {0}"),
    (r"days_since_(.+)", "days since {0}"),
]


def _describe(name: str, topic_terms: list[list[str]]) -> str:
    """Human text of one feature name, from its pattern (a text topic by its top terms)."""
    if name in _FIXED:
        return _FIXED[name]
    for pattern, text in _WINDOWED:
        m = re.fullmatch(pattern, name)
        if m:
            days = int(m.groups()[-1])
            labels = [g.replace("_", " ") for g in m.groups()[:-1]] or [""]
            label = labels[0]
            what = text.format(*labels, S=label.upper(), T=_topic(label, topic_terms))
            return f"{what} in the last {'day' if days == 1 else f'{days} days'}"
    for pattern, text in _PLAIN:
        m = re.fullmatch(pattern, name)
        if m:
            labels = [g.replace("_", " ") for g in m.groups()]
            return text.format(*labels, S=labels[0].upper())
    return name.replace("_", " ")


def _topic(label: str, topic_terms: list[list[str]]) -> str:
    """A text topic by its first three terms, or by its number when they are not known."""
    if label.isdigit() and int(label) < len(topic_terms):
        return ", ".join(topic_terms[int(label)][:3])
    return f"topic {label}"


def feature_descriptions(
    names: Iterable[str], topic_terms: list[list[str]] | None = None
) -> dict[str, str]:
    """Agent-facing text for feature names, e.g. complaints_30d -> "complaints in the last 30 days";
    text topics are named by their top terms (`FeatureBuilder.topic_terms_`) when given."""
    return {name: _describe(name, topic_terms or []) for name in names}


def to_matrix(frame: pd.DataFrame, names: list[str]) -> np.ndarray:
    """The float32 model matrix of `names`: numbers as they are, categoricals as codes (NaN if
    missing). LightGBM reads the codes as categorical features, so training, batch and online all
    predict from plain numpy with no pandas on the hot path."""
    out = np.empty((len(frame), len(names)), dtype=np.float32)
    for j, name in enumerate(names):
        col = frame[name]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = col.cat.codes.to_numpy().astype(np.float32)
            codes[codes < 0] = np.nan
            out[:, j] = codes
        else:
            out[:, j] = col.to_numpy(dtype=np.float32, na_value=np.nan)
    return out


def categorical_names(frame: pd.DataFrame, names: list[str]) -> list[str]:
    """The features of `names` that are categorical in `frame`."""
    return [n for n in names if isinstance(frame[n].dtype, pd.CategoricalDtype)]
