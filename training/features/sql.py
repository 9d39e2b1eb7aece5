"""The feature definition as data (specs and names) and the DuckDB SQL that aggregates its inputs.

Each query is ONE narrow ``GROUP BY`` pass: events are grouped by (spine row, event-type code,
window bucket), channels by (row, channel code, bucket), survey answers by (row, survey), exposures
by (row, action code, bucket), scored texts by (row, topic code, bucket). Ages are integer microseconds before the row's as-of time, so a window
test is exact: an event is inside the ``w``-day window when ``0 < as_of - ts <= w days``.
`training.features.definition` turns these small tables into the feature columns with vectorised numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

DAY_US = 86_400_000_000
EXPOSURE_WINDOWS = (90, 365)
SURVEY_MEAN_DAYS = 365
MEAN_MIN_WINDOW = 90


def quote_ident(name: str) -> str:
    """A DuckDB identifier in double quotes, embedded quotes doubled."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """A DuckDB string literal in single quotes, embedded quotes doubled."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class StaticColumn:
    """A customers attribute: its source column, feature name, kind and (categorical) categories."""

    column: str
    name: str
    kind: str  # numeric | bool | categorical | date
    categories: tuple[str, ...] = ()


@dataclass(frozen=True)
class Definition:
    """Everything the features depend on: the relevant settings plus the fitted vocabularies."""

    windows: tuple[int, ...]  # sorted, unique
    event_types: tuple[str, ...]
    value_types: tuple[str, ...]
    channels: tuple[str, ...]
    actions: tuple[str, ...]
    static: tuple[StaticColumn, ...]
    contact_types: tuple[str, ...]
    complaint_types: tuple[str, ...]
    purchase_type: str
    survey_types: tuple[str, ...]
    has_resolved: bool
    resolved_column: str
    text_topics: int = -1  # topics of the text model; -1: no text model, no text features

    @property
    def type_codes(self) -> tuple[str, ...]:
        """Event types with their own code: the fitted ones, then CX types not among them."""
        cx = (*self.contact_types, *self.complaint_types, self.purchase_type)
        extra = [t for t in dict.fromkeys(cx) if t not in self.event_types]
        return (*self.event_types, *extra)

    def codes(self, types: Sequence[str]) -> tuple[int, ...]:
        """Codes of some event types (all of which are in `type_codes`)."""
        return tuple(self.type_codes.index(t) for t in dict.fromkeys(types))


@dataclass(frozen=True)
class Spec:
    """One feature column: where it comes from and which statistic it is.

    `select` holds the codes of the rows it aggregates (None: all rows); `window` indexes the
    source's windows (`Definition.windows`, or `EXPOSURE_WINDOWS` for exposures).
    """

    name: str
    source: str  # static | events | channels | surveys | exposures | texts | text_last | missing
    stat: str
    select: tuple[int, ...] | None = None
    window: int = -1
    column: str = ""


@dataclass
class Specs:
    """Ordered, uniquely named specs. A vocabulary-derived name never takes a documented fixed name:
    an `optional` duplicate (days_since_last_<t> of the purchase type) is dropped, any other clash
    gets a ``_2`` suffix."""

    reserved: frozenset[str] = frozenset()
    items: list[Spec] = field(default_factory=list)
    fixed: list[str] = field(default_factory=list)

    def add(self, spec: Spec, *, fixed: bool = False, optional: bool = False) -> None:
        """Append a spec under a unique name."""
        taken = set(self.fixed) if fixed else {s.name for s in self.items} | self.reserved
        if optional and spec.name in taken:
            return
        name, i = spec.name, 2
        while name in taken:
            name, i = f"{spec.name}_{i}", i + 1
        self.items.append(Spec(name, spec.source, spec.stat, spec.select, spec.window, spec.column))
        if fixed:
            self.fixed.append(name)


def _static(out: Specs, d: Definition) -> None:
    for s in d.static:
        stat = "category" if s.kind == "categorical" else s.kind
        out.add(Spec(s.name, "static", stat, column=s.column))


