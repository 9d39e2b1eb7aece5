"""Batch scoring: chunk scoring, ranking, control group and campaign selection on the small world
(real DuckDB features, real LightGBM models), then whole jobs on a real MLflow store."""

from __future__ import annotations

import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.batch.chunks import actions_table, score_chunk, unpack
from serving.batch.output import OutputSpec, write_outputs
from serving.batch.population import iter_features, plan_population
from training.config import SCORE_COLUMNS
from training.data.contract import open_dataset
from training.policy.arbitration import rank_one
from training.policy.campaign import CampaignLimits
from training.policy.control import control_mask
from training.registry.bundle import Bundle

AS_OF = date(2026, 11, 2)
UPLIFT = ["uplift_churn", "uplift_satisfaction", "uplift_value", "uplift_visit"]


def candidate_frames(data: Path, bundle: Bundle, chunk_customers: int) -> list[pd.DataFrame]:
    """The candidates frame of every chunk of the small world's active customers, in order."""
    with open_dataset(data).connect() as con:
        population = plan_population(con, bundle.config, AS_OF, chunk_customers)
        return [score_chunk(bundle, f) for _, f in iter_features(con, bundle.builder, population)]


@pytest.fixture(scope="module")
def frames(small_world: Path, uplift_bundle: Bundle) -> list[pd.DataFrame]:
    return candidate_frames(small_world, uplift_bundle, chunk_customers=1500)


@pytest.fixture(scope="module")
def actions(frames: list[pd.DataFrame], uplift_bundle: Bundle) -> pd.DataFrame:
    tables = [actions_table(unpack(f, uplift_bundle.config)) for f in frames]
    return pd.concat(tables, ignore_index=True)


@pytest.fixture(scope="module")
def candidates(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True)


@pytest.mark.slow
def test_chunks_are_sorted_ranges_and_chunking_changes_nothing(
    small_world: Path, uplift_bundle: Bundle, frames: list[pd.DataFrame], candidates: pd.DataFrame
) -> None:
    assert len(frames) > 2
    ids = candidates["customer_id"]
    assert ids.is_unique and ids.is_monotonic_increasing
    whole = candidate_frames(small_world, uplift_bundle, chunk_customers=10**9)
    assert len(whole) == 1
    pd.testing.assert_frame_equal(whole[0], candidates)


@pytest.mark.slow
def test_actions_table_has_the_design_columns(
    uplift_bundle: Bundle, candidates: pd.DataFrame, actions: pd.DataFrame
) -> None:
    design = ["customer_id", "action_id", "rank", "expected_value", "cost", *UPLIFT]
    assert list(actions.columns) == [*design, "selected"]
    assert set(actions["customer_id"]) <= set(candidates["customer_id"])
    assert not actions.duplicated(["customer_id", "action_id"]).any()
    assert set(actions["action_id"]) <= set(uplift_bundle.config.catalog.ids)
    costs = {a.id: a.cost for a in uplift_bundle.config.catalog.actions}
    assert (actions["cost"] == actions["action_id"].map(costs)).all()
    assert np.isfinite(actions[["expected_value", *UPLIFT]].to_numpy()).all()


@pytest.mark.slow
def test_rank_one_is_positive_selected_and_ranks_follow_value(actions: pd.DataFrame) -> None:
    first = actions[actions["rank"] == 1]
    assert len(first) > 0 and (first["expected_value"] > 0).all()
    assert first["customer_id"].is_unique
    assert (actions["selected"] == (actions["rank"] == 1)).all()  # unconstrained
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
def test_only_eligible_actions_are_listed(
    small_world: Path, uplift_bundle: Bundle, candidates: pd.DataFrame, actions: pd.DataFrame
) -> None:
    customers = pd.read_parquet(small_world / "customers.parquet").set_index("customer_id")
    premium = set(customers.index[customers["plan"] == "premium"])
    listed = actions[actions["customer_id"].isin(premium)]
    assert len(listed) > 0 and "premium_support_trial" not in set(listed["action_id"])
    others = actions[~actions["customer_id"].isin(premium)]
    assert "premium_support_trial" in set(others["action_id"])
    # the rule reads scores too: retention_discount only where churn_probability > 0.02
    churn = candidates.set_index("customer_id")["churn_probability"]
    offered = actions[actions["action_id"] == "retention_discount"]["customer_id"]
    assert (churn.loc[offered] > 0.02).all()
    assert set(SCORE_COLUMNS) <= set(candidates.columns)


