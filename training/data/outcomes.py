"""Outcome labels: what happened in the window after each as-of date or exposure (docs/config.md).

For a spine of (customer_id, as_of) rows, every configured outcome reduces the events of its types
with ``as_of <= ts < as_of + horizon_days`` by its kind, in one DuckDB query.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import TypeVar

import duckdb
import numpy as np
import pandas as pd
from numpy.typing import NDArray

from training.config import OutcomeSpec

T = TypeVar("T", datetime, pd.Timestamp, pd.Series)

# Output dtype per kind: `last` is float with NaN for "no answer in the window" (unknown, not zero).
DTYPES = {"any": "int8", "count": "int64", "sum": "float64", "last": "float64", "none": "int8"}


def label_window_end(as_of: T, spec: OutcomeSpec) -> T:
    """First instant after the label window of `spec` that starts at `as_of` (exclusive end)."""
    return as_of + timedelta(days=spec.horizon_days)


def is_label_observed(
    as_of: pd.Series, spec: OutcomeSpec, observed_until: datetime | pd.Timestamp
) -> NDArray[np.bool_]:
    """True where the whole label window lies before `observed_until` (the end of the data).

    Windows that run past the end of the data are censored: an absent churn event there means
    "not seen yet", not "stayed", so such rows must not be used as labels.
    """
    return np.asarray(label_window_end(as_of, spec) <= pd.Timestamp(observed_until), dtype=bool)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _aggregate(index: int, name: str, spec: OutcomeSpec) -> str:
    """One conditional aggregate over the joined events for outcome `name` (types in $types_<i>)."""
    match = (
        f"list_contains($types_{index}, e.event_type) "
        f"AND e.ts < s.as_of + INTERVAL {int(spec.horizon_days)} DAY"
    )
    hits = f"count(*) FILTER (WHERE {match})"
    # `last`: the latest event with a value; at equal timestamps the larger value, deterministically.
    expression = {
        "any": f"CAST({hits} > 0 AS TINYINT)",
        "count": hits,
        "sum": f"coalesce(sum(e.value) FILTER (WHERE {match}), 0.0)",
        "last": f"arg_max(e.value, (e.ts, e.value)) FILTER (WHERE {match} AND e.value IS NOT NULL)",
        "none": f"CAST({hits} = 0 AS TINYINT)",
    }[spec.kind]
    return f"{expression} AS {_quote(name)}"


def outcomes_sql(
    spine: str, outcomes: Mapping[str, OutcomeSpec]
) -> tuple[str, dict[str, list[str]]]:
    """The SQL (and its named parameters) computing every outcome for every row of `spine`."""
    specs = list(outcomes.items())
    columns = "".join(f",\n  {_aggregate(i, n, s)}" for i, (n, s) in enumerate(specs))
    params = {f"types_{i}": list(s.event_types) for i, (_, s) in enumerate(specs)}
    params["types_all"] = sorted({t for _, s in specs for t in s.event_types})
    horizon = max((s.horizon_days for _, s in specs), default=0)
    sql = f"""
WITH s AS (
  SELECT row_number() OVER () AS _row, CAST(customer_id AS VARCHAR) AS customer_id,
         CAST(as_of AS TIMESTAMP) AS as_of
  FROM {_quote(spine)}
)
SELECT s.customer_id, s.as_of{columns}
FROM s
LEFT JOIN events AS e
  ON e.customer_id = s.customer_id
 AND e.ts >= s.as_of AND e.ts < s.as_of + INTERVAL {int(horizon)} DAY
 AND list_contains($types_all, e.event_type)
GROUP BY s._row, s.customer_id, s.as_of
ORDER BY s._row
"""
    return sql, params


def compute_outcomes(
    con: duckdb.DuckDBPyConnection, spine: str, outcomes: Mapping[str, OutcomeSpec]
) -> pd.DataFrame:
    """One row per row of the `spine` table (customer_id, as_of) with one column per outcome.

    Reads the `events` view of `con`. A customer with two spine rows (two exposures, say) gets two
    independent windows. Columns: any/none int8 (1/0), count int64, sum float64 (0.0 if no event),
    last float64 (NaN if no event: unknown).
    """
    sql, params = outcomes_sql(spine, outcomes)
    frame = con.execute(sql, params).df()
    return frame.astype({name: DTYPES[spec.kind] for name, spec in outcomes.items()})