def _activity(out: Specs, d: Definition, names: dict[str, str]) -> None:
    """All events, then per fitted type and per fitted channel."""
    out.add(Spec("days_since_first_event", "events", "first"), fixed=True)
    out.add(Spec("days_since_last_event", "events", "last"), fixed=True)
    for j, w in enumerate(d.windows):
        out.add(Spec(f"events_{w}d", "events", "count", None, j), fixed=True)
    for t in d.event_types:
        code, name = d.codes([t]), names[f"type:{t}"]
        for j, w in enumerate(d.windows):
            out.add(Spec(f"{name}_count_{w}d", "events", "count", code, j))
        out.add(Spec(f"days_since_last_{name}", "events", "last", code), optional=True)
        if t in d.value_types:
            for j, w in enumerate(d.windows):
                out.add(Spec(f"{name}_value_sum_{w}d", "events", "sum", code, j))
            for j, w in enumerate(d.windows):
                if w >= MEAN_MIN_WINDOW:
                    out.add(Spec(f"{name}_value_mean_{w}d", "events", "mean", code, j))
    for k, c in enumerate(d.channels):
        for j, w in enumerate(d.windows):
            out.add(
                Spec(f"channel_{names[f'channel:{c}']}_count_{w}d", "channels", "count", (k,), j)
            )


def _cx(out: Specs, d: Definition) -> None:
    """The contact-centre block: fixed names, present even when the event types are absent."""
    contacts, complaints = d.codes(d.contact_types), d.codes(d.complaint_types)
    purchases = d.codes([d.purchase_type])
    resolved = "events" if d.has_resolved else "missing"
    for j, w in enumerate(d.windows):
        out.add(Spec(f"contacts_{w}d", "events", "count", contacts, j), fixed=True)
        out.add(Spec(f"unresolved_contacts_{w}d", resolved, "unresolved", contacts, j), fixed=True)
        out.add(Spec(f"resolution_rate_{w}d", resolved, "rate", contacts, j), fixed=True)
        out.add(Spec(f"contact_minutes_{w}d", "events", "sum", contacts, j), fixed=True)
    for j, w in enumerate(d.windows):
        out.add(Spec(f"complaints_{w}d", "events", "count", complaints, j), fixed=True)
    out.add(Spec("days_since_last_complaint", "events", "last", complaints), fixed=True)
    for j, w in enumerate(d.windows):
        out.add(Spec(f"revenue_{w}d", "events", "sum", purchases, j), fixed=True)
        out.add(Spec(f"purchases_{w}d", "events", "count", purchases, j), fixed=True)
        out.add(Spec(f"purchase_days_{w}d", "events", "days", purchases, j), fixed=True)
    out.add(Spec("days_since_last_purchase", "events", "last", purchases), fixed=True)
    out.add(Spec("days_since_first_purchase", "events", "first", purchases), fixed=True)


def _surveys(out: Specs, d: Definition, names: dict[str, str]) -> None:
    for q, s in enumerate(d.survey_types):
        name = names[f"survey:{s}"]
        for suffix, stat in (("last", "last"), ("prev", "prev"), ("trend", "trend")):
            out.add(Spec(f"{name}_{suffix}", "surveys", stat, (q,)), fixed=True)
        out.add(Spec(f"{name}_mean_{SURVEY_MEAN_DAYS}d", "surveys", "mean", (q,)), fixed=True)
        # the whole history estimates a customer's lasting satisfaction better than one year
        out.add(Spec(f"{name}_mean_all", "surveys", "mean_all", (q,)), fixed=True)
        out.add(Spec(f"{name}_answers", "surveys", "n_all", (q,)), fixed=True)
        out.add(Spec(f"days_since_last_{name}", "surveys", "age", (q,)), fixed=True)


