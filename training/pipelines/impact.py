"""`nextbest impact`: what the logged decisions earned against the global control group.

Reads the decisions (exported from the decision log by the caller, or the data set's `exposures`
table with any logged columns: model_version, channel, control_group, greedy_action), the outcome
events that followed each in the data set (the configured outcome windows; windows not yet over
are left out), and the customers' categorical attributes as segments. The maths is
training.evaluation.impact; the page is training.evaluation.impact_report.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from training.config import CONTROL, GREEDY_COLUMN, Config, load_config
from training.data.contract import open_dataset
from training.data.outcomes import compute_outcomes, is_label_observed
from training.data.snapshots import data_span
from training.errors import NextbestError
from training.evaluation.impact import (
    Impact,
    greedy_logged,
    impact_tables,
    row_values,
    take_rates,
)
from training.policy.control import control_mask

MAX_SEGMENT_VALUES = 20  # a customer attribute with more distinct values is not a segment
KEYS = ("customer_id", "ts", "action_id", "propensity")


def impact(
    data: Path,
    config_path: Path | None = None,
    since: date | None = None,
    decisions: pd.DataFrame | None = None,
    feedback: pd.DataFrame | None = None,
    seed: int = 0,
) -> Impact:
    """The impact of the decisions on the outcomes in `data` (see the module docstring)."""
    config = load_config(config_path)
    weights, money = money_weights(config)
    with open_dataset(data).connect() as con:
        frame = decisions if decisions is not None else con.sql("SELECT * FROM exposures").df()
        frame = _checked(frame, since)
        frame, source = with_control_group(frame, config)
        labelled, censored = outcomes_after(con, frame, config, list(weights))
        customers = con.sql("SELECT * FROM customers").df()
    segments = segment_columns(customers)
    labelled = labelled.merge(customers[["customer_id", *segments]], on="customer_id", how="left")
    labelled["week"] = labelled["ts"].dt.to_period("W-SUN").dt.start_time.dt.date.astype(str)
    costs = {a.id: a.cost for a in config.catalog.actions}
    tables = impact_tables(labelled, row_values(labelled, weights, costs), segments, seed)
    if feedback is not None:
        tables["take_rates"] = take_rates(frame, feedback)
    unlogged = int((~greedy_logged(labelled)).sum()) if GREEDY_COLUMN in labelled else None
    return Impact(config.objective.currency, len(labelled), censored,
                  since.isoformat() if since else "", money, source, tables, unlogged)  # fmt: skip


def money_weights(config: Config) -> tuple[dict[str, float], str]:
    """Money per unit of each outcome (the value outcome 1, `outcome_values` as configured) and
    the definition in words; avoided churn beyond the window needs an LTV model and is left out."""
    objective = config.objective
    weights = dict(objective.outcome_values)
    if objective.value_outcome is not None:
        weights[objective.value_outcome] = 1.0
    if not weights:
        raise NextbestError(
            "impact: the objective values no outcome in money (objective.value_outcome or "
            "objective.outcome_values)"
        )
    parts = [f"{o} x {w:g}" for o, w in weights.items()]
    return weights, " + ".join(parts) + " in the outcome window, minus the action's cost"


def _checked(frame: pd.DataFrame, since: date | None) -> pd.DataFrame:
    missing = [c for c in KEYS if c not in frame]
    if missing:
        raise NextbestError(f"impact: the decisions lack the column(s) {', '.join(missing)}")
    frame = frame.assign(ts=pd.to_datetime(frame["ts"]), action_id=frame["action_id"].astype(str))
    if since is not None:
        frame = frame[frame["ts"] >= pd.Timestamp(since)]
    if frame.empty:
        when = f" since {since}" if since else ""
        raise NextbestError(f"impact: no logged decisions{when}")
    return frame.reset_index(drop=True)


def with_control_group(frame: pd.DataFrame, config: Config) -> tuple[pd.DataFrame, str]:
    """Control-group membership per row: the logged column when there is one, else the configured
    salted hash (the same `in_control` the service and batch scoring apply)."""
    if "control_group" in frame:
        logged = frame["control_group"].astype(bool)
        return frame.assign(control_group=logged), "the logged control_group column"
    share, salt = config.decisioning.control_share, config.decisioning.control_salt
    if share <= 0:
        raise NextbestError(
            "impact: no control group (decisioning.control_share is 0 and the decisions have no "
            "control_group column): nothing to measure the decisions against"
        )
    flag = control_mask(frame["customer_id"].astype(str), share, salt)
    given = flag & (frame["action_id"] != CONTROL).to_numpy()
    if given.any():
        raise NextbestError(
            f"impact: {int(given.sum())} decisions of control-group customers (by the configured "
            "decisioning.control_salt and control_share) got an action: the config is not the "
            "one the decisions were made with"
        )
    return frame.assign(control_group=flag), f"the configured hash (share {share:g})"


def outcomes_after(
    con: duckdb.DuckDBPyConnection, frame: pd.DataFrame, config: Config, outcomes: list[str]
) -> tuple[pd.DataFrame, int]:
    """`frame` with one column per money outcome over the window after each decision, keeping
    only the rows whose windows are over; and how many were left out."""
    specs = {o: config.outcomes[o] for o in outcomes}
    table = f"_nextbest_impact_{uuid.uuid4().hex}"
    spine = frame[["customer_id", "ts"]].rename(columns={"ts": "as_of"})
    con.register(f"{table}_df", spine)
    try:
        con.execute(f'CREATE TEMP TABLE "{table}" AS SELECT * FROM "{table}_df"')
        labels = compute_outcomes(con, table, specs)
    finally:
        con.execute(f'DROP TABLE IF EXISTS "{table}"')
        con.unregister(f"{table}_df")
    until = data_span(con, config).observed_until
    seen = np.ones(len(frame), dtype=bool)
    for spec in specs.values():
        seen &= until is not None and is_label_observed(frame["ts"], spec, pd.Timestamp(until))
    observed = labels[list(specs)].astype("float64").reset_index(drop=True)
    joined = pd.concat([frame.drop(columns=list(specs), errors="ignore"), observed], axis=1)
    return joined[seen].reset_index(drop=True), int((~seen).sum())


def segment_columns(customers: pd.DataFrame) -> list[str]:
    """The customers' categorical attributes (text or boolean, 2 to MAX_SEGMENT_VALUES values)."""
    out = []
    for column in customers.columns:
        if column == "customer_id":
            continue
        values = customers[column]
        text = pd.api.types.is_string_dtype(values) or pd.api.types.is_bool_dtype(values)
        if text and 2 <= values.nunique() <= MAX_SEGMENT_VALUES:
            out.append(column)
    return out
