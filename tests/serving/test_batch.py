"""Batch output: the DESIGN.md §6 `actions` table from a bundle with uplift models."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.batch import actions_table
from training.bundle import SCORE_COLUMNS, Bundle
from training.contract import open_dataset
from training.snapshots import active_spine

AS_OF = date(2026, 11, 2)


@pytest.fixture(scope="module")
def scored(small_world: Path) -> tuple[Bundle, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(bundle with uplift, features, scores, actions table) for the small world's customers."""
    from tests.training.test_bundle import train_all
    from tests.training.test_uplift_train import uplift_on

    trained = train_all(small_world)
    base = trained.bundle()
    learners = uplift_on(small_world).learners
    bundle = Bundle(base.builder, base.config, base.models, base.metadata, learners)
    with open_dataset(small_world).connect() as con:
        churn = bundle.config.outcome_for_role("churn")
        con.execute(f"CREATE TEMP TABLE _active AS {active_spine(con, AS_OF, churn and churn[1])}")
        features = bundle.builder.transform(con, spine="_active")
    scores = bundle.score_frame(features)
    return bundle, features, scores, actions_table(bundle, features, scores)


@pytest.mark.slow
def test_actions_table_has_the_design_columns(scored: tuple) -> None:
    bundle, _, scores, actions = scored
    uplift = [f"uplift_{o}" for o in bundle.config.outcomes]
    assert list(actions.columns) == [
        "customer_id",
        "action_id",
        "rank",
        "expected_value",
        "cost",
        *uplift,
    ]
    assert set(actions["customer_id"]) <= set(scores["customer_id"])
    assert not actions.duplicated(["customer_id", "action_id"]).any()
    assert set(actions["action_id"]) <= set(bundle.config.catalog.ids)
    costs = {a.id: a.cost for a in bundle.config.catalog.actions}
    assert (actions["cost"] == actions["action_id"].map(costs)).all()
    assert np.isfinite(actions[["expected_value", *uplift]].to_numpy()).all()


@pytest.mark.slow
def test_rank_one_is_positive_and_ranks_follow_value(scored: tuple) -> None:
    _, _, _, actions = scored
    first = actions[actions["rank"] == 1]
    assert len(first) > 0 and (first["expected_value"] > 0).all()
    assert first["customer_id"].is_unique
    # customers with nothing worth doing: their best action is ranked 2, below doing nothing
    best = actions.groupby("customer_id")["expected_value"].max()
    nothing = best[best <= 0].index
    assert len(nothing) > 0
    assert (actions[actions["customer_id"].isin(nothing)]["rank"] >= 2).all()
    ordered = actions.groupby("customer_id")["expected_value"].apply(
        lambda v: bool(np.all(np.diff(v.to_numpy()) <= 0))
    )
    assert ordered.all()


@pytest.mark.slow
def test_only_eligible_actions_are_listed(scored: tuple) -> None:
    _, features, scores, actions = scored
    plan = features.set_index(scores["customer_id"].to_numpy())["plan"].astype(str)
    premium = plan[plan == "premium"].index
    assert len(premium) > 0
    listed = actions[actions["customer_id"].isin(premium)]
    assert len(listed) > 0 and "premium_support_trial" not in set(listed["action_id"])
    others = actions[~actions["customer_id"].isin(premium)]
    assert "premium_support_trial" in set(others["action_id"])
    # the rule reads scores too: retention_discount only where churn_probability > 0.02
    churn = scores.set_index("customer_id")["churn_probability"]
    offered = actions[actions["action_id"] == "retention_discount"]["customer_id"]
    assert (churn.loc[offered] > 0.02).all()
    assert set(SCORE_COLUMNS) <= set(scores.columns)
