"""Who is a customer at a date (the active spine of training snapshots and scoring) and which
dates a bundle may score."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from training.config import OutcomeSpec
from training.data.contract import open_dataset
from training.data.snapshots import DataSpan, active_spine, check_scoring_date, count_active
from training.errors import NextbestError

CHURN = OutcomeSpec(role="churn", kind="any", event_types=("churn",), horizon_days=90)
IDS = ["A", "B", "C", "D"]


def dataset(
    root: Path, events: list[tuple[str, str, str]], exposures: list[tuple[str, str]]
) -> Path:
    """Customers A-D with the given (customer, day, type) events and (customer, day) exposures."""
    root.mkdir()
    pd.DataFrame({"customer_id": IDS, "plan": ["x", "y", "x", "y"]}).to_csv(
        root / "customers.csv", index=False
    )
    pd.DataFrame(
        [(c, f"{d} 10:00:00", "web", t, None) for c, d, t in events],
        columns=["customer_id", "ts", "channel", "event_type", "value"],
    ).to_csv(root / "events.csv", index=False)
    pd.DataFrame(
        [(c, f"{d} 09:00:00", "offer", 0.5) for c, d in exposures],
        columns=["customer_id", "ts", "action_id", "propensity"],
    ).to_csv(root / "exposures.csv", index=False)
    return root


def active(data: Path, as_of: date, churn: OutcomeSpec | None = CHURN) -> list[str]:
    with open_dataset(data).connect() as con:
        rows = con.execute(f"{active_spine(con, as_of, churn)} ORDER BY customer_id").fetchall()
    return [r[0] for r in rows]


def test_a_snapshot_export_is_active_on_every_date_less_its_churners(tmp_path: Path) -> None:
    # attributes as of 2026-01-01, churn events after it and nothing else (IBM Telco's shape)
    data = dataset(tmp_path / "d", [("B", "2026-01-10", "churn"), ("D", "2026-03-01", "churn")], [])
    assert active(data, date(2026, 1, 1)) == IDS
    assert active(data, date(2026, 2, 1)) == ["A", "C", "D"]


def test_customers_first_seen_later_have_not_joined(tmp_path: Path) -> None:
    events = [("A", "2026-01-02", "visit"), ("C", "2026-03-01", "visit")]
    data = dataset(tmp_path / "d", events, [("B", "2026-01-20")])
    # A visited, B was exposed (an exposure shows a customer exists), C not seen yet, D never
    # seen at all: a silent customer, active on every date
    assert active(data, date(2026, 2, 1)) == ["A", "B", "D"]
    assert active(data, date(2026, 3, 2)) == ["A", "B", "C", "D"]


def test_churn_by_inactivity_removes_the_lapsed(tmp_path: Path) -> None:
    """Kind `none` (no purchase in 30 days is churn): a customer whose last purchase, or first
    sight without one, is over 30 days before the date had churned already."""
    events = [
        ("A", "2026-01-25", "purchase"),  # bought 7 days before: active
        ("B", "2025-12-01", "purchase"),  # last bought 62 days before: lapsed
        ("B", "2026-01-20", "visit"),  # a visit is not a purchase
        ("C", "2026-01-15", "visit"),  # first seen 17 days before, never bought yet: active
        ("D", "2025-11-01", "visit"),  # first seen 92 days before, never bought: lapsed
    ]
    data = dataset(tmp_path / "d", events, [])
    silence = OutcomeSpec(role="churn", kind="none", event_types=("purchase",), horizon_days=30)
    assert active(data, date(2026, 2, 1), silence) == ["A", "C"]
    assert active(data, date(2026, 2, 1), None) == IDS  # without a churn outcome, all seen ones


def test_no_active_customer_is_an_error(tmp_path: Path) -> None:
    data = dataset(tmp_path / "d", [(c, "2026-01-02", "churn") for c in IDS], [])
    with open_dataset(data).connect() as con:
        con.execute(f"CREATE TEMP TABLE spine AS {active_spine(con, date(2026, 2, 1), CHURN)}")
        with pytest.raises(NextbestError, match="--as-of 2026-02-01: no customer is active"):
            count_active(con, "spine", date(2026, 2, 1))


def test_scoring_dates_run_from_the_training_date_to_the_day_after_the_data() -> None:
    span = DataSpan(datetime(2026, 1, 2, 8), datetime(2026, 3, 31, 17))
    trained = [date(2026, 1, 1)]
    for ok in (date(2026, 1, 1), date(2026, 2, 1), date(2026, 4, 1)):
        check_scoring_date(ok, span, trained)
    check_scoring_date(date(2026, 1, 3), span)  # no training dates: the day after the first event
    for bad in (date(2025, 12, 31), date(2026, 4, 2)):
        with pytest.raises(NextbestError, match=f"--as-of {bad}: outside.*2026-01-01..2026-04-01"):
            check_scoring_date(bad, span, trained)
    with pytest.raises(NextbestError, match="2026-01-03..2026-04-01"):
        check_scoring_date(date(2026, 1, 2), span)


def test_a_censoring_note_names_the_end_of_observation_the_date_needed_and_the_fix() -> None:
    from training.data.snapshots import censoring_note

    spec = OutcomeSpec(kind="sum", event_types=["purchase"], horizon_days=90)
    span = DataSpan(datetime(2025, 1, 1), datetime(2026, 10, 19, 14, 0))
    as_of = pd.Series(pd.to_datetime(["2026-06-01", "2026-08-01", "2026-09-01"]))
    note = censoring_note(as_of, spec, span)
    assert note is not None
    assert note.startswith("2 of 3 90-day label windows run past the end of observation 2026-10-20")
    assert "(inferred as the day after the last event)" in note
    assert "needs data until 2026-10-30" in note and "snapshots.observed_until" in note
    assert "(as configured)" in str(censoring_note(as_of, spec, span, configured=True))
    assert censoring_note(as_of.iloc[:1], spec, span) is None  # every window observed