def _exposures(out: Specs, d: Definition, names: dict[str, str]) -> None:
    for j, w in enumerate(EXPOSURE_WINDOWS):
        out.add(Spec(f"exposures_{w}d", "exposures", "count", None, j), fixed=True)
    out.add(Spec("days_since_last_exposure", "exposures", "last"), fixed=True)
    last = len(EXPOSURE_WINDOWS) - 1
    for k, a in enumerate(d.actions):
        name = names[f"action:{a}"]
        out.add(
            Spec(f"{name}_exposures_{EXPOSURE_WINDOWS[last]}d", "exposures", "count", (k,), last)
        )
        out.add(Spec(f"days_since_{name}", "exposures", "last", (k,)))


def _texts(out: Specs, d: Definition) -> None:
    """The text block (with a text model only): tone, negatives and topics per window."""
    if d.text_topics < 0:
        return
    out.add(Spec("days_since_last_text", "texts", "last"), fixed=True)
    out.add(Spec("text_score_last", "text_last", "score_last"), fixed=True)
    for j, w in enumerate(d.windows):
        out.add(Spec(f"texts_{w}d", "texts", "count", None, j), fixed=True)
        out.add(Spec(f"text_score_mean_{w}d", "texts", "score_mean", None, j), fixed=True)
        out.add(Spec(f"text_negative_share_{w}d", "texts", "negative_share", None, j), fixed=True)
    for k in range(d.text_topics):
        for j, w in enumerate(d.windows):
            out.add(Spec(f"text_topic_{k}_count_{w}d", "texts", "count", (k + 1,), j), fixed=True)
    out.add(Spec("days_since_last_negative_text", "texts", "negative_age"), fixed=True)


def _build(out: Specs, d: Definition, names: dict[str, str]) -> Specs:
    _static(out, d)
    _activity(out, d, names)
    _cx(out, d)
    _surveys(out, d, names)
    _exposures(out, d, names)
    _texts(out, d)
    return out


def specs(d: Definition, names: dict[str, str]) -> list[Spec]:
    """The ordered feature specs of a definition (a first pass collects the fixed names)."""
    reserved = frozenset(_build(Specs(), d, names).fixed)
    return _build(Specs(reserved=reserved), d, names).items


# ----------------------------------------------------------------------------------------- SQL
def _codes(values: Sequence[str], column: str) -> str:
    """CASE mapping a vocabulary to integer codes; anything else (NULL too) -> len(values)."""
    whens = " ".join(f"WHEN {quote_literal(v)} THEN {i}" for i, v in enumerate(values))
    case = f"CASE {column} {whens} ELSE {len(values)} END" if values else str(len(values))
    return f"CAST({case} AS SMALLINT)"


def _bucket(windows: Sequence[int]) -> str:
    """Index of the smallest window holding the row (len(windows) when older than all)."""
    whens = " ".join(f"WHEN age <= {w * DAY_US} THEN {j}" for j, w in enumerate(windows))
    return f"CAST(CASE {whens} ELSE {len(windows)} END AS UTINYINT)"


def _days(expr: str) -> str:
    return f"CAST(({expr}) / {DAY_US}.0 AS FLOAT)"


@dataclass(frozen=True)
class Scope:
    """The spine rows one query covers: spine table, literal bound on ts, customer_id range."""

    spine: str
    bound: str  # a TIMESTAMP literal >= every as_of: lets DuckDB skip row groups
    low: str | None = None  # customer_id >= low
    high: str | None = None  # customer_id < high

    def customers(self, alias: str) -> str:
        """SQL condition restricting `alias`.customer_id to the range."""
        conds = ["true"]
        if self.low is not None:
            conds.append(f"{alias}.customer_id >= {quote_literal(self.low)}")
        if self.high is not None:
            conds.append(f"{alias}.customer_id < {quote_literal(self.high)}")
        return " AND ".join(conds)


