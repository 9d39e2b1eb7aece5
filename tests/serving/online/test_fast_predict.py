"""FastBooster: one-row predictions through LightGBM's single-row C API, bit-identical to
`Booster.predict`, with everything else delegated to the booster."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from serving.online.fast_predict import FEW_ROWS, FastBooster


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
