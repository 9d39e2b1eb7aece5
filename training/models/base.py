"""The interface every score model follows, so training, the bundle and promotion treat them alike.

A score model is a scikit-learn-style estimator over the model matrix (`features.to_matrix`): float32
numpy, categoricals as codes. It persists WITHOUT pickle — LightGBM's text format plus JSON — so a
bundle is safe to load and readable by other tools.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from matplotlib.figure import Figure


@dataclass(frozen=True)
class TrainingSet:
    """One score's data: fit, early-stopping/calibration, and a later test slice (time-aware).

    Baselines read what they need (last NPS answer, historical revenue) from the matrix by name.
    """

    feature_names: list[str]
    categorical: list[str]
    X_fit: np.ndarray
    y_fit: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    horizon_days: int = 90

    def column(self, X: np.ndarray, name: str) -> np.ndarray | None:
        """Column `name` of a matrix of this set, or None if the data set has no such feature."""
        if name not in self.feature_names:
            return None
        return X[:, self.feature_names.index(name)]


@runtime_checkable
class ScoreModel(Protocol):
    """What train.py, bundle.py and promote.py rely on."""

    role: str  # "churn" | "satisfaction" | "value"
    score_name: str  # column in the scores table: churn_probability | satisfaction | ltv
    main_metric: str  # the metric promotion compares
    greater_is_better: bool

    def fit_set(self, data: TrainingSet) -> ScoreModel: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def evaluate(self, data: TrainingSet) -> dict[str, float]: ...

    def figures(self, data: TrainingSet) -> dict[str, Figure]: ...

    def params(self) -> dict[str, Any]: ...

    def save(self, folder: Path) -> None: ...

    @classmethod
    def load(cls, folder: Path) -> ScoreModel: ...