def _before(source: str, scope: Scope, where: str = "true") -> str:
    """Rows of `source` (alias e) joined to their spine rows, strictly before the row's as-of."""
    return (
        f"{source} e JOIN {quote_ident(scope.spine)} s ON e.customer_id = s.customer_id "
        f"WHERE e.ts < s.as_of AND e.ts < {scope.bound} AND {where} "
        f"AND {scope.customers('e')} AND {scope.customers('s')}"
    )


def spine_from_customers(table: str, as_of: str) -> str:
    """Spine table of every customer at one as-of literal, rows ordered by customer_id."""
    return (
        f"CREATE TEMP TABLE {quote_ident(table)} AS SELECT "
        f"CAST(row_number() OVER (ORDER BY customer_id) - 1 AS INTEGER) AS i, "
        f"customer_id, {as_of} AS as_of "
        f"FROM (SELECT DISTINCT CAST(customer_id AS VARCHAR) AS customer_id FROM customers "
        "WHERE customer_id IS NOT NULL)"
    )


def spine_from_table(table: str, source: str) -> str:
    """Spine table copied from a (customer_id, as_of) table, rows numbered in its scan order."""
    return (
        f"CREATE TEMP TABLE {quote_ident(table)} AS SELECT "
        f"CAST(row_number() OVER () - 1 AS INTEGER) AS i, CAST(customer_id AS VARCHAR) AS "
        f"customer_id, CAST(as_of AS TIMESTAMP) AS as_of FROM {quote_ident(source)}"
    )


def _aged(source: str, scope: Scope, code: str, extra: str = "", where: str = "true") -> str:
    """Rows of `source` before their as-of: spine row i, age in microseconds, a vocabulary code,
    and `extra` columns (the common inner query of every per-source aggregate)."""
    return (
        f"SELECT s.i, epoch_us(s.as_of) - epoch_us(e.ts) AS age, {code} AS code{extra} "
        f"FROM {_before(source, scope, where)}"
    )


def events_sql(d: Definition, scope: Scope) -> str:
    """Per (row, type code, bucket): count, value sum/count, resolved counts, min/max age in days,
    and for purchases the distinct purchase days (`nd`).

    Day k before the as-of holds the ages (k, k + 1] days: window edges fall between days, so the
    distinct days of the buckets add up to those of a window (calendar days for a midnight as-of).
    """
    resolved = f"e.{quote_ident(d.resolved_column)}" if d.has_resolved else "NULL"
    extra = f", CAST(e.value AS DOUBLE) AS v, CAST({resolved} AS BOOLEAN) AS r"
    rows = _aged("events", scope, _codes(d.type_codes, "e.event_type"), extra)
    purchase = d.codes([d.purchase_type])[0]
    days = f"count(DISTINCT (age - 1) // {DAY_US}) FILTER (WHERE code = {purchase})"
    return (
        f"SELECT i, code, {_bucket(d.windows)} AS b, CAST(count(*) AS INTEGER) AS n, "
        f"sum(v) AS sv, CAST(count(v) AS INTEGER) AS nv, CAST(count_if(r) AS INTEGER) AS nrt, "
        f"CAST(count_if(NOT r) AS INTEGER) AS nrf, {_days('min(age)')} AS amin, "
        f"{_days('max(age)')} AS amax, CAST({days} AS INTEGER) AS nd "
        f"FROM ({rows}) GROUP BY i, code, b"
    )


def channels_sql(d: Definition, scope: Scope) -> str:
    """Per (row, channel code, bucket): event count."""
    rows = _aged("events", scope, _codes(d.channels, "e.channel"))
    return (
        f"SELECT i, code, {_bucket(d.windows)} AS b, CAST(count(*) AS INTEGER) AS n "
        f"FROM ({rows}) GROUP BY i, code, b"
    )


