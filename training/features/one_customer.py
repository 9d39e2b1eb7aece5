"""THE feature definition evaluated for ONE customer in numpy and Python, without DuckDB.

`OneCustomer` compiles a fitted FeatureBuilder's specs once and then computes one customer's
feature vector from their own `customers` row, `events` and `exposures` (Arrow tables in the
contract's typed form) as of one time, step for step as `FeatureBuilder.transform` does: the same
integer-microsecond ages and window buckets, the same per (code, bucket) aggregates, the same
float32 casts. The tables are read once into numpy columns (`encode`,
training.features.one_customer_columns), from which `row_of` computes a row as of any time, and
to which `extend` adds posted events without reading the tables again. The online service uses
it at decision time, where ~50 DuckDB queries per request cost far more than the arithmetic;
DuckDB stays the reference (tests/training/features).

Text features score the customer's texts with the bundle's text model, as the reference scores
them, and aggregate them by topic and window. Inputs the reference would read differently (other
column types, a non-finite value, not exactly one customers row) and a cross-fitted text model
(training's: a text's score depends on its writer's fold) are refused by `unsupported`, so that the
caller runs the reference instead.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from training.features import sql as fs
from training.features.definition import AsOf, FeatureBuilder, to_timestamp
from training.features.one_customer_columns import (
    Columns,
    Encoded,
    PostedEvent,
    Vocabularies,
    customer_of,
    event_columns,
    exposure_columns,
    posted_columns,
)
from training.features.one_customer_plan import NO_AGE, ages_as_days, compile_plan

_TS = pa.timestamp("us")
_TEXT = (pa.string(),)
_TEXT_SOURCES = ("texts", "text_last")
TEXT_SCORES_KEPT = 100_000  # texts whose scores one OneCustomer keeps
SCHEMAS_KEPT = 64  # input schemas whose type checks one OneCustomer keeps


@dataclass(frozen=True)
class OneRow:
    """One customer's features: the model vector (`to_matrix` form: categoricals as codes, NaN
    when missing) and the text of each categorical feature (None when missing).

    How the row moves with the clock: every feature is either fixed or a number of days since a
    fixed instant (`since`), as long as the as-of time stays inside `valid`, the span between two
    instants where something else changes (a row of the customer enters the past, a window or a
    day bucket, an attribute's date passes). `at` gives the row as of another instant in it."""

    vector: np.ndarray  # (p,) float32 in feature_names_ order
    categories: dict[str, str | None]
    now: int = 0  # the as-of time (us since the epoch)
    since: dict[int, int] = field(default_factory=dict)  # feature index -> instant (us)
    valid: tuple[int, int] = (0, 0)  # [first, end) instants (us) where the row is `at` anything

    def at(self, now: int) -> OneRow | None:
        """This row as of `now` (us since the epoch), equal bit for bit to what `row` computes
        then; None when `now` is outside `valid`."""
        first, end = self.valid
        if not first <= now < end:
            return None
        if now == self.now:
            return self
        vector = self.vector.copy()
        for j, instant in self.since.items():
            vector[j] = _days(now - instant)
        return OneRow(vector, self.categories, now, self.since, self.valid)


@dataclass(frozen=True)
class _Agg:
    """Per (code, bucket) aggregates of one source for one customer: counts flat (code * buckets
    + bucket) and cumulative over buckets, as the plan gathers them; value sums per bucket."""

    n: np.ndarray  # counts
    nd: np.ndarray  # distinct days (day k: ages in (k, k + 1] days)
    nrt: np.ndarray  # resolved
    nrf: np.ndarray  # unresolved
    sv: list[list[float]]  # value sums per bucket (not cumulative: multi-code sums add first)
    nv: list[list[float]]  # cumulative counts of values
    amin: np.ndarray  # per code: smallest age (us); NO_AGE: none
    amax_neg: np.ndarray  # per code: largest age (us), negated; NO_AGE: none


class _Age(int):
    """An age in microseconds that a feature reads as days (the feature moves with the clock)."""


def _days(age_us: int | None) -> float:
    """Fractional days as the SQL computes them: a double division, then float32."""
    return float("nan") if age_us is None else float(np.float32(age_us / fs.DAY_US))


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


class OneCustomer:
    """A fitted builder's specs, compiled to compute one customer's row at a time."""

    def __init__(self, builder: FeatureBuilder) -> None:
        builder._check_fitted()
        d = builder.definition_
        self.definition = d
        self.specs = list(builder.specs_)
        self.names = list(builder.feature_names_)
        self.text_model = builder.text_model_
        self.has_text = any(s.source in _TEXT_SOURCES for s in self.specs)
        self._scored: dict[str, tuple[float, bool, int]] = {}  # text -> its scores (_text_scores)
        self._scored_lock = threading.Lock()
        self._schema_checks: dict[tuple[pa.Schema, ...], str | None] = {}  # `unsupported` types
        self._words = Vocabularies(
            *(
                pa.array(v, pa.string())
                for v in (d.type_codes, d.channels, d.survey_types, d.actions)
            )
        )
        self._event_edges = np.array([w * fs.DAY_US for w in d.windows], dtype=np.int64)
        self._exposure_edges = np.array(
            [w * fs.DAY_US for w in fs.EXPOSURE_WINDOWS], dtype=np.int64
        )
        self._longest = max(*d.windows, *fs.EXPOSURE_WINDOWS, fs.SURVEY_MEAN_DAYS)  # days
        n_codes = {
            "events": len(d.type_codes) + 1,
            "channels": len(d.channels) + 1,
            "exposures": len(d.actions) + 1,
        }
        # per spec, the codes it aggregates (all of its source's for select None)
        self._codes = [
            tuple(range(n_codes[s.source]))
            if s.select is None and s.source in n_codes
            else s.select
            for s in self.specs
        ]
        n_codes["texts"] = d.text_topics + 1
        n_buckets = {source: len(d.windows) + 1 for source in n_codes}
        n_buckets["exposures"] = len(fs.EXPOSURE_WINDOWS) + 1
        self._plan = compile_plan(self.specs, self._codes, n_codes, n_buckets)
        gathered = {j for plan in self._plan.values() for j in plan.columns()}
        self._one_by_one = [j for j in range(len(self.specs)) if j not in gathered]

    # --------------------------------------------------------------------------- eligibility
    def unsupported(
        self, customers: pa.Table, events: pa.Table, exposures: pa.Table | None
    ) -> str | None:
        """Why these inputs need the DuckDB reference (None: this path computes them exactly)."""
        if self.has_text and (self.text_model is None or self.text_model.per_customer):
            return "text features of a cross-fitted text model are computed by the reference"
        if customers.num_rows != 1 or _type(customers, "customer_id") not in _TEXT:
            return "not exactly one customers row with a text customer_id"
        if customers.column("customer_id").null_count:
            return "the customers row has no customer_id"
        schemas = (customers.schema, events.schema, None if exposures is None else exposures.schema)
        if schemas not in self._schema_checks:  # every request of a store has the same schemas
            if len(self._schema_checks) > SCHEMAS_KEPT:
                self._schema_checks.clear()
            self._schema_checks[schemas] = self._unsupported_types(customers, events, exposures)
        if self._schema_checks[schemas] is not None:
            return self._schema_checks[schemas]
        values = events.column("value")
        if values.length() - values.null_count and not pc.all(pc.is_finite(values)).as_py():
            return "events.value: a non-finite value"
        return None

    def _unsupported_types(
        self, customers: pa.Table, events: pa.Table, exposures: pa.Table | None
    ) -> str | None:
        """Why the columns' types need the reference (None: this path reads them exactly)."""
        d = self.definition
        for s in d.static:
            kind = _type(customers, s.column)
            if kind is None or not _static_ok(s.kind, kind):
                return f"customers.{s.column}: type {kind} for a {s.kind} attribute"
        wanted = {"customer_id": _TEXT, "ts": (_TS,), "channel": _TEXT, "event_type": _TEXT}
        wanted["value"] = (pa.float64(),)
        if d.has_resolved:
            wanted[d.resolved_column] = (pa.bool_(),)
        if self.has_text and "text" in events.column_names:
            wanted["text"] = _TEXT
        for column, types in wanted.items():
            if _type(events, column) not in types:
                return f"events.{column}: type {_type(events, column)}"
        if exposures is not None and _has_exposures(exposures):
            for column, types in (("customer_id", _TEXT), ("ts", (_TS,)), ("action_id", _TEXT)):
                if _type(exposures, column) not in types:
                    return f"exposures.{column}: type {_type(exposures, column)}"
        return None

    # ------------------------------------------------------------------------------- the row
    def row(
        self, customers: pa.Table, events: pa.Table, exposures: pa.Table | None, as_of: AsOf
    ) -> OneRow:
        """The customer's features as of `as_of` (inputs for which `unsupported` is None)."""
        return self.row_of(self.encode(customers, events, exposures), instant(as_of))

    def encode(self, customers: pa.Table, events: pa.Table, exposures: pa.Table | None) -> Encoded:
        """The customer's journey in the columns `row_of` reads (inputs for which
        `unsupported` is None): the tables are read once, for rows as of any time."""
        customer = str(customers.column("customer_id")[0].as_py())
        ex = None
        if exposures is not None and _has_exposures(exposures):
            ex = exposure_columns(exposures, customer, self._words)
        d = self.definition
        resolved = d.resolved_column if d.has_resolved else None
        scores = self._text_scores if self.has_text else None
        stored = event_columns(events, customer, self._words, resolved, scores)
        return Encoded(customer, customer_of(customers, d.static), stored, ex)

    def extend(self, journey: Encoded, events: Sequence[PostedEvent]) -> Encoded | None:
        """`journey` with posted events of its customer added (their rows alone are read); None
        when the path refuses one (a value that is not finite: the reference reads them)."""
        scores = self._text_scores if self.has_text else None
        more = posted_columns(events, self._words, journey.stored, scores)
        return None if more is None else journey.extend(more)

    def row_of(self, journey: Encoded, now: int) -> OneRow:
        """The customer's features as of `now` (us since the epoch) from their journey."""
        statics = self._static(journey, now)
        ev = _Seen.of(journey.events, now)
        aggs: dict[str, _Agg | None] = {
            "events": self._by_code(ev, "type", self._event_edges, len(self._words.types)),
            "channels": self._by_code(ev, "channel", self._event_edges, len(self._words.channels)),
            "exposures": None,
        }
        ex = None
        if journey.exposures is not None:
            ex = _Seen.of(journey.exposures, now)
            aggs["exposures"] = self._by_code(
                ex, "action", self._exposure_edges, len(self._words.actions)
            )
        surveys = self._survey_stats(ev) if self.definition.survey_types else None
        texts = self._texts(ev) if self.has_text else None
        out = np.full(len(self.specs), np.nan)
        since: dict[int, int] = {}
        for j in self._one_by_one:
            spec, codes = self.specs[j], self._codes[j]
            if spec.source == "static":
                value = statics[spec.column]
            elif spec.source == "missing":
                value = float("nan")
            elif spec.source == "surveys":
                value = _survey_value(spec, surveys)
            elif spec.source in _TEXT_SOURCES:
                value = _text_value(spec, texts)
            else:
                value = _value(spec, aggs[spec.source], codes or ())
            if isinstance(value, _Age):
                since[j] = now - value
                value = _days(value)
            out[j] = value
        text_counts = None if texts is None else texts.n
        for source, agg in (*aggs.items(), ("texts", text_counts)):
            self._gather(out, since, source, agg, now)
        valid = self._valid(journey, now)
        return OneRow(out.astype(np.float32), journey.customer.categories, now, since, valid)

    def _gather(
        self,
        out: np.ndarray,
        since: dict[int, int],
        source: str,
        agg: _Agg | np.ndarray | None,
        now: int,
    ) -> None:
        """Write the source's planned features into `out` (texts: `agg` is the text counts)."""
        plan = self._plan[source]
        for counted, gather in plan.counted.items():
            if len(gather.columns):
                if agg is None:  # no input: counts of rows and days are 0, the others missing
                    out[gather.columns] = 0.0 if counted in ("n", "nd") else np.nan
                else:
                    flat = agg if isinstance(agg, np.ndarray) else getattr(agg, counted)
                    out[gather.columns] = gather.sums(flat)
        if not isinstance(agg, _Agg):
            return  # texts: counts only; an absent source: nothing else is known
        if plan.rate is not None and len(plan.rate.columns):
            done, undone = plan.rate.sums(agg.nrt), plan.rate.sums(agg.nrf)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[plan.rate.columns] = np.where(done + undone > 0, done / (done + undone), np.nan)
        for extreme, ages, sign in ((plan.last, agg.amin, 1), (plan.first, agg.amax_neg, -1)):
            if extreme is not None:
                found = extreme.smallest(ages)
                age = np.where(found == NO_AGE, NO_AGE, sign * found)
                out[extreme.columns] = ages_as_days(age)
                since.update((int(j), now - int(a)) for j, a in zip(extreme.columns, age, strict=True)
                             if a != NO_AGE)  # fmt: skip

    def _valid(self, journey: Encoded, now: int) -> tuple[int, int]:
        """[first, end): the span around `now` in which no row of the customer crosses an
        instant where a feature changes other than by the passing of days: a row's time plus 1 us
        (it enters the past) plus k whole days (it enters day bucket k, or leaves a k-day window),
        for k up to the longest window; and the instant of each date attribute (its age becomes
        non-negative)."""
        sources = [journey.events] + ([journey.exposures] if journey.exposures is not None else [])
        ts = np.concatenate([rows.ts for rows in sources]) + 1
        dates = [d for d in journey.customer.dates.values() if d is not None]
        return _span(ts, self._longest, np.array(dates, dtype=np.int64), now)

    def _static(self, journey: Encoded, now: int) -> dict[str, float]:
        """The attributes as floats (categoricals as codes), date attributes as their ages."""
        values = dict(journey.customer.values)
        for column, instant_us in journey.customer.dates.items():
            age = None if instant_us is None else now - instant_us
            values[column] = _Age(age) if age is not None and age >= 0 else float("nan")
        return values

    def _by_code(self, seen: _Seen, coded: str, edges: np.ndarray, n_words: int) -> _Agg:
        """One source's aggregates by the vocabulary codes of column `coded` (resolved counts:
        of event types only, the one source whose rates the definition reads)."""
        resolved = self.definition.has_resolved and coded == "type"
        return _aggregate(seen, seen.rows.data[coded], edges, n_words + 1, resolved)

    def _texts(self, ev: _Seen) -> _Texts | None:
        """The customer's scored texts (non-blank ones) aggregated per topic code (topic + 1; 0:
        none) and window; None without a text column (then no text is counted and nothing else
        is known)."""
        if "scored" not in ev.rows.data:
            return None
        rows = ev.rows.data["scored"]
        polarity = ev.rows.data["polarity"][rows]
        negative = ev.rows.data["negative"][rows]
        codes = ev.rows.data["topic"][rows]
        age = ev.age[rows]
        edges, n_codes = self._event_edges, self.definition.text_topics + 1
        n_buckets = len(edges) + 1
        bucket = np.searchsorted(edges, age, side="left")  # smallest window with age <= w

        def cum(flat: np.ndarray, size: int, weights: np.ndarray | None = None) -> np.ndarray:
            sums = np.bincount(flat, weights=weights, minlength=size).astype(np.float64)
            return np.cumsum(sums.reshape(-1, n_buckets), axis=1)

        in_order = np.lexsort((polarity, age))  # the last text: ties on age to the lower tone
        return _Texts(
            n=cum(codes * n_buckets + bucket, n_codes * n_buckets).ravel(),
            total=cum(bucket, n_buckets)[0].tolist(),
            tone=cum(bucket, n_buckets, polarity.astype(np.float64))[0].tolist(),
            negatives=cum(bucket, n_buckets, negative.astype(np.float64))[0].tolist(),
            last=_Age(int(age.min())) if len(age) else float("nan"),
            last_negative=_Age(int(age[negative].min())) if negative.any() else float("nan"),
            last_tone=float(polarity[in_order[0]]) if len(age) else float("nan"),
        )

    def _text_scores(self, texts: list[str]) -> dict[str, tuple[float, bool, int]]:
        """(polarity, negative, topic) of each text. A text's score depends on the text alone, so
        scores are kept (the oldest forgotten first beyond TEXT_SCORES_KEPT): a customer's journey
        is scored once, not on every decision, and each new text when it first comes."""
        assert self.text_model is not None  # has_text
        with self._scored_lock:
            known = {t: self._scored[t] for t in texts if t in self._scored}
        new = [t for t in texts if t not in known]
        if new:
            scores = self.text_model.score(new)
            found = zip(scores.polarity.tolist(), scores.negative.tolist(), scores.topic.tolist(),
                        strict=True)  # fmt: skip
            known |= dict(zip(new, found, strict=True))
            self.remember(new, [known[t] for t in new])
        return known

    def remember(self, texts: list[str], scores: list[tuple[float, bool, int]]) -> None:
        """Keep scores this text model gave to these texts earlier (e.g. stored with a journey),
        so that `row` need not score them again."""
        with self._scored_lock:
            self._scored.update(zip(texts, scores, strict=True))
            while len(self._scored) > TEXT_SCORES_KEPT:
                del self._scored[next(iter(self._scored))]

    def _survey_stats(self, ev: _Seen) -> list[dict[str, float]]:
        """Per survey type: last, prev, mean (365 days), amin, mean_all, n_all (NaN: none)."""
        codes, v, valid = (ev.rows.data[name] for name in ("survey", "value", "valid"))
        out = []
        for q in range(len(self._words.surveys)):
            mask = (codes == q) & valid
            answers = sorted(zip(ev.age[mask].tolist(), v[mask].tolist(), strict=True))
            year = [x for age, x in answers if age <= fs.SURVEY_MEAN_DAYS * fs.DAY_US]
            nan = float("nan")
            out.append(
                {
                    "last": answers[0][1] if answers else nan,
                    "prev": answers[1][1] if len(answers) > 1 else nan,
                    "mean": _mean(year),
                    "amin": _Age(answers[0][0]) if answers else nan,
                    "mean_all": _mean([x for _, x in answers]),
                    "n_all": float(len(answers)),
                }
            )
        return out


@dataclass(frozen=True)
class _Seen:
    """The rows of one source strictly before the as-of time, with their ages (us)."""

    rows: Columns
    age: np.ndarray  # int64

    @classmethod
    def of(cls, columns: Columns, now: int) -> _Seen:
        before = columns.ts < now
        rows = columns if before.all() else columns.take(before)
        return cls(rows, now - rows.ts)


@dataclass(frozen=True)
class _Texts:
    """One customer's scored texts before the as-of time, aggregated as `definition` reads them:
    cumulative over window buckets, per topic code and over all texts (tone: float32 polarities
    summed in float64, exact for any order of a customer's few texts)."""

    n: np.ndarray  # texts per (topic code, window), flat (code * buckets + window)
    total: list[float]  # texts per window
    tone: list[float]  # polarity sums per window
    negatives: list[float]  # negative texts per window
    last: float  # days since the last text (NaN: none)
    last_negative: float  # days since the last negative text (NaN: none)
    last_tone: float  # polarity of the last text, ties on time broken on the lower (NaN: none)


def _text_value(spec: fs.Spec, texts: _Texts | None) -> float:
    """One text feature other than a count (the plan gathers those), as
    `definition._text_column` computes it from the texts' aggregates."""
    nan, stat, w = float("nan"), spec.stat, spec.window
    if texts is None:  # no text column: nothing is known
        return nan
    if stat == "last":
        return texts.last
    if stat == "negative_age":
        return texts.last_negative
    if stat == "score_last":
        return texts.last_tone
    if stat == "score_mean":
        return _ratio(texts.tone[w], texts.total[w])
    if stat == "negative_share":
        return _ratio(texts.negatives[w], texts.total[w])
    raise ValueError(f"unknown text statistic {stat}")


def instant(as_of: AsOf) -> int:
    """An as-of time in microseconds since the epoch (the reference's timestamp literal keeps
    microseconds)."""
    return int(to_timestamp(as_of).value // 1000)


def _type(table: pa.Table, column: str) -> pa.DataType | None:
    return table.schema.field(column).type if column in table.column_names else None


def _static_ok(kind: str, arrow: pa.DataType) -> bool:
    """Arrow types whose SQL cast this module reproduces for an attribute kind."""
    if kind == "numeric":
        return pa.types.is_integer(arrow) or pa.types.is_floating(arrow)
    if kind == "bool":
        return pa.types.is_boolean(arrow)
    if kind == "date":
        return pa.types.is_date32(arrow) or arrow == _TS
    return arrow in _TEXT


def _has_exposures(exposures: pa.Table) -> bool:
    return all(c in exposures.column_names for c in ("customer_id", "ts", "action_id"))


def _span(starts: np.ndarray, days: int, dates: np.ndarray, now: int) -> tuple[int, int]:
    """[first, end) around `now` free of the instants `starts + k days` (0 <= k <= `days`) and
    `dates`."""
    first, end = np.iinfo(np.int64).min, np.iinfo(np.int64).max
    past = now - starts  # >= 0: the row's first instant has come
    k = np.minimum(np.floor_divide(past, fs.DAY_US), days)  # the last instant's k, for past >= 0
    came = past >= 0
    if came.any():
        first = int((starts[came] + k[came] * fs.DAY_US).max())
    upcoming = np.where(came, starts + (k + 1) * fs.DAY_US, starts)
    upcoming = upcoming[~came | (k < days)]
    if len(upcoming):
        end = int(upcoming.min())
    if len(dates):
        first = max(first, int(dates[dates <= now].max(initial=first)))
        end = min(end, int(dates[dates > now].min(initial=end)))
    return first, end


def _aggregate(
    seen: _Seen, codes: np.ndarray, edges: np.ndarray, n_codes: int, resolved: bool
) -> _Agg:
    """Counts, value sums and resolved counts per (code, window bucket); ages per code."""
    n_buckets = len(edges) + 1
    bucket = np.searchsorted(edges, seen.age, side="left")  # smallest window with age <= w
    flat = codes * n_buckets + bucket
    size = n_codes * n_buckets

    def per(weights: np.ndarray | None) -> np.ndarray:
        return np.bincount(flat, weights=weights, minlength=size).reshape(n_codes, n_buckets)

    def cum(weights: np.ndarray | None) -> np.ndarray:
        return np.cumsum(per(weights).astype(np.float64), axis=1).ravel()

    zeros = np.zeros(size)
    sv, nv, nrt, nrf = [[0.0] * n_buckets] * n_codes, [[0.0] * n_buckets] * n_codes, zeros, zeros
    data = seen.rows.data
    if "value" in data:
        sv = per(data["value"]).tolist()
        nv = cum(data["valid"].astype(np.float64)).reshape(n_codes, n_buckets).tolist()
    if resolved:
        nrt, nrf = cum(data["done"]), cum(data["undone"])
    amin = np.full(n_codes, NO_AGE, dtype=np.int64)
    amax_neg = np.full(n_codes, NO_AGE, dtype=np.int64)
    np.minimum.at(amin, codes, seen.age)
    np.minimum.at(amax_neg, codes, -seen.age)
    day = (seen.age - 1) // fs.DAY_US  # ages are >= 1 us: the rows are before the as-of time
    span = int(day.max()) + 1 if len(day) else 1
    distinct = np.unique(flat * span + day) // span  # one per (code, bucket, day)
    nd = np.cumsum(
        np.bincount(distinct, minlength=size).reshape(n_codes, n_buckets).astype(np.float64), axis=1
    ).ravel()
    return _Agg(cum(None), nd, nrt, nrf, sv, nv, amin, amax_neg)


def _value(spec: fs.Spec, agg: _Agg | None, codes: Sequence[int]) -> float:
    """One events / channels / exposures value sum or mean (the plan gathers the others)."""
    if agg is None:  # the source's input does not exist
        return float("nan")
    total = _cum_sum(agg.sv, codes, spec.window)
    if spec.stat == "sum":
        return total
    if spec.stat == "mean":
        return _ratio(total, sum(agg.nv[c][spec.window] for c in codes))
    raise ValueError(f"unknown feature statistic {spec.source}.{spec.stat}")


def _cum_sum(per_bucket: list[list[float]], codes: Sequence[int], window: int) -> float:
    """Sum over the codes per bucket (in select order), then cumulative over buckets, as the
    reference adds them (so float sums round the same way)."""
    total = 0.0
    for b in range(window + 1):
        bucket = 0.0
        for c in codes:
            bucket += per_bucket[c][b]
        total = bucket if b == 0 else total + bucket
    return total


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _survey_value(spec: fs.Spec, surveys: list[dict[str, float]] | None) -> float:
    """One survey feature of its survey type (select holds the survey's index)."""
    nan = float("nan")
    if surveys is None:
        return 0.0 if spec.stat == "count" else nan
    assert spec.select is not None
    stats = surveys[spec.select[0]]
    if spec.stat == "trend":
        return float(np.float32(stats["last"]) - np.float32(stats["prev"]))
    if spec.stat == "n_all":
        return stats["n_all"]
    return stats[{"age": "amin"}.get(spec.stat, spec.stat)]
