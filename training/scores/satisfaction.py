"""Satisfaction: the customer's next survey answer (NPS 0-10 or CSAT 1-5), by LightGBM regression.

Regression keeps the order and spacing of the answer scale and predicts its mean, which is what
the uplift on satisfaction and the money per point of the objective need; promoter / passive /
detractor classes can be derived from it. The baseline carries the last answer forward.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from matplotlib.figure import Figure

from training.data.snapshots import TrainingSet
from training.evaluation import metrics, plots
from training.scores.base import LightGBMScoreModel


def carry_forward(
    data: TrainingSet, X: np.ndarray, survey_type: str, fallback: float
) -> np.ndarray:
    """The baseline: each customer's last `survey_type` answer (`<survey_type>_last`), `fallback`
    (the training mean) where there is none or the data set has no such feature."""
    last = data.column(X, f"{survey_type}_last")
    if last is None:
        return np.full(len(X), fallback, dtype=np.float64)
    return np.where(np.isnan(last), fallback, last).astype(np.float64)


def regression_metrics(y: np.ndarray, pred: np.ndarray, prefix: str = "") -> dict[str, float]:
    """MAE, RMSE and Spearman rank correlation of predicted against actual answers."""
    return {
        f"{prefix}mae": metrics.mae(y, pred),
        f"{prefix}rmse": metrics.rmse(y, pred),
        f"{prefix}spearman": metrics.spearman(y, pred),
    }


class SatisfactionModel(LightGBMScoreModel):
    """Expected next answer to the `survey_type` survey, clipped to the range of answers seen in
    training. Shares the tree-size rules and persistence of `LightGBMScoreModel`."""

    role = "satisfaction"
    score_name = "satisfaction"
    main_metric = "mae"
    greater_is_better = False

    def __init__(
        self,
        *,
        survey_type: str = "nps",
        n_estimators: int = 3000,
        learning_rate: float = 0.05,
        num_leaves: int | None = None,
        min_child_samples: int | None = None,
        max_bin: int = 63,
        feature_fraction: float = 0.8,
        bagging_fraction: float = 0.8,
        lambda_l2: float = 1.0,
        early_stopping_rounds: int = 50,
        max_fit_rows: int | None = 1_500_000,
        n_jobs: int = 2,
        random_state: int = 0,
    ) -> None:
        self.survey_type = survey_type
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.max_bin = max_bin
        self.feature_fraction = feature_fraction
        self.bagging_fraction = bagging_fraction
        self.lambda_l2 = lambda_l2
        self.early_stopping_rounds = early_stopping_rounds
        self.max_fit_rows = max_fit_rows
        self.n_jobs = n_jobs
        self.random_state = random_state

    label_range_: tuple[float, float]
    mean_: float

    def _objective(self) -> dict[str, Any]:
        return {"objective": "regression", "metric": "l2"}

    def fit_set(self, data: TrainingSet) -> Self:
        """L2 boosting on X_fit with early stopping on the whole validation slice."""
        self._start(data)
        X, y = self._fit_rows(data, stratify=False)
        self.label_range_ = (float(np.min(data.y_fit)), float(np.max(data.y_fit)))
        self.mean_ = float(np.mean(data.y_fit))
        self._train(X, y, data.X_val, data.y_val)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Expected next answer per row, within the observed answer range."""
        return np.clip(self._raw(X), *self.label_range_)

    def baseline(self, data: TrainingSet, X: np.ndarray) -> np.ndarray:
        """Last answer carried forward (training mean where missing)."""
        return carry_forward(data, X, self.survey_type, self.mean_)

    def evaluate(self, data: TrainingSet) -> dict[str, float]:
        """MAE, RMSE and Spearman on the test slice for the model and the carry-forward baseline."""
        y = data.y_test
        out = regression_metrics(y, self.predict(data.X_test))
        out["mean_label"] = float(np.mean(y)) if len(y) else float("nan")
        out["n_test"] = float(len(y))
        out.update(regression_metrics(y, self.baseline(data, data.X_test), prefix="baseline_"))
        return out

    def figures(self, data: TrainingSet) -> dict[str, Figure]:
        return {
            "predicted_vs_actual": plots.predicted_vs_actual(
                data.y_test, self.predict(data.X_test)
            ),
            "feature_importance": plots.feature_importance(
                self.feature_names_, self.gain_importance()
            ),
        }

    def _extra_state(self) -> dict[str, Any]:
        return {"label_range": list(self.label_range_), "mean": self.mean_}

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        low, high = state["label_range"]
        self.label_range_ = (float(low), float(high))
        self.mean_ = float(state["mean"])
