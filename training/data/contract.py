"""The input data contract (docs/data.md): the one place that reads a data set directory.

Tables are exposed as typed DuckDB views over the files (never loaded into pandas), so the same code
serves a 100-row test set and 80M events; `validate_dataset` checks every rule with a few scans.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
from duckdb.sqltypes import DuckDBPyType

from training.errors import ContractError

TABLES = ("customers", "events", "exposures")
REQUIRED_TABLES = ("customers", "events")
CONTROL_ACTION = "control"
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": ("customer_id",),
    "events": ("customer_id", "ts", "channel", "event_type", "value"),
    "exposures": ("customer_id", "ts", "action_id", "propensity"),
}
# Optional contract columns: checked and typed when present, absent is fine.
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "customers": (),
    "events": ("text",),
    "exposures": (),
}
# The per-event limit on `text` (characters): a whole chat or call note fits, a pasted file does not.
MAX_TEXT_CHARS = 10_000
# What each contract column is, which decides how it is parsed and checked.
_ROLE = {
    "customer_id": "id",
    "ts": "timestamp",
    "channel": "text",
    "event_type": "text",
    "action_id": "text",
    "value": "number",
    "propensity": "number",
    "text": "free_text",
}
_INTEGER = {"tinyint", "smallint", "integer", "bigint", "hugeint"} | {
    "utinyint",
    "usmallint",
    "uinteger",
    "ubigint",
    "uhugeint",
}
_NUMERIC = _INTEGER | {"float", "double", "decimal"}
_TEXT = {"varchar", "enum", "uuid"}
_TEMPORAL = {"date", "timestamp", "timestamp_s", "timestamp_ms", "timestamp_ns"} | {
    "timestamp with time zone"
}
# Raw file types accepted for each role, and how the user is told what was expected.
_ACCEPTED = {
    "id": (_TEXT | _INTEGER, "a string (or integer) id"),
    "timestamp": (
        _TEMPORAL | {"varchar"},
        "a timestamp, a date or a text like 2026-03-01 10:00:00",
    ),
    "text": (_TEXT | _INTEGER | {"boolean"}, "a string"),
    "number": (_NUMERIC | {"varchar"}, "a number"),
    "free_text": (_TEXT | {"null"}, "a string (the event's words), or empty"),
}
_EXPECTED_TS = "expected e.g. 2026-03-01, 2026-03-01 10:00:00 or 2026-03-01T10:00:00"
_CSV_SAMPLE_ROWS = {"customers": -1, "events": 20480, "exposures": 20480}  # -1: sniff whole file
_EXAMPLE_WIDTH = 40


@dataclass(frozen=True)
class Dataset:
    """A data set directory and the file found for each table (None: optional table absent)."""

    root: Path
    files: dict[str, Path | None]

    def connect(
        self, memory_limit: str | None = None, threads: int | None = None
    ) -> duckdb.DuckDBPyConnection:
        """A new in-memory connection with typed views `customers`, `events` and `exposures`.

        Raises ContractError when a file cannot be read, lacks a required column or has a column of
        a type the contract cannot use; row-level rules are checked by `validate_dataset`.
        """
        config: dict[str, Any] = {
            "temp_directory": str(Path(tempfile.gettempdir()) / "nextbest-duckdb"),
        }
        if memory_limit:
            config["memory_limit"] = memory_limit
        if threads:
            config["threads"] = threads
        con = duckdb.connect(":memory:", config=config)
        try:
            con.execute("SET TimeZone = 'UTC'")
            with contextlib.suppress(duckdb.InvalidInputException):
                # inside Jupyter DuckDB refuses to touch this setting without ipywidgets
                con.execute("SET enable_progress_bar = false")
            for table in TABLES:
                _create_views(con, table, self.files[table])
        except BaseException:
            con.close()
            raise
        return con


@dataclass(frozen=True)
class DatasetSummary:
    """What a valid data set holds: the numbers a user checks before training on it."""

    files: dict[str, str | None]
    rows: dict[str, int]
    n_customers: int
    customers_with_events: int
    event_start: datetime | None
    event_end: datetime | None
    event_types: dict[str, int]
    channels: dict[str, int]
    actions: dict[str, int]
    static_columns: dict[str, str] = field(default_factory=dict)  # name -> DuckDB type

    def lines(self, top: int = 12) -> list[str]:
        """Human-readable lines for the command line, longest lists cut to `top` entries."""
        span = "no events"
        if self.event_start is not None:
            span = f"{self.event_start:%Y-%m-%d %H:%M} .. {self.event_end:%Y-%m-%d %H:%M}"
        out = [f"{t}: {self.rows.get(t, 0):,} rows ({self.files[t] or 'absent'})" for t in TABLES]
        out += [
            f"customers: {self.n_customers:,}, with events: {self.customers_with_events:,}",
            f"event time range: {span}",
            "event types: " + _top(self.event_types, top),
            "channels: " + _top(self.channels, top),
            "actions: " + _top(self.actions, top),
            "static columns: " + _top(self.static_columns, top),
        ]
        return out


def open_dataset(path: Path | str) -> Dataset:
    """Find each table's file in a data set directory; a missing or ambiguous table is an error."""
    root = Path(path)
    if not root.is_dir():
        raise ContractError(str(root), None, "data set directory does not exist")
    files: dict[str, Path | None] = {}
    for table in TABLES:
        found = [p for p in (root / f"{table}.parquet", root / f"{table}.csv") if p.exists()]
        if len(found) > 1:
            raise ContractError(
                f"{table}.csv", None, f"ambiguous: both {table}.csv and {table}.parquet exist"
            )
        if not found and table in REQUIRED_TABLES:
            raise ContractError(
                f"{table}.parquet",
                None,
                f"required table is missing: no {table}.parquet or {table}.csv in {root}",
            )
        files[table] = found[0] if found else None
    return Dataset(root=root, files=files)


