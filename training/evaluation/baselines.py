"""The baseline each score model is judged against, fitted or read from a TrainingSet.

churn: a logistic regression; satisfaction: the last survey answer carried forward; value: last
year's revenue scaled to the horizon. Baselines read what they need from the matrix by name, so a
data set without the feature degrades to a constant rather than failing.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from training.data.snapshots import TrainingSet
from training.scores.base import subsample_rows

BASELINE_MAX_ROWS = 200_000  # the logistic baseline is fitted on a stratified sample beyond this


def logistic_baseline(data: TrainingSet, seed: int = 0) -> Pipeline | None:
    """Median-imputed, standardised numbers and one-hot categoricals into a logistic regression,
    fitted on X_fit (a stratified sample beyond BASELINE_MAX_ROWS); None with one class."""
    y = data.y_fit
    if len(np.unique(y)) < 2:
        return None
    cats = [data.feature_names.index(c) for c in data.categorical]
    nums = [j for j in range(len(data.feature_names)) if j not in set(cats)]
    numeric = make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
    )
    onehot = make_pipeline(
        SimpleImputer(strategy="constant", fill_value=-1, keep_empty_features=True),
        OneHotEncoder(handle_unknown="ignore"),
    )
    prep = ColumnTransformer([("num", numeric, nums), ("cat", onehot, cats)])
    model = make_pipeline(prep, LogisticRegression(max_iter=1000))
    keep = subsample_rows(y, BASELINE_MAX_ROWS, stratify=True, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a baseline, not the model
        model.fit(data.X_fit[keep], y[keep])
    return model


def carry_forward(
    data: TrainingSet, X: np.ndarray, survey_type: str, fallback: float
) -> np.ndarray:
    """Each customer's last `survey_type` answer (`<survey_type>_last`), `fallback` (the training
    mean) where there is none or the data set has no such feature."""
    last = data.column(X, f"{survey_type}_last")
    if last is None:
        return np.full(len(X), fallback, dtype=np.float64)
    return np.where(np.isnan(last), fallback, last).astype(np.float64)


def historical_average(data: TrainingSet, X: np.ndarray, value_event_type: str) -> np.ndarray:
    """Last year's revenue scaled to the horizon (`revenue_365d`, else
    `<value_event_type>_value_sum_365d`), 0 where unknown or when neither feature exists."""
    horizon = data.horizon_days / 365.0
    for name in ("revenue_365d", f"{value_event_type}_value_sum_365d"):
        past = data.column(X, name)
        if past is not None:
            return np.nan_to_num(past.astype(np.float64), nan=0.0) * horizon
    return np.zeros(len(X), dtype=np.float64)
