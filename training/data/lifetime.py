"""The revenue customers really brought after a snapshot, over a lifetime horizon: what lifetime
value is judged against, by training's choice of method and by the report's LTV deciles."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pandas as pd

from training.config import OutcomeSpec
from training.data.outcomes import compute_outcomes
from training.data.snapshots import holdout_mask
from training.errors import NextbestError

LABEL = "_lifetime_revenue"
MIN_JUDGED = 50  # fewer held-out customers than this cannot tell the methods apart
DAYS_PER_MONTH = 365.25 / 12


def judging_rows(
    con: duckdb.DuckDBPyConnection,
    frame: pd.DataFrame,
    value: OutcomeSpec,
    months: float,
    observed_until: datetime | None,
) -> pd.DataFrame:
    """The earliest snapshot's rows with their revenue over the judged horizon (`attrs["days"]`):
    the lifetime, or what the data observed of it, at least the label window."""
    first = frame["as_of"].min()
    rows = frame[frame["as_of"] == first].reset_index(drop=True)
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
    return rows