def validate_dataset(
    path: Path | str,
    known_actions: Iterable[str] | None = None,
    memory_limit: str | None = None,
    threads: int | None = None,
) -> DatasetSummary:
    """Check every rule of docs/data.md and raise ContractError on the first violation.

    `known_actions` are the action catalog's ids: exposures of any other action (but `control`)
    are then errors. Nothing is written; each table costs one scan (events: plus an anti-join on
    customers), the summary three more. `memory_limit` / `threads` are DuckDB's settings.
    """
    ds = open_dataset(path)
    known = None if known_actions is None else set(known_actions) | {CONTROL_ACTION}
    with ds.connect(memory_limit=memory_limit, threads=threads) as con:
        rows = {
            table: _check_table(con, table, file, known)
            for table, file in ds.files.items()
            if file is not None
        }
        return _summarize(con, ds, rows)


def column_types(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, str]:
    """Column names and DuckDB types of a view, in file order."""
    return {name: str(dtype) for name, dtype in _schema(con, view).items()}


def static_columns(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """Customers' attribute columns (all but customer_id) and their kind: numeric, boolean or
    categorical, which tells the feature code how to encode them."""
    return {
        name: _attribute_kind(dtype.id)
        for name, dtype in _schema(con, "customers").items()
        if name != "customer_id"
    }


# ---------------------------------------------------------------------------------------------
# views


def _create_views(con: duckdb.DuckDBPyConnection, table: str, path: Path | None) -> None:
    """Raw view (file as read), numbered view (raw + position, for examples) and typed view."""
    if path is None:
        con.execute(_EMPTY_EXPOSURES)
        return
    name = path.name
    _run(con, name, f"CREATE VIEW _raw_{table} AS SELECT * FROM {_reader(con, table, path)}")
    _run(con, name, f"CREATE VIEW _pos_{table} AS {_numbered(table, path)}")
    types = _raw_types(con, table, name)
    _check_schema(con, table, name, types)
    con.execute(f"CREATE VIEW {table} AS {_typed_select(table, types)}")


_EMPTY_EXPOSURES = (
    "CREATE VIEW exposures AS SELECT CAST(NULL AS VARCHAR) AS customer_id, "
    "CAST(NULL AS TIMESTAMP) AS ts, CAST(NULL AS VARCHAR) AS action_id, "
    "CAST(NULL AS DOUBLE) AS propensity WHERE false"
)


def _reader(con: duckdb.DuckDBPyConnection, table: str, path: Path) -> str:
    """The DuckDB table function for one file; CSV contract columns stay text and are parsed by us,
    so an id like "0042" keeps its zeros and a bad value is reported, not guessed."""
    if path.suffix == ".parquet":
        target = path / "**" / "*.parquet" if path.is_dir() else path
        return f"read_parquet({_lit(str(target))})"
    if path.stat().st_size == 0:
        raise ContractError(path.name, None, "file is empty: a CSV needs at least its header line")
    header = _csv_types(con, path, f"all_varchar=true, sample_size={_CSV_SAMPLE_ROWS['events']}")
    contract = (*REQUIRED_COLUMNS[table], *OPTIONAL_COLUMNS[table])
    text = {c: "VARCHAR" for c in contract if c in header}
    sniffed = _csv_types(con, path, f"sample_size={_CSV_SAMPLE_ROWS[table]}, types={_struct(text)}")
    # Pin the sniffed types so later queries neither re-sniff the whole file nor guess differently.
    return f"read_csv({_lit(str(path))}, header=true, types={_struct(sniffed | text)})"


def _csv_types(con: duckdb.DuckDBPyConnection, path: Path, options: str) -> dict[str, str]:
    """Column -> type name that DuckDB's CSV sniffer finds with the given read_csv options."""
    sql = f"SELECT * FROM read_csv({_lit(str(path))}, header=true, {options}) LIMIT 0"
    rel = _run(con, path.name, sql)
    return {d[0]: str(d[1]) for d in rel.description}


def _struct(types: dict[str, str]) -> str:
    return "{" + ", ".join(f"{_lit(c)}: {_lit(t)}" for c, t in types.items()) + "}"


def _numbered(table: str, path: Path) -> str:
    """The raw rows with their position (`__line` in a CSV, `__row_index` in Parquet) for examples."""
    if path.suffix == ".parquet":
        target = path / "**" / "*.parquet" if path.is_dir() else path
        file_col = ", filename AS __file" if path.is_dir() else ""
        reader = f"read_parquet({_lit(str(target))}, file_row_number=true, filename=true)"
        return (
            f"SELECT file_row_number AS __row_index{file_col}, "
            f"* EXCLUDE (file_row_number, filename) FROM {reader}"
        )
    return f"SELECT row_number() OVER () + 1 AS __line, * FROM _raw_{table}"


def _typed_select(table: str, types: dict[str, str]) -> str:
    """SELECT turning the raw contract columns into their contract types, extras passed through."""
    typed_columns = [*REQUIRED_COLUMNS[table], *_present_optional(table, types)]
    typed = [f"{_parse(c, types[c], strict=True)} AS {_ident(c)}" for c in typed_columns]
    extras = [f"t.{_ident(c)}" for c in types if c not in typed_columns]
    return f"SELECT {', '.join(typed + extras)} FROM _raw_{table} AS t"


def _present_optional(table: str, types: dict[str, str]) -> list[str]:
    return [c for c in OPTIONAL_COLUMNS[table] if c in types]


def _parse(column: str, dtype: str, strict: bool) -> str:
    """SQL turning raw column `t.column` into its contract type; `strict=False` gives NULL instead
    of an error for text that does not parse (validation uses that to find bad rows)."""
    cast = "CAST" if strict else "TRY_CAST"
    col = f"t.{_ident(column)}"
    role = _ROLE[column]
    if role in ("id", "text"):
        return f"CAST({col} AS VARCHAR)"
    if role == "free_text":  # blank text is no text
        return f"NULLIF(CAST({col} AS VARCHAR), '')"
    if role == "timestamp":
        if dtype == "varchar":  # via TIMESTAMPTZ so that "...+02:00" and "...Z" become UTC
            return f"{cast}({cast}(NULLIF(trim({col}), '') AS TIMESTAMPTZ) AS TIMESTAMP)"
        return f"CAST({col} AS TIMESTAMP)"
    source = f"NULLIF(trim({col}), '')" if dtype == "varchar" else col
    return f"NULLIF({cast}({source} AS DOUBLE), CAST('NaN' AS DOUBLE))"


# ---------------------------------------------------------------------------------------------
# schema-level checks (on connect)


def _raw_types(con: duckdb.DuckDBPyConnection, table: str, file: str) -> dict[str, str]:
    """Raw column -> DuckDB type id (e.g. 'varchar', 'timestamp with time zone')."""
    try:
        return {name: dtype.id for name, dtype in _schema(con, f"_raw_{table}").items()}
    except duckdb.Error as err:
        raise _unreadable(file, err) from None


def _check_schema(
    con: duckdb.DuckDBPyConnection, table: str, file: str, types: dict[str, str]
) -> None:
    """Required columns present, each of a type the contract can parse; static attributes usable."""
    for column in REQUIRED_COLUMNS[table]:
        if column not in types:
            near = [c for c in types if c.lower() == column.lower()]
            hint = f" (found '{near[0]}': names are case-sensitive)" if near else ""
            raise ContractError(
                file,
                column,
                f"required column is missing{hint}; columns found: {', '.join(types)}",
                _example(con, table, "true"),
            )
        _check_type(con, table, file, column, types[column])
    for column in _present_optional(table, types):
        _check_type(con, table, file, column, types[column])
    if table == "customers":
        _check_attributes(con, file, types)


def _check_type(
    con: duckdb.DuckDBPyConnection, table: str, file: str, column: str, dtype: str
) -> None:
    """A contract column must have a type its role can parse."""
    accepted, wanted = _ACCEPTED[_ROLE[column]]
    if dtype not in accepted:
        raise ContractError(
            file,
            column,
            f"has type {dtype.upper()}, expected {wanted}",
            _example(con, table, f"t.{_ident(column)} IS NOT NULL", column),
        )


def _check_attributes(con: duckdb.DuckDBPyConnection, file: str, types: dict[str, str]) -> None:
    """Every static attribute must be numeric, boolean or categorical (it becomes a feature)."""
    for column, dtype in types.items():
        if column != "customer_id" and _attribute_kind(dtype) == "unsupported":
            raise ContractError(
                file,
                column,
                f"static attribute of unsupported type {dtype.upper()}: use a number, a boolean, "
                "a string or a date",
                _example(con, "customers", f"t.{_ident(column)} IS NOT NULL", column),
            )


def _attribute_kind(type_id: str) -> str:
    """numeric / boolean / categorical / date, or unsupported (nested, binary, intervals).

    Dates are allowed: the feature definition turns a date attribute X into `days_since_X`.
    """
    if type_id in _NUMERIC:
        return "numeric"
    if type_id in _TEMPORAL:
        return "date"
    if type_id == "boolean":
        return "boolean"
    if type_id in _TEXT or type_id == "null":
        return "categorical"
    return "unsupported"


# ---------------------------------------------------------------------------------------------
# row-level checks (validate_dataset)


@dataclass(frozen=True)
class _Rule:
    """One contract rule: the column it is about, what is wrong, and SQL true for an offending row."""

    column: str
    problem: str
    bad: str


def _check_table(
    con: duckdb.DuckDBPyConnection, table: str, path: Path, known: set[str] | None
) -> int:
    """Run all of a table's rules in one scan; raise on the first rule with offending rows.

    Returns the table's row count. Extra CSV columns are counted too, so that a value the type
    sniffer did not foresee fails here and not halfway through training.
    """
    types = _raw_types(con, table, path.name)
    rules = _rules(table, types, known)
    counts = [f"count(*) FILTER (WHERE {r.bad})" for r in rules]
    if path.suffix == ".csv":
        typed = (*REQUIRED_COLUMNS[table], *OPTIONAL_COLUMNS[table])
        counts += [f"count(t.{_ident(c)})" for c in types if c not in typed]
    sql = f"SELECT count(*), {', '.join(counts) or '0'} FROM _raw_{table} AS t"
    total, *found = (_run(con, path.name, sql).fetchall() or [(0,)])[0]
    if table == "customers" and total == 0:
        raise ContractError(path.name, None, "has no rows: at least one customer is required")
    for rule, n in zip(rules, found, strict=False):
        if n:
            raise ContractError(
                path.name,
                rule.column,
                f"{rule.problem} ({n:,} of {total:,} rows)",
                _example(con, table, rule.bad, rule.column),
            )
    return int(total)


def _rules(table: str, types: dict[str, str], known: set[str] | None) -> list[_Rule]:
    """The table's rules in the order they are reported."""
    rules = [_Rule("customer_id", "customer_id is missing or empty", _blank("customer_id"))]
    if table == "customers":
        dup = "SELECT customer_id FROM _raw_customers GROUP BY ALL HAVING count(*) > 1"
        return [*rules, _Rule("customer_id", "duplicate customer_id", f"t.customer_id IN ({dup})")]
    rules += _timestamp_rules(types["ts"])
    if table == "events":
        rules.append(_Rule("event_type", "event_type is missing or empty", _blank("event_type")))
        rules += _number_rules("value", types["value"])
        if "text" in types:
            too_long = f"length(CAST(t.text AS VARCHAR)) > {MAX_TEXT_CHARS}"
            problem = f"text longer than {MAX_TEXT_CHARS:,} characters (the per-event limit)"
            rules.append(_Rule("text", problem, too_long))
    else:
        rules.append(_Rule("action_id", "action_id is missing or empty", _blank("action_id")))
        rules += _number_rules("propensity", types["propensity"])
        p = _parse("propensity", types["propensity"], strict=False)
        in_range = f"coalesce({p} > 0 AND {p} <= 1, false)"
        rules.append(_Rule("propensity", "propensity must be in (0, 1]", f"NOT {in_range}"))
        if known is not None:
            ids = ", ".join(_lit(a) for a in sorted(known))
            problem = "action missing from the action catalog (add it there, or use 'control')"
            rules.append(
                _Rule("action_id", problem, f"CAST(t.action_id AS VARCHAR) NOT IN ({ids})")
            )
    unknown = (
        "NOT EXISTS (SELECT 1 FROM customers AS c "
        "WHERE c.customer_id = CAST(t.customer_id AS VARCHAR))"
    )
    rules.append(_Rule("customer_id", "customer_id not in the customers table", unknown))
    return rules


def _timestamp_rules(dtype: str) -> list[_Rule]:
    """ts must be present and, when text, parse as a timestamp."""
    if dtype != "varchar":
        return [_Rule("ts", "ts is missing", "t.ts IS NULL")]
    text = "NULLIF(trim(t.ts), '')"
    parsed = _parse("ts", dtype, strict=False)
    return [
        _Rule("ts", "ts is missing", f"{text} IS NULL"),
        _Rule("ts", f"not a timestamp ({_EXPECTED_TS})", f"{parsed} IS NULL"),
    ]


def _number_rules(column: str, dtype: str) -> list[_Rule]:
    """A text column meant as a number: non-empty text must parse (empty means missing)."""
    if dtype != "varchar":
        return []
    col = f"t.{_ident(column)}"
    bad = f"NULLIF(trim({col}), '') IS NOT NULL AND {_parse(column, dtype, strict=False)} IS NULL"
    nan = f"lower(trim({col})) = 'nan'"  # NaN is a number (missing), not a typo
    return [_Rule(column, "not a number", f"{bad} AND NOT {nan}")]


def _blank(column: str) -> str:
    col = f"t.{_ident(column)}"
    return f"({col} IS NULL OR trim(CAST({col} AS VARCHAR)) = '')"


def _example(
    con: duckdb.DuckDBPyConnection, table: str, bad: str, column: str | None = None
) -> str | None:
    """The first offending row, as "line 3: customer_id='0042', ts='x'" (CSV) or "row_index 2: …".

    Values are fetched as text, so any column type (time zones, nested) can be shown.
    """
    types = {name: dtype.id for name, dtype in _schema(con, f"_pos_{table}").items()}
    where = "line" if "__line" in types else "row_index"
    keep = [c for c in (*REQUIRED_COLUMNS[table], column) if c is not None and c in types]
    keep = list(dict.fromkeys(keep)) or [c for c in types if not c.startswith("__")][:4]
    extra = ", __file" if "__file" in types else ""
    shown = ", ".join(f"CAST(t.{_ident(c)} AS VARCHAR)" for c in keep)
    sql = f"SELECT __{where}{extra}, {shown} FROM _pos_{table} AS t WHERE {bad} LIMIT 1"
    rows = con.execute(sql).fetchall()
    if not rows:
        return None
    row = rows[0]
    position, *values = row
    file = ""
    if extra:
        file, *values = values
        file = f" of {Path(file).name}"
    text = [f"{c}={_short(v, quote=types[c] in _TEXT)}" for c, v in zip(keep, values, strict=True)]
    return f"{where} {position}{file}: {', '.join(text)}"


def _short(value: str | None, quote: bool) -> str:
    """A value shown in one line and at most ~40 characters; text values in quotes."""
    text = repr(value) if quote and value is not None else str(value)
    text = text.replace("\n", " ").replace("\r", " ")
    return text if len(text) <= _EXAMPLE_WIDTH else text[: _EXAMPLE_WIDTH - 1] + "…"


# ---------------------------------------------------------------------------------------------
# summary


def _summarize(con: duckdb.DuckDBPyConnection, ds: Dataset, rows: dict[str, int]) -> DatasetSummary:
    """Counts, time range and vocabularies of a valid data set (three more scans)."""
    by_type_channel = con.execute(
        "SELECT event_type, coalesce(channel, '(none)'), count(*), min(ts), max(ts) "
        "FROM events GROUP BY ALL"
    ).fetchall()
    event_types: dict[str, int] = {}
    channels: dict[str, int] = {}
    for event_type, channel, n, _, _ in by_type_channel:
        event_types[event_type] = event_types.get(event_type, 0) + n
        channels[channel] = channels.get(channel, 0) + n
    starts = [r[3] for r in by_type_channel]
    ends = [r[4] for r in by_type_channel]
    active = con.execute("SELECT count(DISTINCT customer_id) FROM events").fetchall()[0]
    actions = con.execute("SELECT action_id, count(*) FROM exposures GROUP BY ALL").fetchall()
    return DatasetSummary(
        files={t: (p.name if p else None) for t, p in ds.files.items()},
        rows={t: rows.get(t, 0) for t in TABLES},
        n_customers=rows["customers"],
        customers_with_events=int(active[0]) if active else 0,
        event_start=min(starts) if starts else None,
        event_end=max(ends) if ends else None,
        event_types=_by_count(event_types),
        channels=_by_count(channels),
        actions=_by_count(dict(actions)),
        static_columns={
            c: t for c, t in column_types(con, "customers").items() if c != "customer_id"
        },
    )


def _by_count(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _top(items: dict[str, Any], top: int) -> str:
    """'a (3), b (2) … and 4 more'; counts get thousands separators."""
    if not items:
        return "none"
    shown = [f"{k} ({v:,})" if isinstance(v, int) else f"{k} ({v})" for k, v in items.items()]
    more = f" … and {len(shown) - top} more" if len(shown) > top else ""
    return ", ".join(shown[:top]) + more


# ---------------------------------------------------------------------------------------------
# SQL helpers


def _schema(con: duckdb.DuckDBPyConnection, view: str) -> dict[str, DuckDBPyType]:
    rel = con.sql(f"SELECT * FROM {view} LIMIT 0")
    return dict(zip(rel.columns, rel.types, strict=True))


def _run(con: duckdb.DuckDBPyConnection, file: str, sql: str) -> duckdb.DuckDBPyConnection:
    """Execute SQL that reads a user's file; a read failure becomes a one-line ContractError."""
    try:
        return con.execute(sql)
    except (duckdb.IOException, duckdb.InvalidInputException, duckdb.ConversionException) as err:
        raise _unreadable(file, err) from None


def _unreadable(file: str, err: Exception) -> ContractError:
    """DuckDB's reason without the SQL it echoes, on one line."""
    reason = " ".join(str(err).split("\nLINE ")[0].split())
    reason = reason if len(reason) <= 240 else reason[:239] + "…"
    return ContractError(file, None, f"cannot be read: {reason}")


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
