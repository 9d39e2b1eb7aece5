"""A LightGBM model walked by ArmForest gives every arm LightGBM's own raw score, bit for bit,
for every objective an S-learner uses, with missing values, zeros, categorical features and arm
codes it never saw; the S-learner built on it predicts what LightGBM predicts once per arm."""

from __future__ import annotations

import pickle

import lightgbm as lgb
import numpy as np
import pytest

from training.uplift import arm_forest
from training.uplift.arm_forest import ArmForest
from training.uplift.learners import SLearner, UpliftLearner
from training.uplift.model_text import objective_link, tree_blocks

OBJECTIVES = ["binary", "regression", "tweedie"]
N, D = 2000, 5  # rows; features before the arm column (index D)
CAT = 3  # a categorical feature besides the arm
ARMS = 4


def world(objective: str, seed: int = 0, arm_effect: float = 0.8) -> tuple[np.ndarray, np.ndarray]:
    """(X with the arm code as its last column, y): the outcome depends on x0, on the category
    in x3 and on the arm by `arm_effect`, with missing values in x1 and x3 and zeros in x2."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, D + 1))
    X[rng.random(N) < 0.1, 1] = np.nan
    X[rng.random(N) < 0.3, 2] = 0.0
    X[:, CAT] = rng.integers(12, size=N)
    X[rng.random(N) < 0.1, CAT] = np.nan
    X[:, D] = rng.integers(ARMS, size=N)
    arm = X[:, D]
    signal = X[:, 0] + 0.5 * (X[:, CAT] == 4) + arm_effect * ((arm == 2) - 0.5 * (arm == 3))
    signal += arm_effect * np.nan_to_num(X[:, 1]) * (arm == 1)
    if objective == "binary":
        y = (signal + rng.normal(size=N) > 0).astype(float)
    elif objective == "tweedie":
        y = np.exp(0.5 * signal) * (rng.random(N) < 0.6)
    else:
        y = signal + rng.normal(size=N)
    return X, y


def train(
    objective: str, X: np.ndarray, y: np.ndarray, rounds: int = 60, **params: object
) -> lgb.Booster:
    params = {"objective": objective, "num_leaves": 7, "verbose": -1, "num_threads": 1,
              "min_data_per_group": 10, "cat_smooth": 1, **params}  # fmt: skip
    return lgb.train(
        params, lgb.Dataset(X, y, categorical_feature=[CAT, D]), num_boost_round=rounds
    )


def fresh_rows(seed: int, n: int = 300) -> np.ndarray:
    """Rows to predict, with what training never had: negative, unseen and missing categories,
    near-zero values LightGBM treats as zero."""
    X = world("regression", seed=seed)[0][:n, :D]
    X[:, CAT] = np.random.default_rng(seed).integers(-1, 15, size=n)
    X[::11, CAT] = np.nan
    X[::13, 0] = 1e-40
    return X


def per_arm(booster: lgb.Booster, X: np.ndarray, codes: np.ndarray, raw: bool) -> np.ndarray:
    """LightGBM's predictions of X with the arm column set to each code, one call per arm."""
    return np.column_stack([
        booster.predict(np.column_stack([X, np.full(len(X), c)]), raw_score=raw, num_threads=1)
        for c in codes
    ])  # fmt: skip


@pytest.mark.parametrize(
    ("objective", "params"),
    [("binary", {}), ("regression", {"zero_as_missing": True}), ("tweedie", {})],
)
def test_every_arm_gets_lightgbms_raw_score_bit_for_bit(objective: str, params: dict) -> None:
    X, y = world(objective)
    booster = train(objective, X, y, **params)
    forest = ArmForest.of(booster, D)
    assert forest is not None
    rows, codes = fresh_rows(1), np.array([0.0, 1.0, 2.0, 3.0, 7.0, -1.0])  # 7, -1: never seen
    np.testing.assert_array_equal(forest.raw(rows, codes), per_arm(booster, rows, codes, True))
    predicted = forest.predict(rows, codes)
    np.testing.assert_allclose(predicted, per_arm(booster, rows, codes, False), rtol=1e-14)
    assert np.ptp(predicted, axis=1).max() > 0.01  # the arm matters on this world


