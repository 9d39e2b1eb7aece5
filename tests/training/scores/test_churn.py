"""Churn model: calibrated, monotone in complaints and unresolved contacts, robust on thin data."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest

from training.data.snapshots import TrainingSet
from training.errors import NextbestError
from training.evaluation import metrics
from training.evaluation.score_metrics import score_metrics
from training.scores.base import LightGBMScoreModel, fit_on
from training.scores.churn import (
    Calibrator,
    ChurnModel,
    fit_calibrator,
    fit_isotonic,
    fit_sigmoid,
)
from training.scores.constraints import monotone_constraints

from .conftest import TEST_JOBS

RISING = re.compile(r"(complaints|complaint_count|unresolved_contacts)_(30|90|365)d")


def test_churn_is_calibrated_on_the_small_world(
    evaluations: dict[str, dict[str, float]],
) -> None:
    result = evaluations["churn"]
    assert result["ece"] < 0.05
    assert result["n_test"] > 300 and 0 < result["base_rate"] < 0.5
    assert result["brier"] <= result["baseline_brier"] + 0.002


def test_probabilities_are_probabilities(
    trained: dict[str, LightGBMScoreModel], score_sets: dict[str, TrainingSet]
) -> None:
    p = trained["churn"].predict_score(score_sets["churn"].X_test)
    assert p.dtype == np.float64 and np.all((p > 0) & (p < 1))
    assert abs(p.mean() - score_sets["churn"].y_test.mean()) < 0.03


def test_more_complaints_and_unresolved_contacts_never_lower_churn(
    trained: dict[str, LightGBMScoreModel], score_sets: dict[str, TrainingSet]
) -> None:
    model, data = trained["churn"], score_sets["churn"]
    X = data.X_test[:300].copy()
    rising = [j for j, name in enumerate(data.feature_names) if RISING.fullmatch(name)]
    assert len(rising) >= 9  # 30/90/365-day windows of all three kinds
    before = model.predict_score(X)
    for extra in (1, 2, 5):
        worse = X.copy()
        worse[:, rising] += extra  # consistently: a complaint in the last 30 days is in 90 and 365
        assert np.all(model.predict_score(worse) >= before)
    rate = [j for j, n in enumerate(data.feature_names) if n.startswith("resolution_rate_")]
    lower = X.copy()
    lower[:, rate] = np.where(np.isnan(lower[:, rate]), np.nan, lower[:, rate] * 0.5)
    assert np.all(model.predict_score(lower) >= before)


def test_monotone_constraints_reach_lightgbm(trained: dict[str, LightGBMScoreModel]) -> None:
    model = trained["churn"]
    expected = monotone_constraints("churn", model.feature_names_)
    assert model.lgb_params_["monotone_constraints"] == expected
    assert (
        ChurnModel(monotone=False, n_jobs=TEST_JOBS)
        ._booster_params(1000, model.feature_names_)
        .get("monotone_constraints")
        is None
    )


def test_isotonic_calibration_with_enough_rows(trained: dict[str, LightGBMScoreModel]) -> None:
    calibrator = trained["churn"].calibrator_
    assert calibrator.kind == "isotonic"
    assert np.all(np.diff(calibrator.x) > 0) and np.all(np.diff(calibrator.y) > 0)


def test_centred_isotonic_keeps_the_order_inside_and_calibrates() -> None:
    rng = np.random.default_rng(0)
    raw = rng.normal(0, 2, 20_000)
    y = (rng.random(raw.size) < 1 / (1 + np.exp(-(raw - 1)))).astype(float)
    cal = fit_isotonic(raw, y)
    p = cal.apply(raw)
    assert metrics.expected_calibration_error(y, p) < 0.01
    inside = (raw > cal.x[0]) & (raw < cal.x[-1])
    order = np.argsort(raw[inside])
    assert np.all(np.diff(p[inside][order]) > 0)  # strictly increasing between the end knots
    assert metrics.roc_auc(y, p) == pytest.approx(metrics.roc_auc(y, raw), abs=1e-3)


def test_platt_scaling_recovers_a_known_map() -> None:
    rng = np.random.default_rng(1)
    raw = rng.normal(0, 1.5, 50_000)
    y = (rng.random(raw.size) < 1 / (1 + np.exp(-(0.5 * raw - 1.0)))).astype(float)
    cal = fit_sigmoid(raw, y)
    assert cal.kind == "sigmoid" and cal.y == pytest.approx([0.5, -1.0], abs=0.05)


def test_calibrator_choice_follows_rows_and_positives() -> None:
    rng = np.random.default_rng(2)
    raw = rng.normal(size=3000)
    assert fit_calibrator(raw, (rng.random(3000) < 0.1).astype(float)).kind == "isotonic"
    assert fit_calibrator(raw, (rng.random(3000) < 0.01).astype(float)).kind == "sigmoid"
    assert fit_calibrator(raw[:500], (rng.random(500) < 0.3).astype(float)).kind == "sigmoid"
    assert fit_calibrator(raw[:0], np.empty(0)).kind == "none"
    one_class = fit_calibrator(raw[:20], np.zeros(20))  # Platt's smoothed targets: still defined
    assert one_class.kind == "sigmoid" and np.all(np.isfinite(one_class.y))
    with pytest.raises(NextbestError, match="calibration must be"):
        fit_calibrator(raw, raw > 0, method="beta")


def test_calibrator_round_trips_through_plain_lists() -> None:
    cal = Calibrator("isotonic", np.array([-1.0, 0.3, 2.0]), np.array([0.01, 0.2, 0.7]))
    back = Calibrator.from_dict(cal.to_dict())
    raw = np.linspace(-3, 3, 61)
    np.testing.assert_array_equal(back.apply(raw), cal.apply(raw))


def test_a_tiny_data_set_still_trains(score_sets: dict[str, TrainingSet]) -> None:
    data = score_sets["churn"]
    tiny = replace(
        data,
        X_fit=data.X_fit[:160],
        y_fit=np.r_[np.ones(8), data.y_fit[8:160]],
        X_val=data.X_val[:20],
        y_val=data.y_val[:20],
        X_test=data.X_test[:40],
        y_test=data.y_test[:40],
    )
    model = fit_on(ChurnModel(n_jobs=TEST_JOBS), tiny)
    assert model.calibrator_.kind in ("sigmoid", "none")
    assert model.lgb_params_["num_leaves"] == 4 and model.lgb_params_["min_child_samples"] == 20
    result = score_metrics(model, tiny)
    assert set(result) >= {"roc_auc", "baseline_roc_auc", "ece", "base_rate", "n_test"}
    assert np.all((model.predict_score(tiny.X_test) > 0) & (model.predict_score(tiny.X_test) < 1))


def test_without_a_validation_slice_it_boosts_a_fixed_number_of_rounds(
    score_sets: dict[str, TrainingSet],
) -> None:
    data = score_sets["churn"]
    empty = data.X_val[:0]
    model = fit_on(
        ChurnModel(n_estimators=30, n_jobs=TEST_JOBS),
        replace(data, X_val=empty, y_val=data.y_val[:0]),
    )
    assert model.best_iteration_ == 30 and model.calibrator_.kind == "none"


def test_a_non_binary_outcome_is_refused(score_sets: dict[str, TrainingSet]) -> None:
    data = score_sets["churn"]
    with pytest.raises(NextbestError, match="0/1"):
        fit_on(ChurnModel(n_jobs=TEST_JOBS), replace(data, y_fit=data.y_fit * 2))


def test_an_unknown_calibration_is_refused_before_training(
    score_sets: dict[str, TrainingSet],
) -> None:
    with pytest.raises(NextbestError, match="calibration must be one of"):
        fit_on(ChurnModel(calibration="beta"), score_sets["churn"])
