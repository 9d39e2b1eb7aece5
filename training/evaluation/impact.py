"""What the decisions earned in production, against the global control group (issue 19).

Every logged decision has a value: the money that followed it in the outcome window (the objective's
value outcome, plus `outcome_values` per unit of other outcomes) minus the cost of the action given.
The control group is a random share of customers (a salted hash) who get no action, and every row
carries its logged propensity: the probability, marginal over control group and exploration, of the
action it got. Per slice of the rows (all, a model version, a channel, a segment, a week):

- the decisions' value is the mean value of the rows outside the control group (they follow the
  production policy, so a plain mean is unbiased for it);
- doing nothing is valued by inverse propensity weighting (Hajek) over every row that got nothing:
  the control group and the customers the policy left alone, each weighted by 1 / propensity;
- the incremental value is their difference, per decision.

Per action, the value of giving that action is valued alike (Hajek over the rows that got it) minus
doing nothing: the action's average effect over the customers it could be given to (exploration
makes that everyone eligible).

Per greedy action (the action the policy's greedy ranking put first, logged for every decision,
shown or not): the mean value of the rows outside the control group whose greedy action was a
minus the mean of the control-group rows whose greedy action was a. The control group is a random
hash, so both are the same kind of customer: this is the intention-to-treat effect of "the policy
wants a" on exactly the customers it wanted it for (exploration included), with no weights.

Intervals are 95% normal intervals with a bootstrap standard error: Poisson weights per row
(`BOOTSTRAP` replicates, seeded), which keeps the pairing of both terms in the same draw. Pure
numpy and pandas: the caller reads the log and the outcomes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from training.config import CONTROL, GREEDY_COLUMN
from training.errors import NextbestError
from training.uplift.metrics import Z_95

BOOTSTRAP = 300
MIN_ROWS = 20  # fewer rows in a slice (or fewer than 2 untreated) give no estimate
SLICES = ("model_version", "channel")  # logged columns a slice table is made for when present


@dataclass(frozen=True)
class Estimate:
    """Incremental value per decision with its 95% half-width, the rows it stands on."""

    value: float
    ci: float
    decisions: int
    control: int
    treated_value: float
    nothing_value: float


def row_values(
    frame: pd.DataFrame, weights: Mapping[str, float], costs: Mapping[str, float]
) -> np.ndarray:
    """Money per row: sum of weight * outcome (NaN outcomes count 0: an unanswered survey) minus
    the cost of the action given (0 for control)."""
    money = np.zeros(len(frame))
    for outcome, weight in weights.items():
        money += weight * np.nan_to_num(frame[outcome].to_numpy(dtype=np.float64))
    cost = frame["action_id"].map(lambda a: costs.get(a, 0.0)).to_numpy(dtype=np.float64)
    return money - cost


BLOCK = 50  # bootstrap replicates drawn at a time (memory: BLOCK x rows floats)


def incremental(
    value: np.ndarray,
    action: np.ndarray,
    propensity: np.ndarray,
    control_group: np.ndarray,
    arm: str | None = None,
    seed: int = 0,
) -> Estimate | None:
    """The incremental value per decision of the policy (`arm` None) or of giving `arm`, over
    doing nothing, with a Poisson-bootstrap 95% interval; None when the rows cannot tell."""
    value = np.asarray(value, dtype=np.float64)
    action = np.asarray(action).astype(str)
    p = np.asarray(propensity, dtype=np.float64)
    if not np.all((p > 0) & (p <= 1)):
        raise NextbestError("impact: every propensity must be in (0, 1]")
    nothing = action == CONTROL
    if arm is None:
        treated_w = (~np.asarray(control_group, dtype=bool)).astype(np.float64)
    else:
        treated_w = (action == arm) / p
    control_w = nothing / p
    return _bootstrapped(value, treated_w, control_w, seed)


def intention_to_treat(
    value: np.ndarray, control_group: np.ndarray, seed: int = 0
) -> Estimate | None:
    """Mean value of the rows outside the control group minus that of the control-group rows
    (plain means: the control group is a random share of the same customers), with the same
    bootstrap interval; None below MIN_ROWS rows on either side (a mean of a few skewed values
    has no trustworthy bootstrap interval)."""
    control = np.asarray(control_group, dtype=bool)
    treated_w, control_w = (~control).astype(np.float64), control.astype(np.float64)
    value = np.asarray(value, dtype=np.float64)
    return _bootstrapped(value, treated_w, control_w, seed, min_untreated=MIN_ROWS)


def _bootstrapped(
    value: np.ndarray, treated_w: np.ndarray, control_w: np.ndarray, seed: int,
    min_untreated: int = 2,
) -> Estimate | None:  # fmt: skip
    """The weighted difference and its Poisson-bootstrap 95% half-width; None below MIN_ROWS
    treated rows or `min_untreated` untreated ones."""
    treated_n, control_n = int(np.count_nonzero(treated_w)), int(np.count_nonzero(control_w))
    if treated_n < MIN_ROWS or control_n < min_untreated or len(value) < MIN_ROWS:
        return None
    point = _difference(value, treated_w, control_w, np.ones((1, len(value))))
    rng = np.random.default_rng(seed)
    blocks = [
        _difference(
            value, treated_w, control_w, rng.poisson(1.0, (BLOCK, len(value))).astype(float)
        )
        for _ in range(BOOTSTRAP // BLOCK)
    ]
    draws = np.concatenate(blocks)
    draws = draws[np.isfinite(draws)]
    se = float(np.std(draws, ddof=1)) if len(draws) > 1 else float("nan")
    t = float(np.sum(treated_w * value) / np.sum(treated_w))
    c = float(np.sum(control_w * value) / np.sum(control_w))
    return Estimate(float(point[0]), Z_95 * se, treated_n, control_n, t, c)


def _difference(
    value: np.ndarray, treated_w: np.ndarray, control_w: np.ndarray, boot: np.ndarray
) -> np.ndarray:
    """Weighted mean of the treated minus weighted mean of the untreated, per bootstrap row."""
    with np.errstate(invalid="ignore", divide="ignore"):
        t = (boot * treated_w) @ value / (boot @ treated_w)
        c = (boot * control_w) @ value / (boot @ control_w)
    return np.asarray(t - c)


ESTIMATE_COLUMNS = ("rows", "incremental_value", "ci", "decisions", "control", "decided_value",
                    "nothing_value")  # fmt: skip


def greedy_logged(frame: pd.DataFrame) -> np.ndarray:
    """Which rows logged their greedy action (none when the column is absent)."""
    if GREEDY_COLUMN not in frame:
        return np.zeros(len(frame), dtype=bool)
    greedy = frame[GREEDY_COLUMN]
    return np.asarray(greedy.notna() & (greedy.astype(str).str.strip() != ""), dtype=bool)


def greedy_table(frame: pd.DataFrame, value: np.ndarray, seed: int = 0) -> pd.DataFrame:
    """Per greedy action: the policy's decisions for the customers it wanted that action for
    against the control-group customers it wanted it for (`intention_to_treat`). Rows without a
    logged greedy action are left out (`greedy_logged`); an action without a control-group row
    has no row; fewer than MIN_ROWS on either side give a row without an estimate."""
    logged = greedy_logged(frame)
    control = frame["control_group"].to_numpy(dtype=bool)
    greedy = (
        frame[GREEDY_COLUMN].astype(str).to_numpy()
        if GREEDY_COLUMN in frame
        else np.full(len(frame), "")
    )
    rows = []
    for action in sorted(set(greedy[logged])):
        mine = logged & (greedy == action)
        if not (mine & control).any():
            continue
        estimate = intention_to_treat(value[mine], control[mine], seed)
        row = _row({GREEDY_COLUMN: action}, estimate, int(mine.sum()))
        held = int((mine & control).sum())  # the counts, with or without an estimate
        rows.append(row | {"decisions": int(mine.sum()) - held, "control": held})
    return pd.DataFrame(rows, columns=[GREEDY_COLUMN, *ESTIMATE_COLUMNS])


def _row(key: dict[str, object], estimate: Estimate | None, rows: int) -> dict[str, object]:
    base = key | {"rows": rows}
    if estimate is None:
        return base | {"incremental_value": np.nan, "ci": np.nan, "decisions": np.nan,
                       "control": np.nan, "decided_value": np.nan, "nothing_value": np.nan}  # fmt: skip
    return base | {
        "incremental_value": estimate.value, "ci": estimate.ci, "decisions": estimate.decisions,
        "control": estimate.control, "decided_value": estimate.treated_value,
        "nothing_value": estimate.nothing_value,
    }  # fmt: skip


def impact_tables(
    frame: pd.DataFrame, value: np.ndarray, segments: Iterable[str] = (), seed: int = 0
) -> dict[str, pd.DataFrame]:
    """Every table of the impact page from decision rows (action_id, propensity, control_group,
    week, and any of model_version, channel and the `segments` columns) and their money values.

    Tables: `overall` (one row), `actions` (giving each action vs nothing), `greedy` (per
    logged greedy action, the policy vs the control group; when the rows have a `greedy_action`
    column), `weekly`, one per present column of SLICES, and `segments` (column, segment, ...)."""

    def estimate(rows: np.ndarray, arm: str | None = None) -> Estimate | None:
        part = frame[rows]
        return incremental(value[rows], part["action_id"].to_numpy(), part["propensity"].to_numpy(),
                           part["control_group"].to_numpy(), arm, seed)  # fmt: skip

    everything = np.ones(len(frame), dtype=bool)
    tables = {"overall": pd.DataFrame([_row({"slice": "all"}, estimate(everything), len(frame))])}
    actions = sorted(set(frame["action_id"].astype(str)) - {CONTROL})
    tables["actions"] = pd.DataFrame(
        [
            _row({"action_id": a}, estimate(everything, a), int((frame["action_id"] == a).sum()))
            for a in actions
        ]  # fmt: skip
    )
    if GREEDY_COLUMN in frame:
        tables["greedy"] = greedy_table(frame, value, seed)
    groups = [("weekly", "week")] + [(c, c) for c in SLICES if c in frame]
    for name, column in groups:
        keys = frame[column].astype(str).to_numpy()
        tables[name] = pd.DataFrame(
            [
                _row({column: k}, estimate(keys == k), int((keys == k).sum()))
                for k in sorted(set(keys))
            ]
        )
    segment_rows = []
    for column in segments:
        keys = frame[column].astype(str).to_numpy()
        for k in sorted(set(keys)):
            rows = keys == k
            segment_rows.append(
                _row({"column": column, "segment": k}, estimate(rows), int(rows.sum()))
            )
    tables["segments"] = pd.DataFrame(segment_rows)
    return tables


def take_rates(exposures: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """Per action: decisions that showed it first, accepted and declined (latest feedback per
    decision and action), and their rates per shown."""
    shown = exposures[exposures["action_id"] != CONTROL].groupby("action_id").size()
    if feedback.empty:
        counts = pd.DataFrame(index=shown.index, columns=["accepted", "declined"], data=0)
    else:
        counts = (feedback.groupby(["action_id", "outcome"]).size().unstack(fill_value=0)
                  .reindex(columns=["accepted", "declined"], fill_value=0))  # fmt: skip
    table = pd.DataFrame({"shown": shown}).join(counts, how="outer").fillna(0).astype(int)
    table["accept_rate"] = table["accepted"] / table["shown"].where(table["shown"] > 0)
    table["decline_rate"] = table["declined"] / table["shown"].where(table["shown"] > 0)
    return table.reset_index(names="action_id")


@dataclass
class Impact:
    """The impact tables and what they stand on."""

    currency: str
    rows: int  # decisions whose outcome windows are over
    censored: int  # decisions left out: their windows are not over yet
    since: str
    money: str  # what the value of a decision counts, in words
    control_source: str  # where control-group membership came from
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    greedy_unlogged: int | None = None  # rows without a greedy action (None: none logs one)

    def metrics(self) -> dict[str, float]:
        """Flat MLflow metrics: impact.value, impact.ci, impact.action.<id>.value, ..."""
        out: dict[str, float] = {"impact.decisions": float(self.rows)}
        overall = self.tables["overall"].iloc[0]
        for key, column in (("value", "incremental_value"), ("ci", "ci")):
            if np.isfinite(overall[column]):
                out[f"impact.{key}"] = float(overall[column])
        if self.greedy_unlogged is not None:
            out["impact.greedy_action.unlogged"] = float(self.greedy_unlogged)
        for name, column in (("actions", "action_id"), ("greedy", GREEDY_COLUMN),
                             ("model_version", "model_version"), ("channel", "channel")):  # fmt: skip
            for row in self.tables.get(name, pd.DataFrame()).to_dict("records"):
                if np.isfinite(row["incremental_value"]):
                    out[f"impact.{column}.{row[column]}.value"] = float(row["incremental_value"])
                    out[f"impact.{column}.{row[column]}.ci"] = float(row["ci"])
        for row in self.tables.get("take_rates", pd.DataFrame()).to_dict("records"):
            if np.isfinite(row["accept_rate"]):
                out[f"impact.action_id.{row['action_id']}.accept_rate"] = float(row["accept_rate"])
        return out