@pytest.mark.parametrize("arm_effect", [0.0, 2.0])
def test_models_that_never_or_always_read_the_arm(arm_effect: float) -> None:
    X, y = world("regression", arm_effect=arm_effect)
    if arm_effect == 0.0:
        X[:, D] = 1.0  # one value: LightGBM cannot split on it
    else:
        X[:, :D] = 0.0  # only the arm can be split on
    booster = train("regression", X, y, rounds=20)
    forest = ArmForest.of(booster, D)
    assert forest is not None
    rows, codes = fresh_rows(2), np.arange(ARMS, dtype=np.float64)
    raw = forest.raw(rows, codes)
    np.testing.assert_array_equal(raw, per_arm(booster, rows, codes, True))
    assert (np.ptp(raw, axis=1).max() == 0.0) == (arm_effect == 0.0)


def test_one_leaf_trees_add_their_value_to_every_arm() -> None:
    X, y = world("regression")
    booster = train("regression", X, np.full(N, 3.0) + 1e-3 * (X[:, 0] > 0), rounds=5,
                    min_data_in_leaf=N)  # fmt: skip
    forest = ArmForest.of(booster, D)
    assert forest is not None and len(forest.trees.feature) == 0
    rows, codes = fresh_rows(3), np.arange(ARMS, dtype=np.float64)
    np.testing.assert_array_equal(forest.raw(rows, codes), per_arm(booster, rows, codes, True))


def test_a_model_it_cannot_walk_exactly_gets_none() -> None:
    X, y = world("regression")
    params = {"objective": "regression", "reg_sqrt": True, "verbose": -1, "num_threads": 1}
    assert ArmForest.of(lgb.train(params, lgb.Dataset(np.abs(X), np.abs(y)), 5), D) is None
    labels = np.random.default_rng(0).integers(3, size=N).astype(float)
    params = {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1}
    assert ArmForest.of(lgb.train(params, lgb.Dataset(X, labels), 3), D) is None
    params = {"objective": "regression", "linear_tree": True, "verbose": -1, "num_threads": 1}
    assert ArmForest.of(lgb.train(params, lgb.Dataset(np.nan_to_num(X), y), 3), D) is None
    booster = train("regression", X, y, rounds=3)
    assert ArmForest.of(booster, D - 1) is None  # the arm is not the column after the features
    forest = ArmForest.of(booster, D)
    assert forest is not None
    with pytest.raises(ValueError, match=r"expected \(n, 5\) rows"):
        forest.raw(X, np.zeros(2))


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
    for objective in ("regression sqrt", "multiclass num_class:3", "lambdarank", "huber", ""):
        assert objective_link(objective) is None


def test_tree_blocks_cut_a_model_at_its_trees() -> None:
    X, y = world("binary")
    header, blocks, footer = tree_blocks(train("binary", X, y, rounds=10).model_to_string())
    assert len(blocks) == 10 and footer.startswith("end of trees")
    assert header.startswith("tree\n") and all(
        b.startswith(f"Tree={i}\n") for i, b in enumerate(blocks)
    )


# ---------------------------------------------------------------------------------------------
# the S-learner on its forest


