"""Lifetime-value model: Tweedie regression of revenue over the horizon, ranked better than the
historical average."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from training.data.snapshots import TrainingSet
from training.evaluation.baselines import historical_average
from training.evaluation.score_metrics import score_metrics
from training.scores.base import LightGBMScoreModel, fit_on
from training.scores.ltv import LtvModel

from .conftest import TEST_JOBS
from .test_satisfaction import without


def test_gini_beats_the_historical_average(evaluations: dict[str, dict[str, float]]) -> None:
    result = evaluations["value"]
    assert result["normalized_gini"] > result["baseline_normalized_gini"]
    assert result["mae"] < result["baseline_mae"]
    assert result["top_decile_capture"] > 0.1


def test_predictions_are_positive_amounts_near_the_mean(
    trained: dict[str, LightGBMScoreModel], score_sets: dict[str, TrainingSet]
) -> None:
    data = score_sets["value"]
    p = trained["value"].predict(data.X_test)
    assert np.all(p > 0)
    assert p.mean() == pytest.approx(data.y_test.mean(), rel=0.15)


def test_historical_average_scales_last_years_revenue_to_the_horizon(
    score_sets: dict[str, TrainingSet],
) -> None:
    data = score_sets["value"]
    revenue = data.column(data.X_test, "revenue_365d")
    assert revenue is not None
    base = historical_average(data, data.X_test, "purchase")
    np.testing.assert_allclose(base, np.nan_to_num(revenue) * 90 / 365)


def test_historical_average_falls_back_to_the_value_event_then_to_zero(
    score_sets: dict[str, TrainingSet],
) -> None:
    data = without(score_sets["value"], "revenue_")
    purchases = data.column(data.X_test, "purchase_value_sum_365d")
    assert purchases is not None
    base = historical_average(data, data.X_test, "purchase")
    np.testing.assert_allclose(base, np.nan_to_num(purchases) * 90 / 365)
    bare = without(data, "purchase_")
    assert np.all(historical_average(bare, bare.X_test, "purchase") == 0)
    result = score_metrics(fit_on(LtvModel(n_estimators=50, n_jobs=TEST_JOBS), bare), bare)
    assert result["baseline_normalized_gini"] == pytest.approx(0.0)


def test_refunds_are_fitted_as_zero(score_sets: dict[str, TrainingSet]) -> None:
    data = score_sets["value"]
    y = data.y_fit.copy()
    y[:50] = -20.0
    model = fit_on(LtvModel(n_estimators=30, n_jobs=TEST_JOBS), replace(data, y_fit=y))
    assert np.all(model.predict(data.X_test) > 0)
    assert model.horizon_days_ == 90
