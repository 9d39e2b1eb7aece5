"""Uplift training on the small world: four learners compared per outcome and action on held-out
customers (never on evaluation customers), the chosen one per action calibrated, outcomes
learned side by side as one at a time, and carried by the bundle through save and load
exactly.

`uplift_on` (trained once per process) is shared with tests/serving/test_batch.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from training.config import CONTROL, OutcomeSpec, load_config
from training.data.contract import open_dataset
from training.data.exposures import (
    ExposureSet,
    build_exposure_set,
    evaluation_exposures,
    selection_exposures,
)
from training.features.definition import FeatureBuilder, to_matrix
from training.uplift.fit import (
    DEFAULT_LEARNER,
    FAST_PARAMS,
    SHRUNK_LEARNER,
    Z_CHOICE,
    UpliftResult,
    base_objective,
    choose_per_action,
    compare_learners,
    learn_outcome,
    orientation,
    paired_z,
    policy_actions,
    train_uplift,
)
from training.uplift.learners import LEARNERS, SLearner
from training.uplift.selection import MAX_SLOPE, UpliftModel

_CACHE: dict[object, Any] = {}


def uplift_on(data_dir: Path) -> UpliftResult:
    """train_uplift on a data set with the demo config (once per process; only read)."""
    if data_dir not in _CACHE:
        config = load_config()
        with open_dataset(data_dir).connect() as con:
            builder = FeatureBuilder(config.features).fit(con)
            result = train_uplift(con, builder, config, params={"n_estimators": 30})
        assert result is not None
        _CACHE[data_dir] = result
    result: UpliftResult = _CACHE[data_dir]
    return result


def test_policy_is_best_positive_action_else_control() -> None:
    uplift = np.array([[0.1, 0.3], [-0.2, -0.1], [0.0, 0.0], [0.5, 0.2]])
    assert policy_actions(uplift, ["a", "b"]).tolist() == ["b", CONTROL, CONTROL, "a"]
    assert policy_actions(np.zeros((2, 0)), []).tolist() == [CONTROL, CONTROL]


def test_paired_z_measures_a_gain_against_its_own_noise() -> None:
    rng = np.random.default_rng(0)
    default = rng.normal(size=4000) * 5
    assert paired_z(default, default) == 0.0  # identical policies: no evidence either way
    # the same rows, a small but consistent gain: far clearer paired than as two values
    better = default + 0.05 + rng.normal(scale=0.5, size=4000)
    assert paired_z(better, default) > 5
    noisy = default + rng.normal(scale=5.0, size=4000)  # different, but no better
    assert abs(paired_z(noisy, default)) < 3


def test_another_learner_needs_a_significant_paired_gain() -> None:
    table = pd.DataFrame(
        {
            "learner": ["SLearner", "TLearner", "XLearner"] * 2,
            "action": ["a"] * 3 + ["b"] * 3,
            "z_vs_default": [0.0, Z_CHOICE - 0.1, 1.0, 0.0, Z_CHOICE + 0.5, Z_CHOICE + 1.0],
        }
    )
    assert choose_per_action(table, ["a", "b"]) == {"a": DEFAULT_LEARNER, "b": "XLearner"}


def test_the_linear_learner_serves_below_the_bar_only_on_both_signals() -> None:
    """Below the bar the linear learner serves when its policies do better (z > 0) and its
    calibration slope is larger than the default's by more than the difference's standard error;
    a significant challenger still wins."""
    learners = ["SLearner", "TLearner", SHRUNK_LEARNER]
    cases = {  # action: (z, slopes, slope standard errors of the three learners)
        "both": ([0.0, 1.0, 0.4], [0.3, 0.5, 0.9], [0.1, 0.1, 0.1]),
        "worse": ([0.0, 1.0, -0.4], [0.3, 0.5, 0.9], [0.1, 0.1, 0.1]),
        "noisy": ([0.0, 1.0, 1.2], [0.9, 0.5, 0.4], [0.1, 0.1, 0.1]),
        "tie": ([0.0, 1.0, 1.3], [0.86, 0.5, 0.91], [0.1, 0.1, 0.1]),  # larger, within its noise
        "unsure": ([0.0, 1.0, 0.4], [0.3, 0.5, 0.9], [0.5, 0.1, 0.5]),  # 0.6 against se 0.71
        "challenger": ([0.0, Z_CHOICE + 0.5, 1.0], [0.3, 0.5, 0.9], [0.1, 0.1, 0.1]),
    }
    table = pd.DataFrame(
        {"learner": learners * len(cases), "action": [a for a in cases for _ in learners],
         "z_vs_default": [v for z, _, _ in cases.values() for v in z],
         "slope": [v for _, slope, _ in cases.values() for v in slope],
         "slope_se": [v for _, _, se in cases.values() for v in se]}
    )  # fmt: skip
    assert choose_per_action(table, list(cases)) == {
        "both": SHRUNK_LEARNER, "worse": DEFAULT_LEARNER, "noisy": DEFAULT_LEARNER,
        "tie": DEFAULT_LEARNER, "unsure": DEFAULT_LEARNER, "challenger": "TLearner",
    }  # fmt: skip


def test_churn_is_oriented_as_retention() -> None:
    churn = OutcomeSpec.model_validate(
        {"role": "churn", "kind": "any", "event_types": ["churn"], "horizon_days": 90}
    )
    value = OutcomeSpec.model_validate(
        {"role": "value", "kind": "sum", "event_types": ["purchase"], "horizon_days": 90}
    )
    assert orientation(churn) == (-1.0, 1.0) and orientation(value) == (1.0, 0.0)


def test_sums_and_counts_of_non_negative_amounts_get_the_log_link() -> None:
    def spec(kind: str) -> OutcomeSpec:
        return OutcomeSpec.model_validate(
            {"kind": kind, "event_types": ["purchase"], "horizon_days": 90}
        )

    spend = np.array([0.0, 12.5, 40.0])
    assert base_objective(spec("sum"), spend) == "tweedie"
    assert base_objective(spec("count"), np.array([0.0, 2.0, 5.0])) == "tweedie"
    assert base_objective(spec("sum"), np.array([-3.0, 12.5])) == "auto"  # refunds: additive
    assert base_objective(spec("count"), np.array([0.0, 1.0])) == "auto"  # binary stays binary
    assert base_objective(spec("sum"), np.zeros(3)) == "auto"
    assert base_objective(spec("last"), np.array([3.0, 9.0])) == "auto"  # a score, not an amount


def test_value_learners_use_the_log_link(small_world: Path) -> None:
    result = uplift_on(small_world)
    objectives = {
        outcome: {learner.objective_ for learner in selected.learners_.values()}
        for outcome, selected in result.learners.items()
    }
    config = load_config()
    for outcome, spec in config.outcomes.items():
        expected = {"sum": "tweedie", "any": "binary"}.get(spec.kind, "regression")
        assert objectives[outcome] == {expected}, outcome


@pytest.mark.slow
def test_learns_one_learner_per_outcome_and_action_with_a_comparison(small_world: Path) -> None:
    result = uplift_on(small_world)
    config = load_config()
    assert set(result.learners) == set(config.outcomes) and not result.skipped
    table = result.comparison
    assert set(table["outcome"]) == set(config.outcomes)
    assert {
        "outcome",
        "learner",
        "action",
        "dr_value",
        "dr_targeting",
        "qini",
        "chosen",
        "slope",
    } <= set(table.columns)
    actions = sorted(config.catalog.ids)
    for outcome, rows in table.groupby("outcome"):
        assert set(rows["action"]) == {"all", *actions}
        assert not rows[rows["action"] == "all"]["chosen"].any()
        selected = result.learners[str(outcome)]
        for action, per_action in rows[rows["action"] != "all"].groupby("action"):
            assert sorted(per_action["learner"]) == sorted(LEARNERS)
            assert per_action["chosen"].sum() == 1
            z = per_action.set_index("learner")["z_vs_default"]
            assert z[DEFAULT_LEARNER] == 0.0  # the default against itself
            chosen = per_action.loc[per_action["chosen"]].iloc[0]
            # another learner only when the paired comparison is significant, then the best;
            # below that, the linear learner when it does better and its slope is larger
            expected = z.idxmax() if z.max() > Z_CHOICE else DEFAULT_LEARNER
            slope = per_action.set_index("learner")["slope"]
            shrunk = z[SHRUNK_LEARNER] > 0 and slope[SHRUNK_LEARNER] > slope[DEFAULT_LEARNER]
            if expected == DEFAULT_LEARNER and shrunk:
                expected = SHRUNK_LEARNER
            assert chosen["learner"] == expected == selected.choice_[str(action)]
            # a challenger is served shrunk by its slope; the default as fitted
            served = chosen["slope"] if expected != DEFAULT_LEARNER else 1.0
            assert selected.lines_[str(action)].slope == served
            assert per_action["slope"].between(0, MAX_SLOPE).all()  # every learner's own slope
        assert (rows["ci"] > 0).all() and np.isfinite(rows["dr_value"]).all()
        assert selected.actions_ == actions
    churn = table[table["outcome"] == "churn"]["dr_value"]
    assert churn.between(0, 1).all()  # retention rate under the policy


def test_no_exposures_or_empty_catalog_gives_none(tmp_path: Path) -> None:
    from tests.training.pipelines.test_train import static_only_churn_set

    data = static_only_churn_set(tmp_path / "no_exposures", n=300)
    config = load_config(data / "config.yaml")
    with open_dataset(data).connect() as con:
        builder = FeatureBuilder(config.features).fit(con)
        assert train_uplift(con, builder, config) is None


@pytest.mark.slow
def test_bundle_round_trips_uplift_exactly(small_world: Path, tmp_path: Path) -> None:
    from tests.training.registry.test_bundle import train_all
    from training.registry.bundle import Bundle

    trained = train_all(small_world)
    learners: dict[str, UpliftModel] = dict(uplift_on(small_world).learners)
    # an outcome whose learner saw only some actions: the others are 0 in catalog order
    partial = SLearner(n_estimators=20)
    X_all = to_matrix(trained.frame, trained.builder.feature_names_)
    rng = np.random.default_rng(0)
    arms = np.array([CONTROL, "apology_credit"])[rng.integers(0, 2, len(X_all))]
    learners["visit"] = partial.fit(X_all, arms, rng.random(len(X_all)))
    bundle = trained.bundle()
    bundle = Bundle(bundle.builder, bundle.config, bundle.models, bundle.metadata, learners)
    loaded = Bundle.load(bundle.save(tmp_path / "bundle"))
    assert sorted((tmp_path / "bundle" / "uplift").iterdir()) == [
        tmp_path / "bundle" / "uplift" / f"{o}.json" for o in sorted(learners)
    ]
    X = X_all[:500]
    before, after = bundle.uplift_matrix(X), loaded.uplift_matrix(X)
    assert set(after) == set(learners)
    for outcome in learners:
        assert after[outcome].shape == (500, len(trained.config.catalog.ids))
        np.testing.assert_array_equal(after[outcome], before[outcome])
    ids = list(trained.config.catalog.ids)
    visit = after["visit"]
    assert (visit[:, [j for j, a in enumerate(ids) if a != "apology_credit"]] == 0).all()
    np.testing.assert_array_equal(
        visit[:, ids.index("apology_credit")], learners["visit"].predict(X)[:, 0]
    )
    churn = learners["churn"]
    order = [churn.actions_.index(a) for a in ids]
    np.testing.assert_array_equal(after["churn"], churn.predict(X)[:, order])


def test_bundle_without_uplift_saves_no_uplift_folder(small_world: Path, tmp_path: Path) -> None:
    from tests.training.registry.test_bundle import train_all
    from training.registry.bundle import Bundle

    bundle = train_all(small_world).bundle()
    loaded = Bundle.load(bundle.save(tmp_path / "bundle"))
    assert not (tmp_path / "bundle" / "uplift").exists()
    assert loaded.uplift == {} and loaded.uplift_matrix(np.zeros((3, 1))) == {}


def _value_exposures(data_dir: Path) -> tuple[ExposureSet, pd.DataFrame]:
    """The small world's exposure set and its rows labelled with `value`."""
    config = load_config()
    with open_dataset(data_dir).connect() as con:
        exposures = build_exposure_set(con, FeatureBuilder(config.features).fit(con), config)
    frame = exposures.frame
    return exposures, frame[frame["value"].notna()].reset_index(drop=True)


