"""Exposure sets: point-in-time features as of each exposure, labels from the window after it,
censoring, the customer split, and uplift learned from them against the simulator's truth."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from training.config import CONTROL, Config, load_config
from training.data.contract import open_dataset
from training.data.exposures import (
    ExposureSet,
    build_exposure_set,
    evaluation_exposures,
    selection_exposures,
    split_exposures,
    uplift_arrays,
)
from training.errors import ConfigError, NextbestError
from training.features.definition import FeatureBuilder, to_matrix
from training.uplift.learners import TLearner

# ---------------------------------------------------------------------------------------------
# a tiny hand-made data set: every label can be checked by eye

TINY_CONFIG = """
snapshots: {as_of: [2026-01-01]}
outcomes:
  bought:  {kind: count, event_types: [purchase], horizon_days: 10}
  churned: {role: churn, kind: any, event_types: [churn], horizon_days: 30}
actions: actions.yaml
"""
TINY_ACTIONS = "actions:\n  - {id: promo, name: Promo, cost: 1.0}\n"
EVENTS = [  # customer, ts, event_type, value
    ("a", "2025-12-20", "purchase", 100.0),  # before a's first exposure: a feature, not a label
    ("a", "2026-01-01 00:00:00", "purchase", 10.0),  # at the exposure: in its window
    ("a", "2026-01-05", "purchase", 5.0),
    ("a", "2026-01-11 00:00:00", "purchase", 7.0),  # exposure + 10 days: outside the window
    ("b", "2026-01-03", "purchase", 1.0),
    ("b", "2026-01-20", "churn", None),
    ("c", "2026-02-20", "visit", None),  # the last event: data observed until 2026-02-21
]
EXPOSURES = [  # customer, ts, action, propensity
    ("a", "2026-01-01", "promo", 0.5),
    ("a", "2026-01-10", "control", 0.5),  # a second window for the same customer
    ("b", "2026-01-01", "control", 0.5),
    ("c", "2026-02-05", "promo", 0.25),  # 10-day window observed, 30-day window censored
]


def _write_tiny(root: Path, exposures: list[tuple[str, str, str, float]]) -> Path:
    data = root / "data"
    data.mkdir()
    pd.DataFrame({"customer_id": ["a", "b", "c"], "age": [30, 40, 50]}).to_parquet(
        data / "customers.parquet"
    )
    events = pd.DataFrame(EVENTS, columns=["customer_id", "ts", "event_type", "value"])
    events["ts"] = pd.to_datetime(events["ts"], format="ISO8601")
    events["channel"] = "web"
    events.to_parquet(data / "events.parquet")
    if exposures:  # none: the optional table is absent
        exp = pd.DataFrame(exposures, columns=["customer_id", "ts", "action_id", "propensity"])
        exp["ts"] = pd.to_datetime(exp["ts"])
        exp.to_parquet(data / "exposures.parquet")
    (root / "config.yaml").write_text(TINY_CONFIG)
    (root / "actions.yaml").write_text(TINY_ACTIONS)
    return data


def _build(data: Path, config: Config) -> ExposureSet:
    with open_dataset(data).connect() as con:
        return build_exposure_set(con, FeatureBuilder(config.features).fit(con), config)


@pytest.fixture
def tiny(tmp_path: Path) -> ExposureSet:
    data = _write_tiny(tmp_path, EXPOSURES)
    return _build(data, load_config(tmp_path / "config.yaml"))


def _row(es: ExposureSet, customer: str, ts: str) -> pd.Series:
    frame = es.frame
    hit = frame[(frame["customer_id"] == customer) & (frame["as_of"] == pd.Timestamp(ts))]
    assert len(hit) == 1
    return hit.iloc[0]


def test_one_row_per_exposure_with_action_propensity_features_and_labels(
    tiny: ExposureSet,
) -> None:
    frame = tiny.frame
    assert len(frame) == len(EXPOSURES)
    assert list(frame.columns[:4]) == ["customer_id", "as_of", "action_id", "propensity"]
    assert list(frame.columns[4:]) == [*tiny.feature_names, "bought", "churned"]
    assert tiny.outcomes == ["bought", "churned"] and tiny.actions == ["promo"]
    assert _row(tiny, "c", "2026-02-05")[["action_id", "propensity"]].tolist() == ["promo", 0.25]


def test_labels_count_only_events_in_the_window_after_the_exposure(tiny: ExposureSet) -> None:
    first = _row(tiny, "a", "2026-01-01")
    assert first["bought"] == 2  # 01-01 00:00 and 01-05; not 12-20 (before), not 01-11 (after)
    second = _row(tiny, "a", "2026-01-10")
    assert second["bought"] == 1  # its own window: only 01-11
    b = _row(tiny, "b", "2026-01-01")
    assert (b["bought"], b["churned"]) == (1, 1)


def test_features_use_only_events_before_the_exposure(tiny: ExposureSet) -> None:
    assert _row(tiny, "a", "2026-01-01")["purchase_count_30d"] == 1  # 12-20 only
    assert _row(tiny, "a", "2026-01-10")["purchase_count_30d"] == 3  # 12-20, 01-01, 01-05
    # the exposure itself is not history yet; the earlier one is
    assert _row(tiny, "a", "2026-01-01")["promo_exposures_365d"] == 0
    assert _row(tiny, "a", "2026-01-10")["promo_exposures_365d"] == 1


def test_censored_windows_are_nan_per_outcome(tiny: ExposureSet) -> None:
    c = _row(tiny, "c", "2026-02-05")
    assert c["bought"] == 0  # 02-05 + 10 days <= 02-21: observed, nothing bought
    assert np.isnan(c["churned"])  # 02-05 + 30 days > 02-21: unknown, not "stayed"
    X, treatment, y, propensity = uplift_arrays(tiny.frame, "churned", tiny.feature_names)
    assert len(y) == 3 and CONTROL in treatment and np.isfinite(y).all()
    assert X.shape == (3, len(tiny.feature_names)) and propensity.shape == (3,)
    assert len(uplift_arrays(tiny.frame, "bought", tiny.feature_names)[2]) == 4


def test_actions_missing_from_the_catalog_are_an_error(tmp_path: Path) -> None:
    data = _write_tiny(tmp_path, [*EXPOSURES, ("b", "2026-01-02", "mystery_gift", 0.5)])
    with pytest.raises(ConfigError, match="mystery_gift"):
        _build(data, load_config(tmp_path / "config.yaml"))


def test_no_exposures_is_an_error(tmp_path: Path) -> None:
    data = _write_tiny(tmp_path, [])
    with pytest.raises(NextbestError, match="no exposures"):
        _build(data, load_config(tmp_path / "config.yaml"))


# ---------------------------------------------------------------------------------------------
# the small synthetic world


@pytest.fixture(scope="module")
def world(small_world: Path) -> Iterator[tuple[duckdb.DuckDBPyConnection, FeatureBuilder]]:
    config = load_config()
    with open_dataset(small_world).connect() as con:
        yield con, FeatureBuilder(config.features).fit(con)


@pytest.fixture(scope="module")
def world_set(world: tuple[duckdb.DuckDBPyConnection, FeatureBuilder]) -> ExposureSet:
    con, builder = world
    return build_exposure_set(con, builder, load_config())


def test_world_features_equal_single_date_features_as_of_the_exposure(
    world: tuple[duckdb.DuckDBPyConnection, FeatureBuilder], world_set: ExposureSet
) -> None:
    con, builder = world
    frame = world_set.frame
    day = frame["as_of"].sort_values().unique()[len(frame["as_of"].unique()) // 2]
    exposed = frame[frame["as_of"] == day].drop_duplicates("customer_id").set_index("customer_id")
    single = builder.transform(con, as_of=pd.Timestamp(day)).set_index("customer_id")
    names = world_set.feature_names
    expected = single.loc[exposed.index, names]
    assert len(exposed) > 500
    np.testing.assert_array_equal(to_matrix(exposed, names), to_matrix(expected, names))


def test_world_split_keeps_customers_together(world_set: ExposureSet) -> None:
    frame = world_set.frame
    held = split_exposures(frame)
    assert 0.25 < held.mean() < 0.35
    sides = pd.Series(held).groupby(frame["customer_id"].to_numpy()).nunique()
    assert (sides == 1).all()


def test_selection_and_evaluation_customers_split_the_held_out_ones(
    world_set: ExposureSet,
) -> None:
    """Learners are chosen on some held-out customers and judged on the others: the two parts
    are disjoint, together exactly the held-out customers, about half each, customers whole."""
    frame = world_set.frame
    held, choose, judge = (
        split_exposures(frame), selection_exposures(frame), evaluation_exposures(frame)
    )  # fmt: skip
    assert not np.any(choose & judge)
    np.testing.assert_array_equal(choose | judge, held)
    assert 0.1 < judge.mean() < 0.2 and 0.1 < choose.mean() < 0.2
    part = pd.Series(choose.astype(int) + 2 * judge.astype(int))
    assert (part.groupby(frame["customer_id"].to_numpy()).nunique() == 1).all()


def test_world_uplift_signs_agree_with_the_truth(small_world: Path, world_set: ExposureSet) -> None:
    """A T-learner fitted on the non-held-out exposures predicts, on the held-out ones, a mean
    churn uplift per action. For every action whose true mean effect is clearly non-zero —
    larger than two standard errors of a difference in churn rates with the training arm sizes,
    i.e. detectable at all from this sample — the sign must match the truth and the estimate must
    lie within three such standard errors of it."""
    truth = pd.read_parquet(Path(f"{small_world}_truth") / "exposures_truth.parquet")
    truth = truth.rename(columns={"ts": "as_of"}).drop(columns=["action_id", "propensity"])
    frame = world_set.frame.merge(truth, on=["customer_id", "as_of"], validate="one_to_one")
    held = split_exposures(frame)
    X, treatment, y, propensity = uplift_arrays(frame[~held], "churn", world_set.feature_names)
    learner = TLearner(
        n_estimators=100,
        learning_rate=0.05,
        num_leaves=7,
        min_child_samples=40,
        categorical=world_set.categorical,
    ).fit(X, treatment, y, propensity)
    test = frame[held]
    predicted = learner.predict(to_matrix(test, world_set.feature_names)).mean(axis=0)
    rate, n_control = y.mean(), np.sum(treatment == CONTROL)
    checked = []
    for k, action in enumerate(learner.actions_):
        true_effect = float((test[f"churn_{action}"] - test["churn_control"]).mean())
        se = np.sqrt(rate * (1 - rate) * (1 / np.sum(treatment == action) + 1 / n_control))
        if abs(true_effect) > 2 * se:
            checked.append(action)
            assert np.sign(predicted[k]) == np.sign(true_effect), (action, predicted[k])
            assert abs(predicted[k] - true_effect) < 3 * se, (action, predicted[k], true_effect)
    assert "retention_discount" in checked  # the world's clear effect: a discount lowers churn
