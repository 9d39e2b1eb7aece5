"""A LightGBM model split by whether its trees read the arm column predicts what the whole model
predicts (within 1e-12), for every objective an S-learner uses, and the S-learner built on it
gives the uplift of walking every tree once per arm."""

from __future__ import annotations

import pickle

import lightgbm as lgb
import numpy as np
import pytest

from training.uplift.learners import STACKED_ROWS, SLearner, UpliftLearner
from training.uplift.tree_split import (
    objective_link,
    reads_features,
    split_by_features,
    subset_model,
    tree_blocks,
)

OBJECTIVES = ["binary", "regression", "tweedie"]
N, D = 2000, 4  # rows; features before the arm column (index D)
ARMS = 4


def world(objective: str, seed: int = 0, arm_effect: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """(X with the arm code as its last column, y): the outcome depends on x0, and on the arm
    by `arm_effect`, with missing values in x1."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D + 1))
    X[rng.random(N) < 0.1, 1] = np.nan
    X[:, D] = rng.integers(ARMS, size=N)
    signal = X[:, 0] + arm_effect * (X[:, D] == 2) - 0.5 * arm_effect * (X[:, D] == 3)
    if objective == "binary":
        y = (signal + rng.normal(size=N) > 0).astype(float)
    elif objective == "tweedie":
        y = np.exp(0.5 * signal) * (rng.random(N) < 0.6)
    else:
        y = signal + rng.normal(size=N)
    return X, y


def train(objective: str, X: np.ndarray, y: np.ndarray, rounds: int = 60) -> lgb.Booster:
    params = {"objective": objective, "num_leaves": 7, "verbose": -1, "num_threads": 1}
    data = lgb.Dataset(X, y, categorical_feature=[D])
    return lgb.train(params, data, num_boost_round=rounds)


def split_predict(booster: lgb.Booster, X: np.ndarray) -> np.ndarray:
    split = split_by_features(booster, [D])
    assert split is not None
    raw = np.zeros(len(X))
    for part in (split.free, split.bound):
        if part is not None:
            raw += part.predict(X, raw_score=True, num_threads=1)
    return split.link(raw)


def n_trees(booster: lgb.Booster | None) -> int:
    return 0 if booster is None else booster.num_trees()


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_the_two_parts_predict_what_the_model_predicts(objective: str) -> None:
    X, y = world(objective)
    booster = train(objective, X, y)
    split = split_by_features(booster, [D])
    assert split is not None
    assert n_trees(split.free) + n_trees(split.bound) == booster.num_trees()
    assert n_trees(split.free) > 0 and n_trees(split.bound) > 0  # both kinds on this world
    for part, reads in ((split.free, False), (split.bound, True)):
        assert part is not None and part.num_feature() == D + 1
        counts = part.feature_importance(importance_type="split")
        assert (counts[D] > 0) == reads
    fresh, _ = world(objective, seed=1)
    for code in range(ARMS):
        fresh[:, D] = code
        expected = booster.predict(fresh, num_threads=1)
        np.testing.assert_allclose(split_predict(booster, fresh), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_a_model_that_never_reads_the_arm_has_no_bound_part(objective: str) -> None:
    X, y = world(objective, arm_effect=0.0)
    X[:, D] = 1.0  # one value: LightGBM cannot split on it
    booster = train(objective, X, y)
    split = split_by_features(booster, [D])
    assert split is not None and split.bound is None
    assert n_trees(split.free) == booster.num_trees()
    np.testing.assert_allclose(
        split_predict(booster, X), booster.predict(X, num_threads=1), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_a_model_where_every_tree_reads_the_arm_has_no_free_part(objective: str) -> None:
    X, y = world(objective, arm_effect=2.0)
    X[:, :D] = 0.0  # only the arm can be split on
    booster = train(objective, X, y, rounds=20)
    split = split_by_features(booster, [D])
    assert split is not None and split.free is None
    assert n_trees(split.bound) == booster.num_trees() == 20
    np.testing.assert_allclose(
        split_predict(booster, X), booster.predict(X, num_threads=1), rtol=1e-12, atol=1e-12
    )


def test_objective_links_are_those_of_lightgbm() -> None:
    raw = np.array([-3.0, -0.2, 0.0, 1.5])
    for objective, expected in [
        ("binary sigmoid:1", 1 / (1 + np.exp(-raw))),
        ("binary sigmoid:2.5", 1 / (1 + np.exp(-2.5 * raw))),
        ("regression", raw),
        ("tweedie", np.exp(raw)),
        ("poisson", np.exp(raw)),
        ("gamma", np.exp(raw)),
    ]:
        link = objective_link(objective)
        assert link is not None
        np.testing.assert_allclose(link(raw), expected, rtol=1e-15)
    # links of their own or several outputs: not split, every tree stays in one model
    for objective in ("regression sqrt", "multiclass num_class:3", "lambdarank", "huber", ""):
        assert objective_link(objective) is None


def test_a_model_this_module_cannot_split_is_left_whole() -> None:
    X, y = world("regression")
    params = {"objective": "regression", "reg_sqrt": True, "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(np.abs(X), np.abs(y)), num_boost_round=5)
    assert split_by_features(booster, [D]) is None
    labels = np.random.default_rng(0).integers(3, size=N).astype(float)
    params = {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(X, labels), num_boost_round=3)
    assert split_by_features(booster, [D]) is None


def test_subset_model_renumbers_trees_and_loads() -> None:
    X, y = world("binary")
    booster = train("binary", X, y, rounds=10)
    header, blocks, footer = tree_blocks(booster.model_to_string())
    assert len(blocks) == 10 and footer.startswith("end of trees")
    chosen = [blocks[7], blocks[2]]
    text = subset_model(header, chosen)
    assert "tree_sizes=" not in text
    assert [line for line in text.splitlines() if line.startswith("Tree=")] == ["Tree=0", "Tree=1"]
    part = lgb.Booster(model_str=text)
    assert part.num_trees() == 2
    leaves = booster.predict(X[:50], pred_leaf=True, num_threads=1)
    np.testing.assert_array_equal(
        part.predict(X[:50], pred_leaf=True, num_threads=1), leaves[:, [7, 2]]
    )
    assert not reads_features("Tree=0\nnum_leaves=1\nsplit_feature=\n", {D})


# ---------------------------------------------------------------------------------------------
# the S-learner on its split model


def full_outcomes(learner: SLearner, X: np.ndarray) -> np.ndarray:
    """Every arm through every tree of the whole model: what the S-learner predicted before."""
    arms = range(len(learner.actions_) + 1)
    mu = learner.models_["mu"]
    return np.column_stack([mu.predict(np.column_stack([X, np.full(len(X), a)])) for a in arms])


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_s_learner_predictions_equal_every_tree_per_arm(objective: str) -> None:
    X, y = world(objective)
    treatment = np.array(["control", "a", "b", "c"])[X[:, D].astype(int)]
    learner = SLearner(objective=objective, n_estimators=80, num_leaves=7, n_jobs=1)
    learner.fit(X[:, :D], treatment, y)
    assert learner.arm_split_ is not None
    assert learner.arm_split_.free is not None and learner.arm_split_.bound is not None
    fresh = world(objective, seed=2)[0][:, :D]
    expected = full_outcomes(learner, fresh)
    many = learner.predict_outcomes(fresh)  # one call per arm
    few = learner.predict_outcomes(fresh[: STACKED_ROWS // ARMS])  # every arm stacked
    np.testing.assert_allclose(many, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(few, many[: len(few)])
    uplift = learner.predict(fresh)
    np.testing.assert_allclose(uplift, expected[:, 1:] - expected[:, [0]], rtol=1e-9, atol=1e-12)
    assert np.abs(uplift).max() > 0.01  # the arm matters on this world
    loaded = UpliftLearner.from_dict(learner.to_dict())
    assert set(loaded.to_dict()["models"]) == {"mu"}  # the bundle holds the whole model only
    np.testing.assert_array_equal(loaded.predict(fresh), uplift)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(learner)).predict(fresh), uplift)


def test_s_learner_whose_model_ignores_the_arm_predicts_no_uplift() -> None:
    X, y = world("binary", arm_effect=0.0)
    treatment = np.array(["control", "a", "b", "c"])[X[:, D].astype(int)]
    learner = SLearner(n_estimators=30, num_leaves=7, min_child_samples=400, n_jobs=1)
    learner.fit(X[:, :D], treatment, y)
    split = learner.arm_split_
    assert split is not None and split.bound is None
    fresh = world("binary", seed=3)[0][:, :D]
    np.testing.assert_array_equal(learner.predict(fresh), 0.0)
    np.testing.assert_allclose(
        learner.predict_outcomes(fresh), full_outcomes(learner, fresh), rtol=1e-12, atol=1e-12
    )


def test_s_learner_without_a_split_walks_the_whole_model() -> None:
    X, y = world("regression")
    treatment = np.array(["control", "a", "b", "c"])[X[:, D].astype(int)]
    learner = SLearner(objective="regression", n_estimators=40, num_leaves=7, n_jobs=1)
    learner.fit(X[:, :D], treatment, y)
    fresh = world("regression", seed=4)[0][:, :D]
    split_uplift = learner.predict(fresh)
    learner.arm_split_ = None  # as for a model split_by_features refuses
    np.testing.assert_array_equal(learner.predict_outcomes(fresh), full_outcomes(learner, fresh))
    np.testing.assert_allclose(learner.predict(fresh), split_uplift, rtol=1e-9, atol=1e-12)
