"""Outcome labels over the window [as_of, as_of + horizon) for every spine row, on tiny frames."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd
import pytest

from training.config import OutcomeSpec
from training.data.outcomes import compute_outcomes, is_label_observed, label_window_end

AS_OF = pd.Timestamp("2026-01-01")


def _spec(kind: str, types: tuple[str, ...] = ("purchase",), days: int = 10) -> OutcomeSpec:
    return OutcomeSpec.model_validate({"kind": kind, "event_types": types, "horizon_days": days})


def _events(rows: list[tuple[str, str, str, float | None]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "ts", "event_type", "value"])
    frame["ts"] = pd.to_datetime(frame["ts"], format="ISO8601")
    frame["value"] = frame["value"].astype("float64")
    frame["channel"] = "web"
    return frame


def _run(
    events: pd.DataFrame, spine: pd.DataFrame, outcomes: dict[str, OutcomeSpec]
) -> pd.DataFrame:
    con = duckdb.connect()
    con.register("events", events)
    con.register("spine_rows", spine)
    result = compute_outcomes(con, "spine_rows", outcomes)
    return result.sort_values(["customer_id", "as_of"]).reset_index(drop=True)


def _spine(*rows: tuple[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {"customer_id": [r[0] for r in rows], "as_of": pd.to_datetime([r[1] for r in rows])}
    )


EVENTS = _events(
    [
        ("a", "2025-12-31 23:59:59", "purchase", 100.0),  # just before as_of: excluded
        ("a", "2026-01-01 00:00:00", "purchase", 10.0),  # exactly at as_of: included
        ("a", "2026-01-05", "purchase", 5.0),
        ("a", "2026-01-05", "nps", 3.0),
        ("a", "2026-01-08", "nps", 9.0),  # the last answer in the window
        ("a", "2026-01-09", "nps", None),  # an empty answer is not an answer
        ("a", "2026-01-11 00:00:00", "purchase", 1000.0),  # exactly as_of + 10 days: excluded
        ("a", "2026-01-11 00:00:00", "nps", 0.0),  # excluded too
        ("b", "2026-01-03", "visit", None),
    ]
)
OUTCOMES = {
    "bought": _spec("any"),
    "n_purchases": _spec("count"),
    "revenue": _spec("sum"),
    "nps": _spec("last", ("nps",)),
    "inactive": _spec("none"),
}


def test_each_kind_and_the_window_boundaries() -> None:
    result = _run(EVENTS, _spine(("a", "2026-01-01"), ("b", "2026-01-01")), OUTCOMES)
    a, b = result.iloc[0], result.iloc[1]
    assert (a["bought"], a["n_purchases"], a["revenue"], a["nps"], a["inactive"]) == (
        1,
        2,
        15.0,
        9.0,
        0,
    )
    assert (b["bought"], b["n_purchases"], b["revenue"], b["inactive"]) == (0, 0, 0.0, 1)
    assert np.isnan(b["nps"])  # no answer: unknown, not zero


def test_dtypes_and_columns() -> None:
    result = _run(EVENTS, _spine(("a", "2026-01-01")), OUTCOMES)
    assert list(result.columns) == ["customer_id", "as_of", *OUTCOMES]
    dtypes = {name: str(result[name].dtype) for name in OUTCOMES}
    assert dtypes == {
        "bought": "int8",
        "n_purchases": "int64",
        "revenue": "float64",
        "nps": "float64",
        "inactive": "int8",
    }


def test_two_spine_rows_of_one_customer_get_their_own_windows() -> None:
    spine = _spine(("a", "2026-01-01"), ("a", "2026-01-06"), ("a", "2026-01-06"))
    result = _run(EVENTS, spine, OUTCOMES)
    assert len(result) == 3  # duplicates stay: one label row per spine row (per exposure)
    assert result["revenue"].tolist() == [15.0, 1000.0, 1000.0]
    assert result["nps"].tolist() == [9.0, 0.0, 0.0]


def test_horizons_differ_per_outcome() -> None:
    outcomes = {"short": _spec("sum", days=1), "long": _spec("sum", days=30)}
    result = _run(EVENTS, _spine(("a", "2026-01-01")), outcomes)
    assert (result["short"].item(), result["long"].item()) == (10.0, 1015.0)


def test_customers_without_events_and_empty_events() -> None:
    empty = EVENTS.iloc[0:0]
    result = _run(empty, _spine(("z", "2026-01-01")), OUTCOMES)
    assert result[["bought", "n_purchases", "revenue", "inactive"]].iloc[0].tolist() == [0, 0, 0, 1]
    assert np.isnan(result["nps"].iloc[0])


def test_event_types_with_quotes_are_parameters_not_sql() -> None:
    events = _events([("a", "2026-01-02", "it's", 1.0)])
    result = _run(events, _spine(("a", "2026-01-01")), {"q": _spec("count", ("it's",))})
    assert result["q"].item() == 1


def test_label_window_end_and_censoring() -> None:
    spec = _spec("any", days=90)
    assert label_window_end(AS_OF, spec) == pd.Timestamp("2026-04-01")
    as_of = pd.Series(pd.to_datetime(["2026-01-01", "2026-02-01"]))
    observed = is_label_observed(as_of, spec, pd.Timestamp("2026-04-01"))
    assert observed.tolist() == [True, False]


@pytest.mark.parametrize("kind", ["any", "count", "sum", "last", "none"])
def test_every_kind_is_one_column(kind: str) -> None:
    result = _run(EVENTS, _spine(("a", "2026-01-01")), {"o": _spec(kind)})
    assert list(result.columns) == ["customer_id", "as_of", "o"]
