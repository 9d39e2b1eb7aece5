"""Score models saved before the scikit-learn contract (commit 2858e42, `fit_set(TrainingSet)`) still
load and predict exactly, and the new `fit(X, y, eval_set=...)` refits the very same models.

saved_v1/ holds the three models that code fitted on `old_world()` (8 trees each) and saved, and
their predictions on its first 50 rows (expected.json, the old `predict`: for churn the calibrated
probability, now `predict_score`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from training.data.snapshots import TrainingSet
from training.scores.base import LightGBMScoreModel, fit_on
from training.scores.churn import ChurnModel
from training.scores.ltv import LtvModel
from training.scores.satisfaction import SatisfactionModel

SAVED = Path(__file__).parent / "saved_v1"
CLASSES: dict[str, type[LightGBMScoreModel]] = {
    "churn": ChurnModel,
    "satisfaction": SatisfactionModel,
    "value": LtvModel,
}


def old_world(role: str) -> TrainingSet:
    """The generated data the saved models were fitted on (same seed, same draws)."""
    rng = np.random.default_rng(3)
    n = 3000
    X = np.column_stack([rng.normal(size=n), rng.normal(size=n), rng.integers(0, 4, n)]).astype(
        np.float32
    )
    z = 0.8 * X[:, 0] - 0.5 * X[:, 1] + 0.3 * (X[:, 2] == 2)
    ys = {
        "churn": (rng.random(n) < 1 / (1 + np.exp(-(z - 1)))).astype(float),
        "satisfaction": np.clip(np.round(7 - 1.5 * z + rng.normal(size=n)), 0, 10),
        "value": np.maximum(0, rng.gamma(2, 20, n) * np.exp(0.4 * z) * (rng.random(n) < 0.6)),
    }
    y = ys[role]
    names = ["complaints_30d", "tenure_days", "plan"]
    return TrainingSet(
        names, ["plan"], X[:2000], y[:2000], X[2000:2600], y[2000:2600], X[2600:], y[2600:]
    )


@pytest.fixture(scope="module")
def expected() -> dict[str, list[float]]:
    return dict(json.loads((SAVED / "expected.json").read_text()))


@pytest.mark.parametrize("role", list(CLASSES))
def test_a_model_saved_before_loads_and_predicts_the_same(
    role: str, expected: dict[str, list[float]]
) -> None:
    model = CLASSES[role].load(SAVED / role)
    X = np.asarray(expected["X"], dtype=np.float32)
    np.testing.assert_array_equal(model.predict_score(X), expected[role])
    assert model.get_params()["feature_names"] == ("complaints_30d", "tenure_days", "plan")
    assert model.get_params()["categorical"] == ("plan",)
    assert model.n_features_in_ == 3


@pytest.mark.parametrize("role", list(CLASSES))
def test_fit_refits_what_fit_set_fitted(role: str, expected: dict[str, list[float]]) -> None:
    """Same boosting, same calibration, same seeds: the new API's model predicts bit for bit what
    the saved one does, and so does a clone of the loaded model refitted."""
    data = old_world(role)
    X = np.asarray(expected["X"], dtype=np.float32)
    refit = fit_on(CLASSES[role](n_estimators=8, n_jobs=1), data)
    np.testing.assert_array_equal(refit.predict_score(X), expected[role])
    loaded = CLASSES[role].load(SAVED / role)
    again = clone(loaded).fit(data.X_fit, data.y_fit, eval_set=(data.X_val, data.y_val))
    np.testing.assert_array_equal(again.predict_score(X), expected[role])
