"""The revenue customers really brought after a snapshot, over a lifetime horizon: what lifetime
value is judged against, by training's choice of method and blend weight and by the report's LTV
deciles."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import duckdb
import pandas as pd

from training.config import OutcomeSpec
from training.data.outcomes import compute_outcomes
from training.data.snapshots import holdout_mask
from training.errors import NextbestError

LABEL = "_lifetime_revenue"
MIN_JUDGED = 50  # fewer held-out customers than this cannot tell the methods apart
DAYS_PER_MONTH = 365.25 / 12


def latest_complete(
    dates: Sequence[datetime], horizon_days: int, observed_until: datetime | None
) -> pd.Timestamp:
    """The latest of `dates` whose label window of `horizon_days` the data observed in full (the
    latest date when the end of observation is unknown, the earliest when no window is whole)."""
    stamps = sorted(pd.Timestamp(d) for d in dates)
    if not stamps:
        raise NextbestError("lifetime value: no snapshot to judge on")
    if observed_until is None:
        return stamps[-1]
    end = pd.Timestamp(observed_until)
    whole = [d for d in stamps if d + pd.Timedelta(days=horizon_days) <= end]
    return whole[-1] if whole else stamps[0]


def judging_rows(
    con: duckdb.DuckDBPyConnection,
    frame: pd.DataFrame,
    value: OutcomeSpec,
    months: float,
    observed_until: datetime | None,
    snapshot: Literal["earliest", "latest"] = "earliest",
) -> pd.DataFrame:
    """One snapshot's rows with their revenue over the judged horizon (`attrs["days"]`): the
    lifetime, or what the data observed of it, at least the label window. `earliest` is the
    snapshot with the longest observed future; `latest` the latest whose label window is
    observed in full (`latest_complete`), whose customers' histories are most like those
    scored after training. `attrs["as_of"]` is the snapshot's date."""
    stamps = pd.to_datetime(frame["as_of"])
    first = (
        stamps.min()
        if snapshot == "earliest"
        else latest_complete(list(stamps.unique()), value.horizon_days, observed_until)
    )
    rows = frame[(stamps == first).to_numpy()].reset_index(drop=True)
    seen = (pd.Timestamp(observed_until) - pd.Timestamp(first)).days if observed_until else 0
    days = int(max(min(months * DAYS_PER_MONTH, seen), value.horizon_days))
    if holdout_mask(rows["customer_id"]).sum() < MIN_JUDGED:
        raise NextbestError(
            f"lifetime value: fewer than {MIN_JUDGED} held-out customers on {first:%Y-%m-%d} to "
            "judge the methods on"
        )
    spine = rows[["customer_id", "as_of"]]
    con.register("_lifetime_spine", spine)
    try:
        spec = OutcomeSpec(kind="sum", event_types=value.event_types, horizon_days=days)
        labels = compute_outcomes(con, "_lifetime_spine", {LABEL: spec})
    finally:
        con.unregister("_lifetime_spine")
    rows[LABEL] = labels[LABEL].to_numpy()
    rows.attrs["days"] = days
    rows.attrs["as_of"] = first
    return rows
