"""What every score model promises: the ScoreModel interface, baselines beaten on the main metric,
exact save/load without pickle, scikit-learn cloning, figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure
from sklearn.base import clone

from training.errors import NextbestError
from training.evaluation.score_metrics import score_figures
from training.scores.base import (
    META_FILE,
    MODEL_FILE,
    LightGBMScoreModel,
    ScoreModel,
    TrainingSet,
    auto_min_child_samples,
    auto_num_leaves,
    fit_on,
    subsample_rows,
)
from training.scores.churn import ChurnModel
from training.scores.ltv import LtvModel
from training.scores.satisfaction import SatisfactionModel

from .conftest import TEST_JOBS

ROLES = ["churn", "satisfaction", "value"]
SCORE_NAMES = {
    "churn": "churn_probability",
    "satisfaction": "satisfaction",
    "value": "window_value",
}


@pytest.mark.parametrize("role", ROLES)
def test_models_follow_the_score_model_interface(
    role: str, trained: dict[str, LightGBMScoreModel]
) -> None:
    model = trained[role]
    assert isinstance(model, ScoreModel)
    assert model.role == role and model.score_name == SCORE_NAMES[role]


@pytest.mark.parametrize("role", ROLES)
def test_each_model_beats_its_baseline_on_its_main_metric(
    role: str, trained: dict[str, LightGBMScoreModel], evaluations: dict[str, dict[str, float]]
) -> None:
    model, result = trained[role], evaluations[role]
    ours, theirs = result[model.main_metric], result[f"baseline_{model.main_metric}"]
    assert not math.isnan(ours) and not math.isnan(theirs)
    assert (ours > theirs) if model.greater_is_better else (ours < theirs), result


@pytest.mark.parametrize("role", ROLES)
def test_save_then_load_predicts_exactly_the_same(
    role: str,
    trained: dict[str, LightGBMScoreModel],
    score_sets: dict[str, TrainingSet],
    tmp_path: Path,
) -> None:
    model, data = trained[role], score_sets[role]
    model.save(tmp_path / role)
    assert sorted(p.name for p in (tmp_path / role).iterdir()) == sorted([MODEL_FILE, META_FILE])
    meta = json.loads((tmp_path / role / META_FILE).read_text())
    assert meta["class"] == type(model).__name__ and meta["format_version"] == 1
    loaded = type(model).load(tmp_path / role)
    X = np.vstack([data.X_fit[:500], data.X_test])
    np.testing.assert_array_equal(loaded.predict_score(X), model.predict_score(X))
    assert loaded.get_params() == model.get_params()
    assert loaded.params() == model.params()


def test_load_refuses_another_models_folder(
    trained: dict[str, LightGBMScoreModel], tmp_path: Path
) -> None:
    trained["value"].save(tmp_path)
    with pytest.raises(NextbestError, match="holds a LtvModel"):
        ChurnModel.load(tmp_path)


@pytest.mark.parametrize("role", ROLES)
def test_models_clone_like_scikit_learn_estimators(
    role: str, trained: dict[str, LightGBMScoreModel]
) -> None:
    model = trained[role]
    copy = clone(model)
    assert type(copy) is type(model) and copy.get_params() == model.get_params()
    assert not hasattr(copy, "booster_")
    changed = clone(model).set_params(learning_rate=0.1)
    assert changed.learning_rate == 0.1 and model.learning_rate == 0.05


@pytest.mark.parametrize("role", ROLES)
def test_params_are_json_and_report_the_resolved_tree_size(
    role: str, trained: dict[str, LightGBMScoreModel], score_sets: dict[str, TrainingSet]
) -> None:
    params = trained[role].params()
    json.dumps(params)
    n_fit = len(score_sets[role].y_fit)
    assert params["lgb_num_leaves"] == auto_num_leaves(n_fit)
    assert (
        params["lgb_num_threads"] == params["n_jobs"] == TEST_JOBS and params["best_iteration"] >= 1
    )


@pytest.mark.parametrize("role", ROLES)
def test_figures_are_matplotlib_figures_without_pyplot_state(
    role: str, trained: dict[str, LightGBMScoreModel], score_sets: dict[str, TrainingSet]
) -> None:
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    figures = score_figures(trained[role], score_sets[role])
    assert "feature_importance" in figures
    assert all(isinstance(f, Figure) and f.axes for f in figures.values())
    assert plt.get_fignums() == before


@pytest.mark.parametrize("role", ROLES)
def test_predict_rejects_a_matrix_of_the_wrong_width(
    role: str, trained: dict[str, LightGBMScoreModel]
) -> None:
    with pytest.raises(NextbestError, match="feature columns"):
        trained[role].predict(np.zeros((3, 5), dtype=np.float32))


def test_auto_tree_size_grows_with_the_data() -> None:
    assert auto_num_leaves(5_000) == 4 and auto_min_child_samples(5_000) == 50
    assert auto_num_leaves(100_000) == 20
    assert auto_num_leaves(1_500_000) == 63 and auto_min_child_samples(1_500_000) == 500
    sizes = [auto_num_leaves(n) for n in (10, 1_000, 10_000, 100_000, 1_000_000, 10**8)]
    assert sizes == sorted(sizes)


def test_subsampling_keeps_the_class_rate_and_the_cap() -> None:
    y = np.r_[np.ones(500), np.zeros(9_500)]
    keep = subsample_rows(y, 1_000, stratify=True, seed=0)
    assert len(keep) == 1_000 and y[keep].sum() == 50
    assert np.all(np.diff(keep) > 0)
    assert len(subsample_rows(y, None, stratify=True, seed=0)) == 10_000
    assert len(subsample_rows(y, 2_000, stratify=False, seed=0)) == 2_000


@pytest.mark.parametrize("cls", [ChurnModel, SatisfactionModel, LtvModel])
def test_a_row_cap_trains_on_a_sample(
    cls: type[LightGBMScoreModel], score_sets: dict[str, TrainingSet]
) -> None:
    role = {ChurnModel: "churn", SatisfactionModel: "satisfaction", LtvModel: "value"}[cls]
    model = fit_on(cls(max_fit_rows=1_000, n_jobs=TEST_JOBS), score_sets[role])
    assert model.lgb_params_["num_leaves"] == auto_num_leaves(1_000)
    assert np.all(np.isfinite(model.predict_score(score_sets[role].X_test)))


@pytest.mark.parametrize("cls", [ChurnModel, SatisfactionModel, LtvModel])
def test_defaults_use_two_threads_and_the_auto_tree_size(cls: type[LightGBMScoreModel]) -> None:
    params = cls().get_params()
    assert params["n_jobs"] == 2 and params["num_leaves"] is None and params["max_bin"] == 63
    assert params["max_fit_rows"] == 1_500_000
