"""Exposure sets: what uplift models learn from (issue 4).

One row per row of the `exposures` table: the customer's features *as of the exposure's timestamp*
(only events strictly before it, so nothing the action caused leaks in), the action and its logged
propensity, and one label per configured outcome over the window that starts at the exposure.
A label whose window runs past the end of the data is censored and kept as NaN for that outcome
only; `uplift_arrays` drops those rows when it hands one outcome to a learner.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import pandas as pd

from training.config import CONTROL, Config, check_exposure_actions
from training.data.outcomes import compute_outcomes, is_label_observed
from training.data.snapshots import data_span, holdout_mask
from training.errors import NextbestError
from training.features.definition import FeatureBuilder, categorical_names, to_matrix

HOLDOUT_SHARE = 0.3  # held-out customers: never fitted on (learner selection + evaluation)
EVALUATION_SHARE = 0.15  # of those, the customers only `nextbest evaluate` judges on
KEY_COLUMNS = ("customer_id", "as_of", "action_id", "propensity")


@dataclass(frozen=True)
class ExposureSet:
    """Features, treatment, propensity and labels of every exposure.

    `frame` columns: customer_id, as_of (the exposure's ts), action_id, propensity, then
    `feature_names`, then one float column per outcome in `outcomes` (NaN: censored or unknown).
    Rows are sorted by (as_of, customer_id, action_id).
    """

    frame: pd.DataFrame
    feature_names: list[str]
    outcomes: list[str]

    @property
    def actions(self) -> list[str]:
        """The actions exposed at least once (control excluded), sorted like `actions_` of a learner."""
        return sorted(set(self.frame["action_id"].unique().tolist()) - {CONTROL})

    @property
    def categorical(self) -> list[int]:
        """Column indices of the categorical features in `to_matrix(frame, feature_names)`, the
        form the uplift learners' `categorical` parameter takes."""
        cats = set(categorical_names(self.frame, self.feature_names))
        return [j for j, name in enumerate(self.feature_names) if name in cats]


def exposure_spine_sql(table: str) -> str:
    """SQL creating temp table `table` (customer_id, as_of, action_id, propensity) from the
    exposures view in a deterministic order, which features and labels both keep."""
    return (
        f'CREATE TEMP TABLE "{table}" AS SELECT customer_id, ts AS as_of, action_id, propensity '
        "FROM exposures ORDER BY ts, customer_id, action_id, propensity"
    )


def build_exposure_set(
    con: duckdb.DuckDBPyConnection, builder: FeatureBuilder, config: Config
) -> ExposureSet:
    """Features as of each exposure, its action and propensity, and its labels (censored -> NaN).

    Raises ConfigError when an exposure names an action that is neither in the catalog nor
    "control" (its uplift could never be served), NextbestError when there are no exposures.
    """
    actions = [a for (a,) in con.execute("SELECT DISTINCT action_id FROM exposures").fetchall()]
    if not actions:
        raise NextbestError("exposures: the data set has no exposures to learn uplift from")
    check_exposure_actions(config.catalog, actions)
    table = f"_nextbest_exposures_{uuid.uuid4().hex}"
    try:
        con.execute(exposure_spine_sql(table))
        keys = con.sql(f'SELECT * FROM "{table}"').df()
        features = builder.transform(con, spine=table)
        labels = compute_outcomes(con, table, config.outcomes)
    finally:
        con.execute(f'DROP TABLE IF EXISTS "{table}"')
    _check_aligned(keys, features, labels)
    names = list(builder.feature_names_)
    frame = pd.concat(
        [
            keys[list(KEY_COLUMNS)].reset_index(drop=True),
            features[names].reset_index(drop=True),
            censor(labels, config, data_span(con, config).observed_until).reset_index(drop=True),
        ],
        axis=1,
    )
    return ExposureSet(frame=frame, feature_names=names, outcomes=list(config.outcomes))


def _check_aligned(keys: pd.DataFrame, features: pd.DataFrame, labels: pd.DataFrame) -> None:
    """Features and labels must come back in spine order (they are joined by position)."""
    ids = keys["customer_id"].to_numpy()
    same = len(features) == len(labels) == len(keys)
    same = same and bool(np.array_equal(features["customer_id"].to_numpy(), ids))
    same = same and bool(np.array_equal(labels["customer_id"].to_numpy(), ids))
    if not same:
        raise NextbestError("exposure features and labels came back out of spine order")


def censor(labels: pd.DataFrame, config: Config, observed_until: datetime | None) -> pd.DataFrame:
    """The outcome columns of `labels` as float, NaN where the window after `as_of` is not fully
    observed before `observed_until` (None: no events at all, nothing is observed)."""
    out = pd.DataFrame(index=labels.index)
    for name, spec in config.outcomes.items():
        values = labels[name].astype("float64")
        if observed_until is None:
            out[name] = np.nan
        else:
            seen = is_label_observed(labels["as_of"], spec, pd.Timestamp(observed_until))
            out[name] = values.where(seen)
    return out


def split_exposures(frame: pd.DataFrame, share: float = HOLDOUT_SHARE) -> np.ndarray:
    """Held-out mask by customer: every exposure of a customer falls on the same side, so a
    learner is never judged on a customer it trained on."""
    return holdout_mask(frame["customer_id"], share=share)


def evaluation_exposures(frame: pd.DataFrame) -> np.ndarray:
    """The held-out customers `nextbest evaluate` judges a bundle on. They are a stable part of
    `split_exposures` (the same customer hash, a smaller share), disjoint from
    `selection_exposures`: a learner chosen and calibrated on some customers is judged on others,
    so the report's policy values carry no winner's curse."""
    return holdout_mask(frame["customer_id"], share=EVALUATION_SHARE)


def selection_exposures(frame: pd.DataFrame) -> np.ndarray:
    """The held-out customers uplift training chooses and calibrates learners on: held out from
    fitting, and not among the customers of `evaluation_exposures`."""
    return split_exposures(frame) & ~evaluation_exposures(frame)


def uplift_arrays(
    frame: pd.DataFrame, outcome: str, feature_names: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(X, treatment, y, propensity) for one outcome, rows with a missing label dropped: the
    inputs of `UpliftLearner.fit` and of the policy-evaluation functions."""
    rows = frame[frame[outcome].notna()]
    X = to_matrix(rows, feature_names)
    treatment = rows["action_id"].to_numpy(dtype=str)
    y = rows[outcome].to_numpy(dtype=np.float64)
    propensity = rows["propensity"].to_numpy(dtype=np.float64)
    return X, treatment, y, propensity
