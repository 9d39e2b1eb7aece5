"""Label-window value (`window_value`): revenue over the value outcome's horizon, by LightGBM with a Tweedie loss.

Revenue per customer is zero for many and heavy-tailed for the rest; the Tweedie family (a
compound Poisson-gamma for 1 < power < 2) models that mass at zero and the long tail together,
with a log link so predictions are never negative. Its baseline, the historical average, is in
`training.evaluation.baselines`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import RegressorMixin

from training.scores.base import LightGBMScoreModel


class LtvModel(RegressorMixin, LightGBMScoreModel):
    """Expected revenue of a customer over the horizon of the value outcome (from the value events
    `value_event_types`, e.g. purchases). Negative amounts (refunds) are fitted as 0."""

    role = "value"
    score_name = "window_value"
    main_metric = "normalized_gini"
    greater_is_better = True

    def __init__(
        self,
        *,
        feature_names: tuple[str, ...] = (),
        categorical: tuple[str, ...] = (),
        value_event_types: tuple[str, ...] = ("purchase",),
        horizon_days: int = 90,
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
        self.feature_names = feature_names
        self.categorical = categorical
        self.value_event_types = value_event_types
        self.horizon_days = horizon_days
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

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        # Amounts are never negative (refunds fit as 0): scikit-learn's check data, centred at
        # zero, cannot be fitted well, so its R^2 > 0.5 check does not apply.
        tags.regressor_tags.poor_score = True
        return tags

    def _objective(self) -> dict[str, Any]:
        return {
            "objective": "tweedie",
            "tweedie_variance_power": self.tweedie_variance_power,
            "metric": "tweedie",
        }

    def _fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> None:
        """Tweedie boosting on X with early stopping on all the validation rows."""
        self.horizon_days_ = int(self.horizon_days)
        X, y = self._fit_rows(X, y, stratify=False)
        self._train(X, np.maximum(y, 0.0), X_val, np.maximum(y_val, 0.0))

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Expected revenue over the horizon per row (never negative)."""
        return np.exp(self._raw(X))

    def _extra_state(self) -> dict[str, Any]:
        return {"horizon_days": self.horizon_days_}

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        self.horizon_days_ = int(state["horizon_days"])

    @classmethod
    def _params_from_state(cls, state: dict[str, Any]) -> dict[str, Any]:
        return {"horizon_days": int(state["horizon_days"])}
