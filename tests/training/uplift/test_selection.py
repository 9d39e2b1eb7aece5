"""Per-action selection and calibration of uplift learners (training.uplift.selection)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.training.uplift.test_learners import ACTIONS, simulate
from training.errors import NextbestError
from training.uplift.learners import SLearner, TLearner
from training.uplift.selection import MAX_SLOPE, Line, SelectedUplift, calibration_line, load_uplift

PARAMS = {"n_estimators": 40, "num_leaves": 7, "min_child_samples": 40}


def test_calibration_recovers_a_known_shrinkage() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=20_000)
    predicted = 2.0 * truth + rng.normal(scale=0.5, size=truth.size)  # over-dispersed, noisy
    pseudo = truth + 0.3 + rng.normal(scale=3.0, size=truth.size)  # unbiased, very noisy
    line = calibration_line(predicted, pseudo)
    expected_slope = 2.0 / (4.0 + 0.25)  # cov(pred, truth) / var(pred)
    assert abs(line.slope - expected_slope) < 0.05
    calibrated = line.intercept + line.slope * predicted
    assert abs(calibrated.mean() - predicted.mean()) < 1e-9  # shrinks towards the mean
    assert np.mean((calibrated - truth) ** 2) < np.mean((predicted - truth) ** 2) / 5


def test_few_noisy_rows_leave_the_learner_trusted() -> None:
    rng = np.random.default_rng(2)
    predicted = rng.normal(size=40)
    pseudo = rng.normal(scale=50.0, size=40)  # no information about the slope
    assert calibration_line(predicted, pseudo).slope > 0.9


def test_calibration_shrinks_but_never_stretches_or_inverts() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=5_000)
    assert MAX_SLOPE == 1.0
    assert calibration_line(x, 0.5 * x).slope == pytest.approx(0.5, abs=1e-6)  # over-dispersed
    assert calibration_line(x, 1.5 * x).slope == MAX_SLOPE  # under-dispersed: left as it is
    assert calibration_line(x, -x).slope == 0.0
    flat = calibration_line(np.full(10, 2.0), np.arange(10.0))
    assert flat == Line(2.0, 0.0)


@pytest.fixture(scope="module")
def two_learners() -> tuple[np.ndarray, dict[str, object]]:
    world = simulate(4000, seed=5, binary=False)
    fitted = {
        "SLearner": SLearner(**PARAMS).fit(world.X, world.treatment, world.y, world.propensity),
        "TLearner": TLearner(**PARAMS).fit(world.X, world.treatment, world.y, world.propensity),
    }
    return world.X[:300], fitted


def test_selected_uplift_takes_each_action_from_its_learner(two_learners) -> None:
    X, fitted = two_learners
    choice = {"a1": "TLearner", "a2": "SLearner", "a3": "TLearner"}
    lines = {"a1": Line(0.0, 1.0), "a2": Line(0.1, 0.5), "a3": Line(-0.2, 0.0)}
    selected = SelectedUplift(fitted, choice, lines)  # type: ignore[arg-type]
    s, t = fitted["SLearner"].predict(X), fitted["TLearner"].predict(X)  # type: ignore[attr-defined]
    expected = np.column_stack([t[:, 0], 0.1 + 0.5 * s[:, 1], np.full(len(X), -0.2)])
    np.testing.assert_allclose(selected.predict(X), expected)
    assert selected.actions_ == ACTIONS and selected.n_features_in_ == X.shape[1]
    assert selected.describe()["a2"] == "SLearner (slope 0.50)"


def test_selected_uplift_runs_only_the_chosen_models(two_learners) -> None:
    """The T-learner chosen for a1 and a3 is not asked for a2 (the S-learner's): its a2 model
    may be gone and the predictions are the same, bit for bit, on many rows and on one."""
    X, fitted = two_learners
    choice = {"a1": "TLearner", "a2": "SLearner", "a3": "TLearner"}
    selected = SelectedUplift(fitted, choice, {"a2": Line(0.1, 0.5)})  # type: ignore[arg-type]
    expected = selected.predict(X)
    t_learner = fitted["TLearner"]
    kept = dict(t_learner.models_)  # type: ignore[attr-defined]
    t_learner.models_ = {k: m for k, m in kept.items() if k != "mu:a2"}  # type: ignore[attr-defined]
    try:
        np.testing.assert_array_equal(selected.predict(X), expected)
        for i in range(0, len(X), 60):
            np.testing.assert_array_equal(selected.predict(X[i : i + 1]), expected[i : i + 1])
    finally:
        t_learner.models_ = kept  # type: ignore[attr-defined]


def test_round_trip_is_exact_and_keeps_only_used_learners(two_learners) -> None:
    X, fitted = two_learners
    selected = SelectedUplift(fitted, dict.fromkeys(ACTIONS, "TLearner"))  # type: ignore[arg-type]
    data = json.loads(json.dumps(selected.to_dict()))
    assert list(data["learners"]) == ["TLearner"]
    restored = load_uplift(data)
    assert isinstance(restored, SelectedUplift)
    np.testing.assert_array_equal(restored.predict(X), selected.predict(X))


def test_unknown_learner_or_action_is_refused(two_learners) -> None:
    _, fitted = two_learners
    with pytest.raises(NextbestError, match="no learner named XLearner"):
        SelectedUplift(fitted, {"a1": "XLearner"})  # type: ignore[arg-type]
    with pytest.raises(NextbestError, match="never saw action 'zz'"):
        SelectedUplift(fitted, {"zz": "SLearner"})  # type: ignore[arg-type]


def test_the_slope_standard_error_shrinks_with_rows_and_grows_with_noise() -> None:
    from training.uplift.selection import ols_slope

    rng = np.random.default_rng(4)
    x = rng.normal(size=4000)
    slope, se = ols_slope(x, 0.5 * x + rng.normal(size=4000))
    assert abs(slope - 0.5) < 3 * se and 0.01 < se < 0.03  # about 1 / sqrt(4000)
    assert ols_slope(x[:400], 0.5 * x[:400] + rng.normal(size=400))[1] > 2.5 * se
    assert ols_slope(x, 0.5 * x + rng.normal(scale=4.0, size=4000))[1] > 3 * se
    assert ols_slope(np.ones(10), np.arange(10.0)) == (0.0, float("inf"))
