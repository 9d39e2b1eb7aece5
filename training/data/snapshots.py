"""Training snapshots: features as of each as-of date, labels from the window after it, and a
time-aware split by customer.

Every snapshot row is a customer who is still a customer at the as-of date. Labels whose window runs
past the end of the data are censored and dropped, never read as "nothing happened".
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta

import duckdb
import numpy as np
import pandas as pd

from training.config import Config, OutcomeSpec
from training.data.outcomes import compute_outcomes, is_label_observed
from training.errors import NextbestError
from training.features.definition import FeatureBuilder, categorical_names, to_matrix

HOLDOUT_SHARE = 0.2  # customers kept out of fitting: early stopping, calibration and the test
MAX_AUTO_SNAPSHOTS = 4
MIN_HISTORY_DAYS = 90  # an automatic as-of date needs this much history before it


@dataclass(frozen=True)
class TrainingSet:
    """One score's data: fit, early-stopping/calibration, and a later test slice (time-aware).

    Baselines read what they need (last NPS answer, historical revenue) from the matrix by name.
    """

    feature_names: list[str]
    categorical: list[str]
    X_fit: np.ndarray
    y_fit: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    horizon_days: int = 90

    def without(self, names: Collection[str]) -> TrainingSet:
        """The same rows and split without the features `names` (a twin model that cannot read
        them: what those features add, on the same split)."""
        keep = [j for j, n in enumerate(self.feature_names) if n not in names]
        kept = [self.feature_names[j] for j in keep]
        return replace(
            self,
            feature_names=kept,
            categorical=[c for c in self.categorical if c in kept],
            X_fit=self.X_fit[:, keep],
            X_val=self.X_val[:, keep],
            X_test=self.X_test[:, keep],
        )

    def column(self, X: np.ndarray, name: str) -> np.ndarray | None:
        """Column `name` of a matrix of this set, or None if the data set has no such feature."""
        if name not in self.feature_names:
            return None
        return X[:, self.feature_names.index(name)]


@dataclass(frozen=True)
class DataSpan:
    """First and last event, and the instant up to which outcomes are observed (day after last)."""

    start: datetime | None
    end: datetime | None

    @property
    def observed_until(self) -> datetime | None:
        return (
            None
            if self.end is None
            else datetime.combine(self.end.date(), datetime.min.time()) + timedelta(days=1)
        )


def data_span(con: duckdb.DuckDBPyConnection, config: Config | None = None) -> DataSpan:
    """The events' time span; `snapshots.observed_until` in the config overrides its end."""
    [(start, end)] = con.execute("SELECT min(ts), max(ts) FROM events").fetchall()
    until = config.snapshots.observed_until if config is not None else None
    if until is not None:
        end = datetime.combine(until, datetime.min.time()) - timedelta(days=1)
    return DataSpan(start, end)


def censoring_note(
    as_of: pd.Series, spec: OutcomeSpec, span: DataSpan, configured: bool = False
) -> str | None:
    """Why labels are missing when label windows run past the end of observation: how many,
    the end of observation (inferred from the last event, or `configured`), the date the
    earliest censored window needed, and the fix. None when no window is censored."""
    if span.observed_until is None:
        return "the data set has no events, so no label window is observed"
    seen = is_label_observed(as_of, spec, span.observed_until)
    if seen.all():
        return None
    needed = pd.Timestamp(as_of[~seen].min()) + timedelta(days=spec.horizon_days)
    how = "as configured" if configured else "inferred as the day after the last event"
    return (
        f"{int((~seen).sum()):,} of {len(seen):,} {spec.horizon_days}-day label windows run past "
        f"the end of observation {span.observed_until:%Y-%m-%d} ({how}); the earliest of them "
        f"needs data until {needed:%Y-%m-%d}. If the data are complete until a later date (the "
        "last events of this kind are simply rare), set snapshots.observed_until in the config; "
        "otherwise use earlier as-of dates or a shorter horizon"
    )