@pytest.mark.slow
def test_served_uplift_learns_from_selection_customers_never_from_evaluation_ones(
    small_world: Path,
) -> None:
    exposures, labelled = _value_exposures(small_world)
    config = load_config()
    names, cats = exposures.feature_names, exposures.categorical
    params = FAST_PARAMS | {"n_estimators": 30, "n_jobs": 1}
    rng = np.random.default_rng(5)

    def served_after_scrambling(rows: np.ndarray) -> np.ndarray:
        changed = labelled.copy()
        changed.loc[rows, "value"] = (
            rng.permutation(changed.loc[rows, "value"].to_numpy(copy=True)) * 3
        )
        result = learn_outcome(changed, "value", config.outcomes["value"], names, cats, params)
        assert not isinstance(result, str)
        return result[1].predict(to_matrix(labelled, names))

    evaluation = np.asarray(evaluation_exposures(labelled), dtype=bool)
    selection = np.asarray(selection_exposures(labelled), dtype=bool)
    assert evaluation.sum() > 100 and selection.sum() > 100 and not (evaluation & selection).any()
    original = served_after_scrambling(np.zeros(len(labelled), dtype=bool))
    np.testing.assert_array_equal(served_after_scrambling(evaluation), original)
    # the selection customers choose and calibrate the served models: their outcomes matter
    assert not np.allclose(served_after_scrambling(selection), original)


