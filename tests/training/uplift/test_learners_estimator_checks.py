"""scikit-learn's estimator checks (`parametrize_with_checks`) over the uplift learners.

The learners are scikit-learn estimators except for what their `treatment` argument makes them:
`fit(X, treatment, y, propensity)` instead of `fit(X, y)`, and `predict(X)` with one column per
action. The checks call `fit(X, y)` and expect one prediction per row, so they run through a thin
adapter, a subclass per learner that changes only the call signatures:

- `fit(X, y)` fits the learner with `treatment` alternating "control" and one action "a" by row
  and no propensity (a randomized experiment: every row of an arm gets the arm's share);
- `predict(X)` returns that one action's uplift column;
- the `poor_score` tag: the regressor checks' R^2 > 0.5 of `predict` against y does not apply,
  because the uplift is an effect, not the outcome (every other assertion of those checks runs).

Everything else — parameters, `clone`, input validation, `n_features_in_`, NotFittedError,
pickling, idempotent fits, dtypes, NaN handling — is the learner's own. What the adapter cannot
reach (treatment labels, propensities) is tested in test_learners.py (test_bad_input_is_refused).
No check is expected to fail.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.utils.estimator_checks import parametrize_with_checks
from sklearn.utils.validation import _num_samples

from training.config import CONTROL
from training.uplift.learners import DRLearner, LinearTLearner, SLearner, TLearner, XLearner

ACTION = "a"


def alternating_arms(X: Any) -> np.ndarray:
    """Control on even rows, the action on odd rows (empty when X has no length to read: the
    learner's own check then refuses X)."""
    try:
        n = _num_samples(X)
    except TypeError:
        n = 0
    return np.where(np.arange(n) % 2 == 0, CONTROL, ACTION)


class ChecksAdapter(RegressorMixin):
    """The signature adapter of the module docstring; mixed in before the learner class."""

    def fit(self, X: Any, y: Any = None) -> Any:
        return super().fit(X, alternating_arms(X), y)  # type: ignore[misc]

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(super().predict(X))[:, 0]  # type: ignore[misc]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.regressor_tags.poor_score = True
        return tags


class CheckedSLearner(ChecksAdapter, SLearner):
    pass


class CheckedTLearner(ChecksAdapter, TLearner):
    pass


class CheckedXLearner(ChecksAdapter, XLearner):
    pass


class CheckedDRLearner(ChecksAdapter, DRLearner):
    pass


class CheckedLinearTLearner(ChecksAdapter, LinearTLearner):
    pass


FAST = {"n_estimators": 10, "n_jobs": 1}


@parametrize_with_checks(
    [
        cls(**FAST)
        for cls in (
            CheckedSLearner,
            CheckedTLearner,
            CheckedXLearner,
            CheckedDRLearner,
            CheckedLinearTLearner,
        )
    ],
    xfail_strict=True,
)
def test_uplift_learners_pass_scikit_learns_estimator_checks(estimator: Any, check: Any) -> None:
    check(estimator)


def test_the_adapter_changes_only_the_signature() -> None:
    """Through the adapter the learner fits the very model the direct call fits."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    y = X[:, 0] + (np.arange(400) % 2) * (X[:, 1] > 0) + rng.normal(scale=0.1, size=400)
    direct = TLearner(**FAST).fit(X, alternating_arms(X), y)
    adapted = CheckedTLearner(**FAST).fit(X, y)
    np.testing.assert_array_equal(adapted.predict(X), direct.predict(X)[:, 0])
    assert adapted.get_params() == direct.get_params() and adapted.actions_ == [ACTION]
