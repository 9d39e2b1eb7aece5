"""FastBooster: one-row predictions through LightGBM's single-row C API, bit-identical to
`Booster.predict`, with everything else delegated to the booster."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from serving.online.fast_predict import FEW_ROWS, FastBooster, accelerate_learner
from training.uplift import arm_forest
from training.uplift.learners import SLearner, UpliftLearner


@pytest.fixture(scope="module", params=["binary", "regression", "tweedie"])
def booster(request: pytest.FixtureRequest) -> lgb.Booster:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 6))
    X[rng.random(X.shape) < 0.1] = np.nan
    y = (np.nan_to_num(X[:, 0]) + rng.normal(size=400) > 0).astype(float)
    params = {"objective": request.param, "num_leaves": 7, "verbose": -1, "num_threads": 1}
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=30)


def test_one_row_predictions_are_bit_identical(booster: lgb.Booster) -> None:
    fast = FastBooster(booster)
    rows = np.random.default_rng(1).normal(size=(50, 6)).astype(np.float32)
    rows[::7, 2] = np.nan
    for row in rows:
        x = row[None, :]
        for raw in (False, True):
            expected = booster.predict(x, raw_score=raw, num_threads=1)
            got = fast.predict(x, raw_score=raw, num_threads=1)
            assert got.shape == expected.shape
            np.testing.assert_array_equal(got, expected)


def test_a_few_rows_go_row_by_row_and_are_bit_identical(booster: lgb.Booster) -> None:
    """An S-learner's stacked arms and other few-row calls take the fast path row by row."""
    fast = FastBooster(booster)
    X = np.random.default_rng(4).normal(size=(FEW_ROWS, 6))
    X[::5, 1] = np.nan
    for rows in (X[:2], X[:21], X):
        for raw in (False, True):
            got = fast.predict(rows, raw_score=raw)
            assert got.shape == (len(rows),)
            np.testing.assert_array_equal(got, booster.predict(rows, raw_score=raw))


def test_many_rows_and_contributions_are_delegated(booster: lgb.Booster) -> None:
    fast = FastBooster(booster)
    X = np.random.default_rng(2).normal(size=(FEW_ROWS + 1, 6))
    np.testing.assert_array_equal(fast.predict(X), booster.predict(X))
    np.testing.assert_array_equal(
        fast.predict(X[:1], pred_leaf=True), booster.predict(X[:1], pred_leaf=True)
    )
    assert fast.num_feature() == 6


def test_one_row_contributions_match(booster: lgb.Booster) -> None:
    fast = FastBooster(booster)
    for row in np.random.default_rng(3).normal(size=(20, 6)):
        x = row[None, :]
        expected = booster.predict(x, pred_contrib=True)
        got = fast.predict(x, pred_contrib=True)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    assert fast.num_feature() == 6


@pytest.mark.parametrize("objective", ["binary", "regression", "tweedie"])
def test_an_s_learner_predicts_one_row_as_the_batch(
    objective: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An S-learner walks its own trees (`forest_`) on every path; one that cannot (forest_
    None) asks its booster, which takes the fast path. Either way a one-row uplift is the
    batch's to the last bit."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(1200, 4))
    treatment = rng.choice(["control", "a", "b"], size=1200)
    signal = X[:, 0] + 0.8 * (treatment == "a")
    y = {
        "binary": (signal + rng.normal(size=1200) > 0).astype(float),
        "regression": signal + rng.normal(size=1200),
        "tweedie": np.exp(0.5 * signal) * (rng.random(1200) < 0.6),
    }[objective]
    learner = SLearner(objective=objective, n_estimators=40, num_leaves=7, n_jobs=1)
    learner.fit(X, treatment, y)
    rows = rng.normal(size=(FEW_ROWS * 2, 4))
    monkeypatch.setattr(arm_forest, "_loaded", True)  # the forest walks rows of any number
    for walked in (True, False):
        fast = accelerate_learner(UpliftLearner.from_dict(learner.to_dict()))
        assert isinstance(fast, SLearner) and fast.forest_ is not None
        assert isinstance(fast.models_["mu"], FastBooster)
        if not walked:
            fast.forest_ = None
        batch = fast.predict(rows)
        assert np.abs(batch).max() > 0.01
        for i in range(0, len(rows), 7):
            np.testing.assert_array_equal(fast.predict(rows[i : i + 1]), batch[i : i + 1])
            np.testing.assert_array_equal(
                fast.predict_actions(rows[i : i + 1], ["b"]), batch[i : i + 1, [1]]
            )