@pytest.fixture
def walked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The S-learners walk their forest whatever the size of the work (a loaded kernel)."""
    monkeypatch.setattr(arm_forest, "_loaded", True)


@pytest.mark.parametrize("objective", OBJECTIVES)
@pytest.mark.usefixtures("walked")
def test_s_learner_predicts_what_lightgbm_predicts_per_arm(objective: str) -> None:
    X, y = world(objective)
    treatment = np.array(["control", "a", "b", "c"])[X[:, D].astype(int)]
    learner = SLearner(objective=objective, n_estimators=80, num_leaves=7, n_jobs=1)
    learner.fit(X[:, :D], treatment, y)
    assert learner.forest_ is not None
    fresh = fresh_rows(4)
    expected = per_arm(learner.models_["mu"], fresh, np.arange(ARMS, dtype=np.float64), False)
    outcomes = learner.predict_outcomes(fresh)
    np.testing.assert_allclose(outcomes, expected, rtol=1e-14)
    np.testing.assert_array_equal(learner.predict_outcomes(fresh[7:8]), outcomes[7:8])  # one row
    uplift = learner.predict(fresh)
    np.testing.assert_array_equal(uplift, outcomes[:, 1:] - outcomes[:, [0]])
    np.testing.assert_array_equal(learner.predict_actions(fresh, ["c"]), uplift[:, [2]])
    assert np.abs(uplift).max() > 0.01  # the arm matters on this world
    loaded = UpliftLearner.from_dict(learner.to_dict())
    assert set(loaded.to_dict()["models"]) == {"mu"}  # the bundle holds LightGBM's model only
    np.testing.assert_array_equal(loaded.predict(fresh), uplift)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(learner)).predict(fresh), uplift)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_small_work_asks_lightgbm_for_the_same_numbers(
    objective: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before a process has loaded the kernel, work that does not pay for loading it goes to
    LightGBM per arm (raw scores, the forest's link): the very numbers of the walk."""
    X, y = world(objective)
    treatment = np.array(["control", "a", "b", "c"])[X[:, D].astype(int)]
    learner = SLearner(objective=objective, n_estimators=40, num_leaves=7, n_jobs=1)
    learner.fit(X[:, :D], treatment, y)
    fresh = fresh_rows(7)
    monkeypatch.setattr(arm_forest, "_loaded", False)
    monkeypatch.setattr(arm_forest, "WORTH_LOADING", 10**18)
    assert learner.forest_ is not None and not learner.forest_.worth_walking(len(fresh), ARMS)
    asked = learner.predict_outcomes(fresh)
    monkeypatch.setattr(arm_forest, "WORTH_LOADING", 1)  # big enough: walked, and loaded
    assert learner.forest_.worth_walking(len(fresh), ARMS)
    np.testing.assert_array_equal(learner.predict_outcomes(fresh), asked)
    assert arm_forest._loaded
    monkeypatch.setattr(arm_forest, "WORTH_LOADING", 10**18)
    assert learner.forest_.worth_walking(1, 1)  # once loaded, every walk pays


def test_load_kernel_loads_it() -> None:
    arm_forest.load_kernel()
    assert arm_forest._loaded


@pytest.mark.usefixtures("walked")
def test_s_learner_without_a_forest_asks_lightgbm_per_arm() -> None:
    X, y = world("regression")
    treatment = np.array(["control", "a", "b", "c"])[X[:, D].astype(int)]
    learner = SLearner(objective="regression", n_estimators=40, num_leaves=7, n_jobs=1)
    learner.fit(X[:, :D], treatment, y)
    fresh = fresh_rows(5)
    walked = learner.predict_outcomes(fresh)
    learner.forest_ = None  # as for a model ArmForest.of refuses
    codes = np.arange(ARMS, dtype=np.float64)
    np.testing.assert_array_equal(
        learner.predict_outcomes(fresh), per_arm(learner.models_["mu"], fresh, codes, False)
    )
    np.testing.assert_array_equal(learner.predict_outcomes(fresh), walked)  # regression: no link


def test_more_arms_than_a_mask_holds_are_walked_in_parts() -> None:
    X, y = world("binary")
    booster = train("binary", X, y, rounds=20)
    forest = ArmForest.of(booster, D)
    assert forest is not None
    rows, codes = fresh_rows(6, n=40), np.tile(np.arange(ARMS, dtype=np.float64), 19)  # 76 arms
    raw = forest.raw(rows, codes)
    np.testing.assert_array_equal(raw, per_arm(booster, rows, codes, True))
    np.testing.assert_array_equal(raw[:, :ARMS], raw[:, -ARMS:])