@pytest.mark.slow
def test_control_group_keeps_scores_and_gets_no_action(
    uplift_bundle: Bundle, candidates: pd.DataFrame, actions: pd.DataFrame
) -> None:
    d = uplift_bundle.config.decisioning
    expected = control_mask(candidates["customer_id"], d.control_share, d.control_salt)
    assert (candidates["control_group"].to_numpy() == expected).all()
    assert 0.03 < expected.mean() < 0.07  # the configured 5 %
    control = set(candidates.loc[expected, "customer_id"])
    assert candidates.loc[expected, "churn_probability"].notna().all()
    assert not set(actions["customer_id"]) & control


def write(
    folder: Path, frames: list[pd.DataFrame], bundle: Bundle, limits: CampaignLimits
) -> pd.DataFrame:
    spec = OutputSpec(bundle.config, "1", AS_OF, sum(map(len, frames)), True, limits)
    folder.mkdir()
    write_outputs(folder, frames, spec)
    assert sorted(p.name for p in folder.iterdir()) == ["actions.parquet", "scores.parquet"]
    return pd.read_parquet(folder / "actions.parquet")


@pytest.mark.slow
def test_budget_and_caps_select_at_most_one_affordable_action(
    tmp_path: Path, uplift_bundle: Bundle, frames: list[pd.DataFrame], actions: pd.DataFrame
) -> None:
    catalog = uplift_bundle.config.catalog
    free = CampaignLimits(None, tuple(math.inf for _ in catalog.actions))
    assert not free.binding
    # a constraint that does not bind takes the two-pass path and selects the same rows
    loose = CampaignLimits(1e12, free.volume_caps)
    pd.testing.assert_frame_equal(write(tmp_path / "loose", frames, uplift_bundle, loose), actions)

    budget, caps = 2000.0, tuple(50.0 if a.cost < 10 else math.inf for a in catalog.actions)
    tight = write(tmp_path / "tight", frames, uplift_bundle, CampaignLimits(budget, caps))
    chosen = tight[tight["selected"]]
    assert chosen["customer_id"].is_unique and (chosen["expected_value"] > 0).all()
    assert budget - chosen["cost"].max() < chosen["cost"].sum() <= budget
    per_action = chosen["action_id"].value_counts()
    for action, cap in zip(catalog.ids, caps, strict=True):
        assert per_action.get(action, 0) <= cap
    # rank keeps its meaning: the customer's own ranking, the same rows as unconstrained
    pd.testing.assert_frame_equal(tight.drop(columns="selected"), actions.drop(columns="selected"))


@pytest.mark.slow
def test_batch_ranking_is_the_online_decision_function_row_by_row(
    uplift_bundle: Bundle, candidates: pd.DataFrame, actions: pd.DataFrame
) -> None:
    """Until the service's /recommend test exists: every customer's batch ranking is what
    training.policy.arbitration.rank_one (the online service's call) answers for the same candidates."""
    chunk = unpack(candidates, uplift_bundle.config)
    c = chunk.candidates
    listed = actions.groupby("customer_id", sort=False)["action_id"].apply(list)
    ids = list(c.action_ids)
    for i in np.random.default_rng(0).choice(len(candidates), 300, replace=False):
        online = rank_one(c.expected_value[i], c.mask()[i], cost=c.cost, include_non_positive=True)
        batch = listed.get(chunk.customer_id[i], [])
        assert batch == [ids[j] for j in online], chunk.customer_id[i]
