"""The simulator's ground truth as money under a configured objective: what every arm is truly
worth for each logged exposure, so a policy's true value and the oracle's can be computed.

The truth (`<data>_truth/exposures_truth.parquet`, written by `nextbest synth`) holds each arm's
expected churn, 90-day value and satisfaction for the exposures of the first customers. Config
outcomes map onto it by role: the churn role reads `churn_<arm>`, the objective's value outcome
`value_<arm>`, the satisfaction role `satisfaction_<arm>`; other outcomes carry no money.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from training.config import Config
from training.errors import NextbestError

TRUTH_FILE = "exposures_truth.parquet"
KEYS = ["customer_id", "as_of", "action_id"]


def truth_columns(config: Config) -> dict[str, str]:
    """Config outcome name -> the truth's column prefix, for the outcomes the objective values."""
    prefix: dict[str, str] = {}
    for name, spec in config.outcomes.items():
        if spec.role in ("churn", "satisfaction"):
            prefix[name] = spec.role
        elif name == config.objective.value_outcome:
            prefix[name] = "value"
    return prefix


def load_exposure_truth(truth_dir: Path, keys: pd.DataFrame) -> pd.DataFrame:
    """Truth rows aligned with `keys` (customer_id, as_of, action_id); NaN where none exists."""
    path = Path(truth_dir) / TRUTH_FILE
    if not path.exists():
        raise NextbestError(f"{path}: no simulator truth here (written by `nextbest synth`)")
    truth = pd.read_parquet(path).rename(columns={"ts": "as_of"})
    truth["as_of"] = pd.to_datetime(truth["as_of"])
    left = keys[KEYS].assign(as_of=pd.to_datetime(keys["as_of"]))
    aligned = left.merge(truth.drop(columns=["propensity", "campaign"], errors="ignore"),
                         on=KEYS, how="left", validate="one_to_one")  # fmt: skip
    return aligned.reset_index(drop=True)


def true_uplift(
    truth: pd.DataFrame, arms: list[str], prefixes: Mapping[str, str]
) -> dict[str, np.ndarray]:
    """Per outcome the truth covers (`prefixes`), the (n, arms - 1) true effect of each action
    vs control, per row; NaN for an arm the truth does not cover. `arms` starts with "control"."""
    uplift = {}
    for outcome, prefix in prefixes.items():
        base = truth[f"{prefix}_control"].to_numpy(dtype=np.float64)
        effects = [
            truth[column].to_numpy(dtype=np.float64) - base
            if column in truth
            else np.full(len(truth), np.nan)
            for column in (f"{prefix}_{arm}" for arm in arms[1:])
        ]
        uplift[outcome] = np.column_stack(effects) if effects else np.empty((len(truth), 0))
    return uplift


def true_net_values(
    truth: pd.DataFrame,
    arms: list[str],
    weights: Mapping[str, np.ndarray],
    prefixes: Mapping[str, str],
    arm_cost: np.ndarray,
) -> np.ndarray:
    """(n, arms) true incremental net value of each arm vs control (column 0 = 0), per row.

    `arms` starts with "control"; an arm the truth does not cover, or a row without truth, is NaN.
    """
    n = len(truth)
    net = np.zeros((n, len(arms)), dtype=np.float64)
    uplift = true_uplift(truth, arms, prefixes)
    for outcome, weight in weights.items():
        if outcome in uplift:
            net[:, 1:] += np.asarray(weight, dtype=np.float64).reshape(-1, 1) * uplift[outcome]
    net[:, 1:] -= arm_cost[1:]
    missing = (
        truth[f"{next(iter(prefixes.values()))}_control"].isna().to_numpy()
        if prefixes
        else np.ones(n, bool)
    )
    net[missing] = np.nan
    return net


CEILING_PARAMS = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 31,
                  "min_child_samples": 50, "num_threads": 2, "verbose": -1}  # fmt: skip
CEILING_ROUNDS = 300


def ceiling_arms(
    X_fit: np.ndarray, net_fit: np.ndarray, X_new: np.ndarray, eligible_new: np.ndarray
) -> np.ndarray:
    """The best eligible arm of each new row by a policy that learned from the true net values
    themselves (no outcome noise): one LightGBM per arm, fitted on `net_fit` (column 0, nothing,
    is 0 by definition)."""
    import lightgbm as lgb

    predicted = np.zeros((len(X_new), net_fit.shape[1]))
    for a in range(1, net_fit.shape[1]):
        data = lgb.Dataset(X_fit, net_fit[:, a])
        predicted[:, a] = lgb.train(CEILING_PARAMS, data, CEILING_ROUNDS).predict(X_new)
    return np.argmax(np.where(eligible_new, predicted, -np.inf), axis=1)


def feature_ceiling(
    X: np.ndarray, net: np.ndarray, eligible: np.ndarray, folds: int = 2, seed: int = 0
) -> float:
    """The share of the oracle's value that these features allow at this data size: each fold's
    arms chosen by `ceiling_arms` fitted on the other folds, judged on the fold's truth. An upper
    bound for any learner of the same rows and features, which sees noisy outcomes instead."""
    n = len(net)
    fold = np.random.default_rng(seed).permutation(n) % folds
    chosen = np.zeros(n, dtype=np.int64)
    for f in range(folds):
        fit, new = fold != f, fold == f
        chosen[new] = ceiling_arms(X[fit], net[fit], X[new], eligible[new])
    best = np.max(np.where(eligible, net, -np.inf), axis=1)
    return float(net[np.arange(n), chosen].mean() / best.mean())
