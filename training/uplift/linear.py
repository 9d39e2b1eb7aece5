"""Linear outcome models for the linear T-learner: a fixed design (clipped, standardised numbers
with missing-value flags, one-hot categories) and one regularised GLM per arm.

Small effects on randomized e-mail tests are often near-linear in a few customer attributes,
where a tree ensemble on a few thousand rows mostly fits noise (Hillstrom: scikit-uplift's
logistic T-learner ranks better than any LightGBM learner, README's peer panel). Fitting is
scikit-learn's; what is kept is plain arrays, so prediction is one matrix product and
persistence is JSON.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression, PoissonRegressor, Ridge

from training.errors import NextbestError

CLIP_QUANTILES = (0.01, 0.99)  # heavy-tailed counts and amounts: the extremes are clipped
MAX_LEVELS = 50  # one-hot columns per categorical feature (the most frequent levels)
KINDS = ("binary", "poisson", "regression")
# Prior sd of a standardised coefficient (log-odds, log-mean or outcome-noise units per sd of a
# feature). Each arm's model is fitted apart, so an action's effect is a difference of two fits,
# and scikit-learn's default (sd 1) lets that difference follow noise; a tight prior shrinks the
# arms' coefficients, hence the effects, towards a constant where rows are few. Measured on
# Hillstrom (README): a plateau around this value ranks better than scikit-learn's default.
PRIOR_SD = 0.1


@dataclass(frozen=True)
class Design:
    """How raw features become the linear models' columns; fitted once per learner."""

    numeric: list[int]
    low: list[float]
    high: list[float]
    centre: list[float]
    scale: list[float]
    flagged: list[int]  # numeric features with missing values in the fit: one 0/1 column each
    categorical: list[int]
    levels: list[list[float]]

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The (n, columns) design matrix of raw features X."""
        centre, low, high, scale = self._numbers
        num = X[:, self._numeric]
        missing = np.isnan(num)
        num = np.clip(np.where(missing, centre, num), low, high)
        flags = missing[:, self._flag_positions]
        one_hot = X[:, self._level_features] == self._level_values  # every categorical at once
        return np.concatenate([(num - centre) / scale, flags, one_hot], axis=1, dtype=np.float64)

    @cached_property
    def _numbers(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(centre, low, high, scale) as float64 arrays, made once, not on every one-row call."""
        centre, low, high, scale = (
            np.asarray(v, dtype=np.float64) for v in (self.centre, self.low, self.high, self.scale)
        )
        return centre, low, high, scale

    @cached_property
    def _numeric(self) -> np.ndarray:
        """The numeric features' indices as an array (indexing with a list converts it per call)."""
        return np.asarray(self.numeric, dtype=np.intp)

    @cached_property
    def _flag_positions(self) -> np.ndarray:
        """Where the flagged features sit among the numeric ones (found once, not per row)."""
        position = {j: i for i, j in enumerate(self.numeric)}
        return np.asarray([position[j] for j in self.flagged], dtype=np.intp)

    @cached_property
    def _level_features(self) -> np.ndarray:
        """The raw feature of each one-hot column, in column order."""
        return self.source()[len(self.numeric) + len(self.flagged) :]

    @cached_property
    def _level_values(self) -> np.ndarray:
        """The level of each one-hot column, in column order: (1, levels) to compare with rows."""
        values = [v for levels in self.levels for v in levels]
        return np.asarray(values, dtype=np.float64).reshape(1, -1)

    def source(self) -> np.ndarray:
        """For every design column, the index of the raw feature it comes from."""
        levels = [j for j, values in zip(self.categorical, self.levels, strict=True)
                  for _ in values]  # fmt: skip
        return np.array([*self.numeric, *self.flagged, *levels], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Design:
        return cls(**data)


def fit_design(X: np.ndarray, categorical: list[int]) -> Design:
    """Clip bounds, medians and scales of the numeric features, levels of the categorical ones."""
    numeric = [j for j in range(X.shape[1]) if j not in set(categorical)]
    num = X[:, numeric]
    with warnings.catch_warnings():  # an all-missing column warns; it becomes a zero column
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(num, CLIP_QUANTILES, axis=0) if numeric else ([], [])
        centre = np.nanmedian(num, axis=0) if numeric else np.array([])
    low, high, centre = (
        np.nan_to_num(np.asarray(v, dtype=np.float64)) for v in (low, high, centre)
    )
    filled = np.clip(np.where(np.isnan(num), centre, num), low, high)
    scale = filled.std(axis=0) if numeric else np.array([])
    scale = np.where(scale > 0, scale, 1.0)
    flagged = [j for j, any_nan in zip(numeric, np.isnan(num).any(axis=0), strict=True) if any_nan]
    levels = []
    for j in categorical:
        values, counts = np.unique(X[~np.isnan(X[:, j]), j], return_counts=True)
        levels.append(sorted(values[np.argsort(-counts)][:MAX_LEVELS].tolist()))
    return Design(numeric, low.tolist(), high.tolist(), centre.tolist(), scale.tolist(), flagged,
                  list(categorical), levels)  # fmt: skip


def fit_glm(
    Z: np.ndarray, y: np.ndarray, weight: np.ndarray, kind: str
) -> tuple[np.ndarray, float]:
    """(coefficients, intercept) of an L2-regularised GLM of y on the design Z with row weights:
    logistic for "binary", log-link Poisson for "poisson" (non-negative amounts and counts; it
    accepts any y >= 0), least squares for "regression". The penalty is a Gaussian prior of sd
    `PRIOR_SD` on every standardised coefficient, whatever the number of rows: the weights are
    rescaled to a mean of 1 (inverse propensities would otherwise count a row up to 1/p times),
    so on a few hundred rows the prior holds the coefficients near 0 and on tens of thousands the
    data decide."""
    if kind not in KINDS:
        raise NextbestError(f"linear model kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if kind == "binary" and len(np.unique(y)) < 2:
        return np.zeros(Z.shape[1]), _logit(float(np.clip(np.mean(y), 1e-6, 1 - 1e-6)))
    weight = np.asarray(weight, dtype=np.float64)
    weight = weight / weight.mean()
    precision = 1.0 / PRIOR_SD**2  # of the prior, against a sum of per-row log-likelihoods
    if kind == "binary":
        model: Any = LogisticRegression(C=1.0 / precision, solver="newton-cholesky", max_iter=200)
    elif kind == "poisson":  # scikit-learn's Poisson loss is a mean: its penalty is per row
        model = PoissonRegressor(alpha=precision / len(y), solver="newton-cholesky", max_iter=200)
    else:  # least squares: the prior's sd in units of the outcome's noise
        model = Ridge(alpha=precision)
    model.fit(Z, y, sample_weight=weight)
    return np.asarray(model.coef_, dtype=np.float64).ravel(), float(np.ravel(model.intercept_)[0])


def predict_glm(
    Z: np.ndarray, coef: np.ndarray, intercept: float | np.ndarray, kind: str
) -> np.ndarray:
    """The expected outcome under a fitted GLM (a probability for "binary"); with (columns, m)
    coefficients and m intercepts, under m GLMs at once."""
    eta = Z @ np.asarray(coef, dtype=np.float64) + intercept
    if kind == "binary":
        return 1.0 / (1.0 + np.exp(-eta))
    if kind == "poisson":
        return np.exp(np.minimum(eta, 50.0))
    return eta


def _logit(p: float) -> float:
    return float(np.log(p / (1.0 - p)))