def resolve_as_of(config: Config, span: DataSpan) -> list[date]:
    """The configured as-of dates, or automatic ones: the latest date whose longest label window is
    observed, then one longest-horizon back each, keeping MIN_HISTORY_DAYS of history."""
    if config.snapshots.as_of != "auto":
        return sorted(config.snapshots.as_of)
    if span.start is None or span.observed_until is None:
        raise NextbestError("snapshots.as_of: auto needs events to place the dates; give dates")
    step = timedelta(days=config.max_horizon_days)
    last = (span.observed_until - step).date()
    first_allowed = span.start.date() + timedelta(days=MIN_HISTORY_DAYS)
    dates = [last - i * step for i in range(MAX_AUTO_SNAPSHOTS) if last - i * step >= first_allowed]
    if not dates:
        raise NextbestError(
            f"snapshots.as_of: auto found no date with {MIN_HISTORY_DAYS} days of history and a "
            f"{config.max_horizon_days}-day label window inside {span.start:%Y-%m-%d}..{span.end:%Y-%m-%d}"
        )
    return sorted(dates)


def active_spine(con: duckdb.DuckDBPyConnection, as_of: date, churn: OutcomeSpec | None) -> str:
    """SQL for the customers who are customers at `as_of`: not churned before it (`_churned_sql`)
    and, once the journey has begun, seen before it (an event other than a churn event, or an
    exposure): a customer first seen later had not joined yet. A customer never seen at all is a
    silent one, a customer all along. Until anyone is seen, every customer is active: a snapshot
    export (attributes as of a date, churn events after it) scores all its customers on any
    date, less those who churned.

    The subqueries are DISTINCT so DuckDB's IN builds its hash table on customers, not on every
    event (1M customers / 64M events: 0.4 GiB and 1.5 s instead of 3.4 GiB and 7.7 s)."""
    ts = f"TIMESTAMP '{as_of.isoformat()}'"
    churned, not_churn = "", "true"
    if churn is not None and churn.kind in ("any", "none"):
        types = ", ".join("'" + t.replace("'", "''") + "'" for t in churn.event_types)
        churned = f"AND customer_id NOT IN ({_churned_sql(churn, types, ts)})"
        not_churn = f"event_type NOT IN ({types})" if churn.kind == "any" else "true"
    events = f"FROM events WHERE ts < {ts} AND {not_churn}"
    exposures = f"FROM exposures WHERE ts < {ts}"
    return f"""
        SELECT customer_id, {ts} AS as_of FROM customers
        WHERE ((NOT EXISTS (SELECT 1 {events}) AND NOT EXISTS (SELECT 1 {exposures}))
               OR customer_id IN (SELECT DISTINCT customer_id {events}
                                  UNION SELECT DISTINCT customer_id {exposures})
               OR customer_id NOT IN (SELECT DISTINCT customer_id FROM events
                                      UNION SELECT DISTINCT customer_id FROM exposures))
        {churned}"""


def _churned_sql(churn: OutcomeSpec, types: str, ts: str) -> str:
    """Customers who had churned before `ts`: an explicit churn event (kind `any`), or, for churn
    by inactivity (kind `none`), no event of its types in the horizon before `ts`, counted from
    their last such event or, without one, from when they were first seen; the outcome window
    would have called them churned already, and a lapsed customer kept in every snapshot would be
    a trivially predicted "churn" over and over."""
    if churn.kind == "any":
        return (
            f"SELECT DISTINCT customer_id FROM events WHERE ts < {ts} AND event_type IN ({types})"
        )
    return f"""
        SELECT customer_id FROM events WHERE ts < {ts} GROUP BY customer_id
        HAVING coalesce(max(ts) FILTER (WHERE event_type IN ({types})), min(ts))
               < {ts} - INTERVAL {churn.horizon_days} DAY"""