def surveys_sql(d: Definition, scope: Scope) -> str:
    """Per (row, survey): last and previous answer, yearly mean, age of the last answer."""
    types = ", ".join(quote_literal(t) for t in d.survey_types)
    where = f"e.event_type IN ({types}) AND e.value IS NOT NULL"
    code = _codes(d.survey_types, "e.event_type")
    rows = _aged("events", scope, code, ", CAST(e.value AS DOUBLE) AS v", where)
    # equal timestamps break ties on the value, so the answer is deterministic
    grouped = (
        f"SELECT i, code, arg_min(v, struct_pack(a := age, b := v), 2) AS l2, "
        f"avg(v) FILTER (WHERE age <= {SURVEY_MEAN_DAYS * DAY_US}) AS mean, min(age) AS amin, "
        f"avg(v) AS mean_all, CAST(count(*) AS DOUBLE) AS n_all "
        f"FROM ({rows}) GROUP BY i, code"
    )
    return (
        f"SELECT i, code, l2[1] AS last, l2[2] AS prev, mean, {_days('amin')} AS amin, "
        f"mean_all, n_all "
        f"FROM ({grouped})"
    )


def exposures_sql(d: Definition, scope: Scope) -> str:
    """Per (row, action code, exposure bucket): count and min age in days."""
    rows = _aged("exposures", scope, _codes(d.actions, "CAST(e.action_id AS VARCHAR)"))
    return (
        f"SELECT i, code, {_bucket(EXPOSURE_WINDOWS)} AS b, CAST(count(*) AS INTEGER) AS n, "
        f"{_days('min(age)')} AS amin FROM ({rows}) GROUP BY i, code, b"
    )


def texts_sql(d: Definition, scope: Scope, texts: str) -> str:
    """Per (row, topic code, bucket) of the scored texts table: count, polarity sum, negatives,
    min age and min age of a negative in days (inf when none). Topic code 0: no topic."""
    extra = ", e.polarity AS p, e.negative AS neg"
    rows = _aged(quote_ident(texts), scope, "CAST(e.topic + 1 AS SMALLINT)", extra)
    never = "CAST('inf' AS FLOAT)"
    return (
        f"SELECT i, code, {_bucket(d.windows)} AS b, CAST(count(*) AS INTEGER) AS n, "
        f"sum(p) AS ss, CAST(count_if(neg) AS INTEGER) AS nn, {_days('min(age)')} AS amin, "
        f"coalesce({_days('min(age) FILTER (WHERE neg)')}, {never}) AS aneg "
        f"FROM ({rows}) GROUP BY i, code, b"
    )


def text_last_sql(scope: Scope, texts: str) -> str:
    """Per row: the polarity of the latest scored text (ties broken on the polarity)."""
    rows = _aged(quote_ident(texts), scope, "CAST(0 AS SMALLINT)", ", e.polarity AS p")
    return (
        "SELECT i, code, arg_min(p, struct_pack(a := age, b := p)) AS score_last "
        f"FROM ({rows}) GROUP BY i, code"
    )


def _static_expr(s: StaticColumn) -> str:
    col = f"c.{quote_ident(s.column)}"
    if s.kind == "numeric":
        return f"CAST(TRY_CAST({col} AS DOUBLE) AS FLOAT)"
    if s.kind == "bool":
        return f"CAST(TRY_CAST({col} AS BOOLEAN) AS FLOAT)"
    if s.kind == "date":
        age = f"epoch_us(s.as_of) - epoch_us(TRY_CAST({col} AS TIMESTAMP))"
        return f"CASE WHEN {age} >= 0 THEN {_days(age)} END"
    return f"CAST({col} AS VARCHAR)"


def static_sql(d: Definition, spine: str) -> str:
    """customer_id, as_of and the static attributes (``_s<k>``) of every spine row, in row order."""
    cols = ["s.customer_id", "s.as_of"]
    cols += [f"{_static_expr(s)} AS _s{k}" for k, s in enumerate(d.static)]
    join = " LEFT JOIN customers c ON c.customer_id = s.customer_id" if d.static else ""
    return f"SELECT {', '.join(cols)} FROM {quote_ident(spine)} s{join} ORDER BY s.i"
