"""Churn probability: a LightGBM binary classifier with domain monotone constraints and a
probability calibrator, judged against a logistic-regression baseline.

The validation slice is used twice without overlap: its even rows stop the boosting early, its odd
rows fit the calibrator (the rows are sorted by snapshot and customer, so both halves span every
snapshot). Calibration matters because the probability is multiplied by money downstream (avoided
churn x LTV), not only ranked.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
from matplotlib.figure import Figure
from scipy import optimize, special
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.isotonic import isotonic_regression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from training.data.snapshots import TrainingSet
from training.errors import NextbestError
from training.evaluation import metrics, plots
from training.scores.base import LightGBMScoreModel, subsample_rows
from training.scores.constraints import monotone_constraints

ISOTONIC_MIN_ROWS = 1000  # isotonic needs this many calibration rows ...
ISOTONIC_MIN_POSITIVES = 50  # ... and this many positives among them; else Platt scaling
PROBABILITY_FLOOR = 1e-4  # no customer is certain to stay or to leave
CALIBRATIONS = ("auto", "isotonic", "sigmoid", "none")
BASELINE_MAX_ROWS = 200_000  # the logistic baseline is fitted on a stratified sample beyond this


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
# the logistic-regression baseline


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


def classification_metrics(y: np.ndarray, p: np.ndarray, prefix: str = "") -> dict[str, float]:
    """ROC AUC, PR AUC, Brier score and ECE of probabilities `p` for 0/1 outcomes `y`."""
    return {
        f"{prefix}roc_auc": metrics.roc_auc(y, p),
        f"{prefix}pr_auc": metrics.pr_auc(y, p),
        f"{prefix}brier": metrics.brier(y, p),
        f"{prefix}ece": metrics.expected_calibration_error(y, p),
    }


# ---------------------------------------------------------------------------------------------
# the model


class ChurnModel(LightGBMScoreModel):
    """Probability that a customer churns within the outcome's horizon.

    Defaults are sized for both ends: 2.5M snapshot rows (capped at `max_fit_rows` by stratified
    sampling, 63 leaves, 63 bins) train in minutes on 2 cores, and a few thousand static rows
    (IBM Telco) get 4-leaf trees. `monotone` applies `constraints.MONOTONE["churn"]`.
    """

    role = "churn"
    score_name = "churn_probability"
    main_metric = "roc_auc"
    greater_is_better = True

    def __init__(
        self,
        *,
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

    def fit_set(self, data: TrainingSet) -> Self:
        """Boost on X_fit (early stopping on the even validation rows), then calibrate on the odd
        validation rows."""
        self._start(data)
        if self.calibration not in CALIBRATIONS:
            raise NextbestError(
                f"calibration must be one of {CALIBRATIONS}, not {self.calibration!r}"
            )
        if not np.isin(data.y_fit, (0.0, 1.0)).all():
            raise NextbestError("ChurnModel: the churn outcome must be 0/1")
        X, y = self._fit_rows(data, stratify=True)
        self._train(X, y, data.X_val[0::2], data.y_val[0::2])
        self.calibrator_ = fit_calibrator(
            self._raw(data.X_val[1::2]), data.y_val[1::2], self.calibration
        )
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Calibrated churn probability per row of the model matrix."""
        return self.calibrator_.apply(self._raw(X))

    def evaluate(self, data: TrainingSet) -> dict[str, float]:
        """Metrics on the test slice, for the model and for the logistic baseline (prefixed)."""
        y = data.y_test
        out = classification_metrics(y, self.predict(data.X_test))
        out["base_rate"] = float(np.mean(y)) if len(y) else float("nan")
        out["n_test"] = float(len(y))
        baseline = logistic_baseline(data, self.random_state)
        p_base = (
            baseline.predict_proba(data.X_test)[:, 1]
            if baseline is not None and len(y)
            else np.full(len(y), np.nan)
        )
        out.update(classification_metrics(y, p_base, prefix="baseline_"))
        return out

    def figures(self, data: TrainingSet) -> dict[str, Figure]:
        p = self.predict(data.X_test)
        return {
            "calibration": plots.calibration_curve(data.y_test, p),
            "feature_importance": plots.feature_importance(
                self.feature_names_, self.gain_importance()
            ),
            "lift_by_decile": plots.lift_by_decile(data.y_test, p),
        }

    def _extra_state(self) -> dict[str, Any]:
        return {"calibrator": self.calibrator_.to_dict()}

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        self.calibrator_ = Calibrator.from_dict(state["calibrator"])