@pytest.mark.slow
def test_outcomes_learned_side_by_side_equal_one_at_a_time(small_world: Path) -> None:
    side_by_side = uplift_on(small_world)  # n_jobs=2 (FAST_PARAMS): two outcomes at a time
    config = load_config()
    with open_dataset(small_world).connect() as con:
        builder = FeatureBuilder(config.features).fit(con)
        one_by_one = train_uplift(con, builder, config, params={"n_estimators": 30, "n_jobs": 1})
    assert one_by_one is not None
    pd.testing.assert_frame_equal(side_by_side.comparison, one_by_one.comparison)
    X = to_matrix(_value_exposures(small_world)[1], builder.feature_names_)[:2000]
    for outcome, model in side_by_side.learners.items():
        np.testing.assert_array_equal(model.predict(X), one_by_one.learners[outcome].predict(X))
        # trained one booster thread per outcome, served with the configured threads
        assert {m.n_jobs for m in model.learners_.values()} == {FAST_PARAMS["n_jobs"]}


@pytest.mark.slow
def test_the_served_model_targets_a_heterogeneous_effect_and_sees_every_training_row() -> None:
    """Quality on generated data: a randomized test whose first action helps only where x0 > 0.
    The served model (fitted on the fit and judge rows together) ranks by the true effect and
    its policy earns most of the oracle's value on new customers."""
    from tests.training.uplift.test_learners import simulate

    world, new = (
        simulate(8000, seed=3, binary=False, randomized=True),
        simulate(4000, seed=4, binary=False),
    )
    spec = OutcomeSpec.model_validate(
        {"kind": "sum", "event_types": ["purchase"], "horizon_days": 30}
    )
    judge = np.arange(len(world.y)) % 5 == 0
    params = FAST_PARAMS | {"n_jobs": 1}
    table, model = compare_learners(world.X, world.treatment, world.y, world.propensity, ~judge,
                                    judge, spec, [], params)  # fmt: skip
    true_effect = new.mu[:, 1:] - new.mu[:, [0]]
    predicted = model.predict(new.X)
    assert np.corrcoef(predicted[:, 0], true_effect[:, 0])[0, 1] > 0.8
    rows = np.arange(len(new.y))
    chosen = np.where(predicted.max(axis=1) > 0, predicted.argmax(axis=1), -1)
    value = np.where(chosen >= 0, true_effect[rows, chosen.clip(0)], 0.0).mean()
    oracle = np.maximum(true_effect.max(axis=1), 0).mean()
    assert value / oracle > 0.85, (value, oracle)
    # served on every row given: the judge rows' outcomes change the served model
    shifted = world.y.copy()
    shifted[judge] += np.where(world.treatment[judge] == CONTROL, 0.0, 2.0)
    _, moved = compare_learners(world.X, world.treatment, shifted, world.propensity, ~judge,
                                judge, spec, [], params)  # fmt: skip
    assert moved.predict(new.X).mean() > predicted.mean() + 0.1
