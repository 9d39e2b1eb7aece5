"""Held-out quality of a fitted score model, beside its baseline, and its figures, per role.

Given a fitted model and its TrainingSet, `score_metrics` returns the metrics of the test slice for
the model and, prefixed `baseline_`, for the baseline (`training.evaluation.baselines`), plus the
slice's size and mean outcome; `score_figures` draws the figures a training run logs. Training,
`nextbest evaluate` and the tests all judge a model here, outside the estimator.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from training.data.snapshots import TrainingSet
from training.errors import NextbestError
from training.evaluation import baselines, metrics, plots
from training.scores.base import ScoreModel
from training.scores.churn import ChurnModel
from training.scores.ltv import LtvModel
from training.scores.satisfaction import SatisfactionModel

BASELINE = "baseline_"


def classification_metrics(y: np.ndarray, p: np.ndarray, prefix: str = "") -> dict[str, float]:
    """ROC AUC, PR AUC, Brier score and ECE of probabilities `p` for 0/1 outcomes `y`."""
    return {
        f"{prefix}roc_auc": metrics.roc_auc(y, p),
        f"{prefix}pr_auc": metrics.pr_auc(y, p),
        f"{prefix}brier": metrics.brier(y, p),
        f"{prefix}ece": metrics.expected_calibration_error(y, p),
    }


def regression_metrics(y: np.ndarray, pred: np.ndarray, prefix: str = "") -> dict[str, float]:
    """MAE, RMSE and Spearman rank correlation of predicted against actual answers."""
    return {
        f"{prefix}mae": metrics.mae(y, pred),
        f"{prefix}rmse": metrics.rmse(y, pred),
        f"{prefix}spearman": metrics.spearman(y, pred),
    }


def value_metrics(y: np.ndarray, pred: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Ranking (normalised Gini, top-decile capture) and accuracy (MAE, RMSE, Pearson) of values."""
    return {
        f"{prefix}normalized_gini": metrics.normalized_gini(y, pred),
        f"{prefix}top_decile_capture": metrics.top_decile_capture(y, pred),
        f"{prefix}mae": metrics.mae(y, pred),
        f"{prefix}rmse": metrics.rmse(y, pred),
        f"{prefix}pearson": metrics.pearson(y, pred),
    }


def baseline_prediction(model: ScoreModel, data: TrainingSet, X: np.ndarray) -> np.ndarray:
    """The baseline's prediction for rows X of `data`, for the role of `model` (NaN where a churn
    baseline cannot be fitted: one class in X_fit)."""
    if isinstance(model, ChurnModel):
        fitted = baselines.logistic_baseline(data, model.random_state)
        if fitted is None or not len(X):
            return np.full(len(X), np.nan)
        return np.asarray(fitted.predict_proba(X)[:, 1], dtype=np.float64)
    if isinstance(model, SatisfactionModel):
        return baselines.carry_forward(data, X, model.survey_type, model.mean_)
    if isinstance(model, LtvModel):
        first = model.value_event_types[0] if model.value_event_types else "purchase"
        return baselines.historical_average(data, X, first)
    raise NextbestError(f"no baseline for a {type(model).__name__}")


def score_metrics(model: ScoreModel, data: TrainingSet) -> dict[str, float]:
    """Metrics on the test slice for the model and, prefixed `baseline_`, for its baseline."""
    y, X = data.y_test, data.X_test
    size = {"n_test": float(len(y))}
    mean = float(np.mean(y)) if len(y) else float("nan")
    pred, base = model.predict_score(X), baseline_prediction(model, data, X)
    if isinstance(model, ChurnModel):
        return (
            classification_metrics(y, pred) | {"base_rate": mean} | size
            | classification_metrics(y, base, prefix=BASELINE)
        )  # fmt: skip
    if isinstance(model, SatisfactionModel):
        return (
            regression_metrics(y, pred) | {"mean_label": mean} | size
            | regression_metrics(y, base, prefix=BASELINE)
        )  # fmt: skip
    return value_metrics(y, pred) | {"mean_label": mean} | size | value_metrics(y, base, BASELINE)


def score_figures(model: ScoreModel, data: TrainingSet) -> dict[str, Figure]:
    """The figures of the test slice a run logs: calibration (churn), lift by decile (churn,
    value), predicted against actual (satisfaction, value), and gain importance (all)."""
    y, pred = data.y_test, model.predict_score(data.X_test)
    importance = plots.feature_importance(model.feature_names_, model.gain_importance())
    if isinstance(model, ChurnModel):
        return {
            "calibration": plots.calibration_curve(y, pred),
            "feature_importance": importance,
            "lift_by_decile": plots.lift_by_decile(y, pred),
        }
    if isinstance(model, SatisfactionModel):
        return {
            "predicted_vs_actual": plots.predicted_vs_actual(y, pred),
            "feature_importance": importance,
        }
    return {
        "lift_by_decile": plots.lift_by_decile(y, pred),
        "predicted_vs_actual": plots.predicted_vs_actual(y, pred),
        "feature_importance": importance,
    }
