"""The linear T-learner's design and GLMs (training.uplift.linear) on generated data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from training.errors import NextbestError
from training.uplift.linear import Design, fit_design, fit_glm, predict_glm


def test_the_design_clips_fills_flags_and_one_hot_encodes():
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(size=1000), rng.integers(0, 3, 1000).astype(float)])
    X[:10, 0] = np.nan
    X[10, 0] = 1e6  # an outlier is clipped, not a lever
    design = fit_design(X, categorical=[1])
    Z = design.transform(X)
    assert Z.shape == (1000, 1 + 1 + 3)  # the number, its missing flag, three levels
    assert np.all(np.isfinite(Z))
    assert Z[10, 0] == pytest.approx(Z[:, 0].max())
    assert Z[10, 0] < 5  # clipped at the 99th percentile, then standardised
    np.testing.assert_array_equal(Z[:10, 1], 1.0)
    np.testing.assert_array_equal(Z[:, 2:].sum(axis=1), 1.0)
    unseen = design.transform(np.array([[0.0, 7.0]]))
    np.testing.assert_array_equal(unseen[0, 2:], 0.0)  # an unseen level: no column fires
    again = Design.from_dict(json.loads(json.dumps(design.to_dict())))
    np.testing.assert_array_equal(again.transform(X), Z)


@pytest.mark.parametrize("kind", ["binary", "poisson", "regression"])
def test_glms_recover_a_linear_signal(kind):
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(20_000, 3))
    eta = 0.2 + Z @ np.array([0.8, -0.5, 0.0])
    if kind == "binary":
        y = (rng.random(len(Z)) < 1 / (1 + np.exp(-eta))).astype(float)
    elif kind == "poisson":
        y = rng.poisson(np.exp(eta)).astype(float)
    else:
        y = eta + rng.normal(size=len(Z))
    coef, intercept = fit_glm(Z, y, np.ones(len(Z)), kind)
    np.testing.assert_allclose(coef, [0.8, -0.5, 0.0], atol=0.06)
    assert intercept == pytest.approx(0.2, abs=0.06)
    mean = predict_glm(Z, coef, intercept, kind)
    assert abs(mean.mean() - y.mean()) < 0.02 * max(1.0, abs(y.mean()))


def test_the_prior_holds_on_few_rows_whatever_the_weights_scale():
    """The penalty is a prior on the coefficients: on 200 rows it holds a real coefficient well
    below its value, on 20,000 the data decide; inverse-propensity weights of any scale (a
    randomized arm's 1 / 0.3) fit the same model as unit weights."""
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(20_000, 2))
    y = (rng.random(len(Z)) < 1 / (1 + np.exp(-(Z @ np.array([0.8, 0.0]))))).astype(float)
    few, _ = fit_glm(Z[:200], y[:200], np.ones(200), "binary")
    many, _ = fit_glm(Z, y, np.ones(len(Z)), "binary")
    assert few[0] < 0.7 * many[0] and many[0] == pytest.approx(0.8, abs=0.06)
    weighted, _ = fit_glm(Z[:200], y[:200], np.full(200, 1 / 0.3), "binary")
    np.testing.assert_allclose(weighted, few, rtol=1e-6)


def test_a_constant_binary_arm_predicts_its_rate_and_bad_kinds_are_refused():
    Z = np.zeros((50, 2))
    coef, intercept = fit_glm(Z, np.zeros(50), np.ones(50), "binary")
    assert predict_glm(Z, coef, intercept, "binary").max() < 1e-5
    with pytest.raises(NextbestError, match="kind must be one of"):
        fit_glm(Z, np.zeros(50), np.ones(50), "gamma")
