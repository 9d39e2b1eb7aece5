"""Churn probability: a LightGBM binary classifier with domain monotone constraints and a
probability calibrator (judged against a logistic-regression baseline in
`training.evaluation.score_metrics`).

The validation rows (`fit(..., eval_set=(X_val, y_val))`) are used twice without overlap: the even
rows stop the boosting early, the odd rows fit the calibrator (the rows are sorted by snapshot and
customer, so both halves span every snapshot). Calibration matters because the probability is
multiplied by money downstream (avoided churn x LTV), not only ranked.

A scikit-learn binary classifier: `predict_proba` gives the calibrated probabilities of classes
0/1 (`classes_`), `predict` the label (probability above 1/2), and `predict_score` the churn
probability the scores table holds. The calibrator is a plain value (a dataclass of knots), not an
estimator.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import optimize, special
from sklearn.base import ClassifierMixin
from sklearn.isotonic import isotonic_regression
from sklearn.utils.multiclass import check_classification_targets, type_of_target

from training.errors import EstimatorInputError, NextbestError
from training.scores.base import LightGBMScoreModel, require_fitted
from training.scores.constraints import monotone_constraints

ISOTONIC_MIN_ROWS = 1000  # isotonic needs this many calibration rows ...
ISOTONIC_MIN_POSITIVES = 50  # ... and this many positives among them; else Platt scaling
PROBABILITY_FLOOR = 1e-4  # no customer is certain to stay or to leave
CALIBRATIONS = ("auto", "isotonic", "sigmoid", "none")


# ---------------------------------------------------------------------------------------------
# calibration: raw margin -> probability, stored as plain arrays


@dataclass(frozen=True)
class Calibrator:
    """A monotone map from the booster's margin to a probability.

    kind "isotonic": linear interpolation between knots (x, y), constant beyond the end knots;
    kind "sigmoid": Platt scaling, y = [slope, intercept] (x empty); kind "none": the plain sigmoid.
    """

    kind: str
    x: np.ndarray = field(default_factory=lambda: np.empty(0))
    y: np.ndarray = field(default_factory=lambda: np.empty(0))

    def apply(self, raw: np.ndarray) -> np.ndarray:
        if self.kind == "isotonic":
            p = np.interp(raw, self.x, self.y)
        elif self.kind == "sigmoid":
            p = special.expit(self.y[0] * raw + self.y[1])
        else:
            p = special.expit(raw)
        return np.clip(p, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "x": self.x.tolist(), "y": self.y.tolist()}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> Calibrator:
        return cls(
            state["kind"],
            np.asarray(state["x"], dtype=np.float64),
            np.asarray(state["y"], dtype=np.float64),
        )


def fit_isotonic(raw: np.ndarray, y: np.ndarray) -> Calibrator:
    """Centred isotonic regression (Oron & Flournoy 2017): the pool-adjacent-violators blocks, each
    as one knot at its mean margin. Interpolating between block centres instead of holding each
    block flat keeps the ranking (the AUC) of the booster while calibrating like isotonic."""
    values, inverse = np.unique(raw, return_inverse=True)
    count = np.bincount(inverse).astype(np.float64)
    rate = np.bincount(inverse, weights=y) / count
    fitted = isotonic_regression(rate, sample_weight=count, increasing=True)
    block = np.r_[0, np.cumsum(fitted[1:] != fitted[:-1])]
    weight = np.bincount(block, weights=count)
    knot_x = np.bincount(block, weights=values * count) / weight
    knot_y = np.bincount(block, weights=fitted * count) / weight
    return Calibrator("isotonic", knot_x, knot_y)


def fit_sigmoid(raw: np.ndarray, y: np.ndarray) -> Calibrator:
    """Platt scaling with Platt's smoothed targets, so it is defined (and shrinks towards the
    booster) even on a handful of rows or a single class."""
    pos = float(np.sum(y))
    neg = float(len(y) - pos)
    target = np.where(y > 0, (pos + 1) / (pos + 2), 1 / (neg + 2))

    def loss(ab: np.ndarray) -> tuple[float, np.ndarray]:
        z = ab[0] * raw + ab[1]
        value = np.sum(np.logaddexp(0, z) - target * z)
        resid = special.expit(z) - target
        return float(value), np.array([np.sum(resid * raw), np.sum(resid)])

    result = optimize.minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return Calibrator("sigmoid", np.empty(0), np.asarray(result.x, dtype=np.float64))


def fit_calibrator(raw: np.ndarray, y: np.ndarray, method: str = "auto") -> Calibrator:
    """Isotonic with enough rows and positives (ISOTONIC_MIN_*), Platt otherwise; none without
    rows. `method` forces "isotonic", "sigmoid" or "none"."""
    if method not in CALIBRATIONS:
        raise NextbestError(f"calibration must be one of {CALIBRATIONS}, not {method!r}")
    if method == "none" or len(y) == 0:
        return Calibrator("none")
    if method == "auto":
        enough = (
            len(y) >= ISOTONIC_MIN_ROWS
            and min(np.sum(y), len(y) - np.sum(y)) >= ISOTONIC_MIN_POSITIVES
        )
        method = "isotonic" if enough else "sigmoid"
    return fit_isotonic(raw, y) if method == "isotonic" else fit_sigmoid(raw, y)


# ---------------------------------------------------------------------------------------------
# the model


class ChurnModel(ClassifierMixin, LightGBMScoreModel):
    """Probability that a customer churns within the outcome's horizon.

    Defaults are sized for both ends: 2.5M snapshot rows (capped at `max_fit_rows` by stratified
    sampling, 63 leaves, 63 bins) train in minutes on 2 cores, and a few thousand static rows
    (IBM Telco) get 4-leaf trees. `monotone` applies `constraints.MONOTONE["churn"]`.
    """

    role = "churn"
    score_name = "churn_probability"
    main_metric = "roc_auc"
    greater_is_better = True

    _labels = True

    def __init__(
        self,
        *,
        feature_names: tuple[str, ...] = (),
        categorical: tuple[str, ...] = (),
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
        monotone: bool = True,
        monotone_method: str = "intermediate",
        calibration: str = "auto",
        n_jobs: int = 2,
        random_state: int = 0,
    ) -> None:
        self.feature_names = feature_names
        self.categorical = categorical
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
        self.monotone = monotone
        self.monotone_method = monotone_method
        self.calibration = calibration
        self.n_jobs = n_jobs
        self.random_state = random_state

    calibrator_: Calibrator

    def _objective(self) -> dict[str, Any]:
        return {"objective": "binary", "metric": "binary_logloss"}

    def _booster_params(self, n_rows: int, names: list[str]) -> dict[str, Any]:
        params = super()._booster_params(n_rows, names)
        constraints = monotone_constraints(self.role, names) if self.monotone else []
        if any(constraints):
            params["monotone_constraints"] = constraints
            params["monotone_constraints_method"] = self.monotone_method
        return params

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False  # churned or not
        return tags

    def _check_target(self, y: np.ndarray) -> np.ndarray:
        check_classification_targets(y)
        if type_of_target(y) == "multiclass":
            raise EstimatorInputError(
                "ChurnModel: the churn outcome must be 0/1, not several classes "
                "(Only binary classification is supported.)"
            )
        if y.dtype.kind not in "biuf" or not np.isin(y, (0.0, 1.0)).all():
            raise EstimatorInputError("ChurnModel: the churn outcome must be 0/1")
        return np.asarray(y, dtype=np.float64)

    def _fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> None:
        """Boost on X (early stopping on the even validation rows), then calibrate on the odd
        validation rows."""
        if self.calibration not in CALIBRATIONS:
            raise NextbestError(
                f"calibration must be one of {CALIBRATIONS}, not {self.calibration!r}"
            )
        self.classes_ = np.array([0.0, 1.0])
        X, y = self._fit_rows(X, y, stratify=True)
        self._train(X, y, X_val[0::2], y_val[0::2])
        self.calibrator_ = fit_calibrator(self._raw(X_val[1::2]), y_val[1::2], self.calibration)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of staying and of churning, shape (n, 2), per `classes_`."""
        p = self.predict_score(X)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The likelier class per row: 1.0 where the churn probability is above 1/2."""
        churn = self.predict_score(X) > 0.5
        return self.classes_[churn.astype(np.int64)]

    def predict_score(self, X: np.ndarray) -> np.ndarray:
        """Calibrated churn probability per row of the model matrix: the score."""
        require_fitted(self, "calibrator_")
        return self.calibrator_.apply(self._raw(X))

    def _extra_state(self) -> dict[str, Any]:
        return {"calibrator": self.calibrator_.to_dict()}

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        self.classes_ = np.array([0.0, 1.0])
        self.calibrator_ = Calibrator.from_dict(state["calibrator"])
