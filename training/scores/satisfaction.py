"""Satisfaction: the customer's next survey answer (NPS 0-10 or CSAT 1-5), by LightGBM regression.

Regression keeps the order and spacing of the answer scale and predicts its mean, which is what
the uplift on satisfaction and the money per point of the objective need; promoter / passive /
detractor classes can be derived from it. Its baseline, the last answer carried forward, is in
`training.evaluation.baselines`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import RegressorMixin

from training.scores.base import LightGBMScoreModel


class SatisfactionModel(RegressorMixin, LightGBMScoreModel):
    """Expected next answer to the `survey_type` survey, clipped to the range of answers seen in
    training. Shares the tree-size rules and persistence of `LightGBMScoreModel`."""

    role = "satisfaction"
    score_name = "satisfaction"
    main_metric = "mae"
    greater_is_better = False

    def __init__(
        self,
        *,
        feature_names: tuple[str, ...] = (),
        categorical: tuple[str, ...] = (),
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
        self.feature_names = feature_names
        self.categorical = categorical
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

    def _fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> None:
        """L2 boosting on X with early stopping on all the validation rows."""
        self.label_range_ = (float(np.min(y)), float(np.max(y)))
        self.mean_ = float(np.mean(y))
        X, y = self._fit_rows(X, y, stratify=False)
        self._train(X, y, X_val, y_val)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Expected next answer per row, within the observed answer range."""
        return np.clip(self._raw(X), *self.label_range_)

    def _extra_state(self) -> dict[str, Any]:
        return {"label_range": list(self.label_range_), "mean": self.mean_}

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        low, high = state["label_range"]
        self.label_range_ = (float(low), float(high))
        self.mean_ = float(state["mean"])
