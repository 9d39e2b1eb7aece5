"""Lifetime value: revenue over the outcome's horizon, by LightGBM with a Tweedie loss.

Revenue per customer is zero for many and heavy-tailed for the rest; the Tweedie family (a
compound Poisson-gamma for 1 < power < 2) models that mass at zero and the long tail together,
with a log link so predictions are never negative. The baseline is the historical average.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from matplotlib.figure import Figure

from training.data.snapshots import TrainingSet
from training.evaluation import metrics, plots
from training.scores.base import LightGBMScoreModel


def historical_average(data: TrainingSet, X: np.ndarray, value_event_type: str) -> np.ndarray:
    """The baseline: last year's revenue scaled to the horizon (`revenue_365d`, else
    `<value_event_type>_value_sum_365d`), 0 where unknown or when neither feature exists."""
    horizon = data.horizon_days / 365.0
    for name in ("revenue_365d", f"{value_event_type}_value_sum_365d"):
        past = data.column(X, name)
        if past is not None:
            return np.nan_to_num(past.astype(np.float64), nan=0.0) * horizon
    return np.zeros(len(X), dtype=np.float64)


def value_metrics(y: np.ndarray, pred: np.ndarray, prefix: str = "") -> dict[str, float]:
    """Ranking (normalised Gini, top-decile capture) and accuracy (MAE, RMSE, Pearson) of values."""
    return {
        f"{prefix}normalized_gini": metrics.normalized_gini(y, pred),
        f"{prefix}top_decile_capture": metrics.top_decile_capture(y, pred),
        f"{prefix}mae": metrics.mae(y, pred),
        f"{prefix}rmse": metrics.rmse(y, pred),
        f"{prefix}pearson": metrics.pearson(y, pred),
    }


class LtvModel(LightGBMScoreModel):
    """Expected revenue of a customer over the horizon of the value outcome (from the value events
    `value_event_types`, e.g. purchases). Negative amounts (refunds) are fitted as 0."""

    role = "value"
    score_name = "ltv"
    main_metric = "normalized_gini"
    greater_is_better = True

    def __init__(
        self,
        *,
        value_event_types: tuple[str, ...] = ("purchase",),
        tweedie_variance_power: float = 1.3,
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
        self.value_event_types = value_event_types
        self.tweedie_variance_power = tweedie_variance_power
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

    horizon_days_: int

    def _objective(self) -> dict[str, Any]:
        return {
            "objective": "tweedie",
            "tweedie_variance_power": self.tweedie_variance_power,
            "metric": "tweedie",
        }

    def fit_set(self, data: TrainingSet) -> Self:
        """Tweedie boosting on X_fit with early stopping on the whole validation slice."""
        self._start(data)
        self.horizon_days_ = int(data.horizon_days)
        X, y = self._fit_rows(data, stratify=False)
        self._train(X, np.maximum(y, 0.0), data.X_val, np.maximum(data.y_val, 0.0))
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Expected revenue over the horizon per row (never negative)."""
        return np.exp(self._raw(X))

    def baseline(self, data: TrainingSet, X: np.ndarray) -> np.ndarray:
        """Historical average revenue scaled to the horizon."""
        first = self.value_event_types[0] if self.value_event_types else "purchase"
        return historical_average(data, X, first)

    def evaluate(self, data: TrainingSet) -> dict[str, float]:
        """Value metrics on the test slice for the model and the historical-average baseline."""
        y = data.y_test
        out = value_metrics(y, self.predict(data.X_test))
        out["mean_label"] = float(np.mean(y)) if len(y) else float("nan")
        out["n_test"] = float(len(y))
        out.update(value_metrics(y, self.baseline(data, data.X_test), prefix="baseline_"))
        return out

    def figures(self, data: TrainingSet) -> dict[str, Figure]:
        pred = self.predict(data.X_test)
        return {
            "lift_by_decile": plots.lift_by_decile(data.y_test, pred),
            "predicted_vs_actual": plots.predicted_vs_actual(data.y_test, pred),
            "feature_importance": plots.feature_importance(
                self.feature_names_, self.gain_importance()
            ),
        }

    def _extra_state(self) -> dict[str, Any]:
        return {"horizon_days": self.horizon_days_}

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        self.horizon_days_ = int(state["horizon_days"])
