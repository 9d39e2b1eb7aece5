"""Satisfaction model: regression of the next answer, clipped to the scale, with a carry-forward
baseline that degrades gracefully when the data set has no such survey feature."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from training.data.snapshots import TrainingSet
from training.evaluation.baselines import carry_forward
from training.evaluation.score_metrics import baseline_prediction, score_metrics
from training.scores.base import LightGBMScoreModel, fit_on
from training.scores.satisfaction import SatisfactionModel

from .conftest import TEST_JOBS


def without(data: TrainingSet, prefix: str) -> TrainingSet:
    """`data` minus every feature whose name starts with `prefix`."""
    keep = [j for j, name in enumerate(data.feature_names) if not name.startswith(prefix)]
    return replace(
        data,
        feature_names=[data.feature_names[j] for j in keep],
        categorical=[c for c in data.categorical if not c.startswith(prefix)],
        X_fit=data.X_fit[:, keep],
        X_val=data.X_val[:, keep],
        X_test=data.X_test[:, keep],
    )


def test_mae_beats_carrying_the_last_answer_forward(
    evaluations: dict[str, dict[str, float]],
) -> None:
    result = evaluations["satisfaction"]
    assert result["mae"] < result["baseline_mae"]
    assert result["rmse"] < result["baseline_rmse"]
    assert result["spearman"] > 0.3


def test_predictions_stay_inside_the_observed_answer_range(
    trained: dict[str, LightGBMScoreModel], score_sets: dict[str, TrainingSet]
) -> None:
    model, data = trained["satisfaction"], score_sets["satisfaction"]
    low, high = model.label_range_
    assert (low, high) == (data.y_fit.min(), data.y_fit.max())
    extreme = np.vstack([data.X_test, data.X_test * 50, -data.X_test * 50])
    p = model.predict(extreme)
    assert p.min() >= low and p.max() <= high


def test_baseline_carries_the_last_answer_and_falls_back_to_the_mean(
    score_sets: dict[str, TrainingSet],
) -> None:
    data = score_sets["satisfaction"]
    last = data.column(data.X_test, "nps_last")
    assert last is not None and np.isnan(last).any() and not np.isnan(last).all()
    base = carry_forward(data, data.X_test, "nps", fallback=7.5)
    np.testing.assert_array_equal(base[~np.isnan(last)], last[~np.isnan(last)])
    assert np.all(base[np.isnan(last)] == 7.5)
    assert np.all(carry_forward(data, data.X_test, "ces", fallback=3.0) == 3.0)


def test_a_data_set_without_the_survey_feature_still_trains(
    score_sets: dict[str, TrainingSet],
) -> None:
    data = without(score_sets["satisfaction"], "nps_")
    assert data.column(data.X_test, "nps_last") is None
    model = fit_on(SatisfactionModel(survey_type="nps", n_jobs=TEST_JOBS), data)
    result = score_metrics(model, data)
    mean_mae = np.mean(np.abs(data.y_test - data.y_fit.mean()))
    assert result["baseline_mae"] == pytest.approx(mean_mae)
    assert np.isnan(result["baseline_spearman"])  # a constant baseline has no ranking
    assert result["mae"] < result["baseline_mae"]


def test_another_survey_type_reads_its_own_last_answer(score_sets: dict[str, TrainingSet]) -> None:
    data = score_sets["satisfaction"]
    model = fit_on(SatisfactionModel(survey_type="csat", n_estimators=20, n_jobs=TEST_JOBS), data)
    csat = data.column(data.X_test, "csat_last")
    assert csat is not None
    base = baseline_prediction(model, data, data.X_test)
    seen = ~np.isnan(csat)
    np.testing.assert_array_equal(base[seen], csat[seen])