def check_scoring_date(as_of: date, span: DataSpan, trained_as_of: Sequence[date] = ()) -> None:
    """Scoring dates run from the bundle's first training as-of date (or the day after the first
    event, if earlier) to the day after the last observed event: later dates would read a future
    the data does not hold, earlier ones a history nothing was trained on."""
    if span.start is None or span.observed_until is None:
        return
    first = min([span.start.date() + timedelta(days=1), *trained_as_of])
    last = span.observed_until.date()
    if not first <= as_of <= last:
        raise NextbestError(
            f"--as-of {as_of}: outside the data's range; use a date in {first}..{last} (events "
            f"from {span.start:%Y-%m-%d}, observed until {last}; the bundle was trained as of "
            f"{', '.join(str(d) for d in trained_as_of) or 'unknown dates'})"
        )


def count_active(con: duckdb.DuckDBPyConnection, table: str, as_of: date) -> int:
    """Rows of the active spine `table`; none is an error (a wrong date or data set, not a quiet
    empty output for the CRM to pick up)."""
    [(n,)] = con.execute(f"SELECT count(*) FROM {table}").fetchall()
    if n == 0:
        raise NextbestError(
            f"--as-of {as_of}: no customer is active at that date (active: not churned before "
            "it and, once the journey has begun, seen before it or never seen at all)"
        )
    return int(n)


def build_snapshots(
    con: duckdb.DuckDBPyConnection, builder: FeatureBuilder, config: Config, dates: list[date]
) -> pd.DataFrame:
    """Features and labels (one column per outcome; censored -> NaN) for every active customer at
    every date, sorted by (as_of, customer_id)."""
    span = data_span(con, config)
    churn = config.outcome_for_role("churn")
    frames = []
    for as_of in dates:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _spine AS {active_spine(con, as_of, churn[1] if churn else None)}"
        )
        feats = builder.transform(con, spine="_spine")
        labels = compute_outcomes(con, "_spine", config.outcomes)
        frame = feats.merge(labels, on=["customer_id", "as_of"], how="left", validate="one_to_one")
        for name, spec in config.outcomes.items():
            if span.observed_until is not None:
                seen = is_label_observed(frame["as_of"], spec, span.observed_until)
                frame[name] = frame[name].astype("float64").where(seen)
        frames.append(frame)
    con.execute("DROP TABLE IF EXISTS _spine")
    out = pd.concat(frames, ignore_index=True)
    return out.sort_values(["as_of", "customer_id"], ignore_index=True)


def holdout_mask(customer_ids: pd.Series, share: float = HOLDOUT_SHARE) -> np.ndarray:
    """A stable pseudo-random customer split: the same customer is always on the same side."""
    h = pd.util.hash_pandas_object(customer_ids.astype(str), index=False).to_numpy()
    return (h % 10_000) < share * 10_000


def split_for(
    frame: pd.DataFrame, outcome: str, feature_names: list[str], horizon_days: int
) -> TrainingSet:
    """fit / validation / test slices for one outcome: held-out customers only in validation and
    test, and the test on the latest snapshot when there are several (trained on earlier ones)."""
    rows = frame[frame[outcome].notna()]
    if rows.empty:
        raise NextbestError(f"outcome '{outcome}': no observed labels in any snapshot")
    held = holdout_mask(rows["customer_id"])
    dates = rows["as_of"].unique()
    if len(dates) > 1:
        later = (rows["as_of"] == dates.max()).to_numpy()
        fit, val, test = ~held & ~later, held & ~later, held & later
    else:
        half = holdout_mask(rows["customer_id"], share=HOLDOUT_SHARE / 2)
        fit, val, test = ~held, held & ~half, half
    y = rows[outcome].to_numpy(dtype=np.float64)
    X = to_matrix(rows, feature_names)
    return TrainingSet(
        feature_names=feature_names,
        categorical=categorical_names(rows, feature_names),
        X_fit=X[fit],
        y_fit=y[fit],
        X_val=X[val],
        y_val=y[val],
        X_test=X[test],
        y_test=y[test],
        horizon_days=horizon_days,
    )
