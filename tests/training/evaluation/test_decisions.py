"""Evaluation of a bundle's decisions on held-out exposures, against the simulator's truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.data.contract import open_dataset
from training.errors import NextbestError
from training.evaluation.decisions import (
    Evaluation,
    baseline_policies,
    evaluate_bundle,
    objective_weights,
    verdict,
)
from training.registry.bundle import Bundle
from training.synth.generate import default_truth_dir

BASELINES = {"nothing", "random", "best_single", "churn_targeting"}


@pytest.fixture(scope="module")
def bundle(small_world: Path) -> Bundle:
    from tests.training.registry.test_bundle import train_all
    from tests.training.uplift.test_fit import uplift_on

    base = train_all(small_world).bundle()
    learners = uplift_on(small_world).learners
    return Bundle(base.builder, base.config, base.models, base.metadata, learners)


@pytest.fixture(scope="module")
def evaluation(small_world: Path, bundle: Bundle) -> Evaluation:
    with open_dataset(small_world).connect() as con:
        return evaluate_bundle(con, bundle, default_truth_dir(small_world))


@pytest.mark.slow
def test_every_policy_is_valued_with_intervals_and_truth(evaluation: Evaluation) -> None:
    table = evaluation.policies.set_index("policy")
    assert set(table.index) == {"learned", "oracle", *BASELINES}
    assert table.loc["nothing", ["dr_value", "ips_value", "true_value"]].tolist() == [0, 0, 0]
    judged = table.drop(index=["oracle", "nothing"])
    assert np.isfinite(judged[["dr_value", "dr_ci", "ips_value", "ips_ci"]].to_numpy()).all()
    assert (judged["dr_ci"] > 0).all() and (judged["truth_rows"] == evaluation.exposures).all()
    # the truth covers every row here, so the DR over the truth's rows is the DR over all rows
    np.testing.assert_allclose(judged["truth_rows_dr_value"], judged["dr_value"])
    np.testing.assert_allclose(judged["truth_rows_dr_ci"], judged["dr_ci"])
    oracle = table.loc["oracle", "true_value"]
    assert oracle > 0 and (table["true_value"] <= oracle + 1e-9).all()
    assert table.loc["random", "true_value"] < 0  # every action costs; most do not pay
    # the DR intervals are honest: they cover the true value (95% each, so allow one miss)
    covered = (judged["dr_value"] - judged["true_value"]).abs() <= judged["dr_ci"]
    assert covered.sum() >= len(judged) - 1, judged[["dr_value", "dr_ci", "true_value"]]


@pytest.mark.slow
def test_ranking_quality_and_roi_tables(evaluation: Evaluation, bundle: Bundle) -> None:
    ids = set(bundle.config.catalog.ids)
    qini = evaluation.qini
    assert set(qini["action_id"]) == ids and set(qini["outcome"]) == set(bundle.config.outcomes)
    binary = qini["outcome"].isin(["churn", "visit"])
    assert qini.loc[binary, "qini"].notna().all() and qini.loc[~binary, "qini"].isna().all()
    deciles = evaluation.calibration.groupby(["outcome", "action_id"])["decile"].apply(list)
    assert all(d == list(range(1, 11)) for d in deciles)
    curve = evaluation.investment
    assert curve.iloc[0].tolist() == [0.0, 0.0] and curve["spend"].is_monotonic_increasing
    learned = evaluation.policies.set_index("policy").loc["learned", "treated_share"]
    actions = evaluation.actions
    assert actions["share"].sum() == pytest.approx(learned)
    assert (actions["spend"] > 0).all() and set(actions["action_id"]) <= ids


def test_objective_weights_are_those_of_net_value(bundle: Bundle) -> None:
    ltv = np.array([100.0, 250.0])
    scores = {"ltv": ltv, "churn_probability": np.array([0.1, 0.2])}
    weights = objective_weights(bundle, scores, 2)
    assert set(weights) == {"value", "churn", "satisfaction"}  # visit carries no money
    np.testing.assert_allclose(weights["value"], [1.0, 1.0])
    np.testing.assert_allclose(weights["churn"], -ltv)
    np.testing.assert_allclose(weights["satisfaction"], [2.0, 2.0])


def test_baselines_follow_their_definitions() -> None:
    allowed = np.array([[True, True], [True, False], [False, True], [True, True]])
    learned = np.array([1, 0, 0, 0])
    churn = np.array([0.9, 0.1, 0.5, 0.2])
    retention = np.array([[0.01, 0.03], [0.0, 0.02], [0.0, 0.05], [0.01, 0.04]])
    values = {1: 5.0, 2: -1.0}  # action 1 (index 0) is the better single action

    def value_of(arms: np.ndarray) -> float:
        return float(np.mean([values.get(int(a), 0.0) for a in arms]))

    out = baseline_policies(["a", "b"], learned, allowed, churn, retention, value_of)
    assert out["nothing"][0].tolist() == [0, 0, 0, 0]
    assert all(allowed[i, a - 1] for i, a in enumerate(out["random"][0]) if a)
    assert out["best_single"][0].tolist() == [1, 1, 0, 1]
    # 25% treated by the learned policy -> the top 25% by churn get "b" (most retention)
    assert out["churn_targeting"][0].tolist() == [2, 0, 0, 0]


def test_the_verdict_follows_the_interval() -> None:
    assert verdict(3.0, 2.0, 500).startswith("the learned policy earns more than doing nothing")
    assert "loses money" in verdict(-3.0, 2.0, 500) and "do not deploy" in verdict(-3.0, 2.0, 500)
    unsure = verdict(-1.0, 10.8, 3101)
    assert "not distinguishable from doing nothing on 3,101 held-out exposures" in unsure
    assert "-11.80 to +9.80" in unsure
    assert verdict(float("nan"), float("nan"), 0).startswith("no estimate")


def test_baselines_when_nobody_is_eligible_for_anything() -> None:
    allowed = np.zeros((4, 2), dtype=bool)
    churn, retention = np.array([0.9, 0.1, 0.2, 0.3]), np.ones((4, 2))
    out = baseline_policies(["a", "b"], np.zeros(4), allowed, churn, retention, lambda a: 0.0)
    for name in ("nothing", "random", "best_single"):
        assert out[name][0].tolist() == [0, 0, 0, 0], name
    assert "churn_targeting" not in out  # no action to target anyone with


def test_a_bundle_without_uplift_is_refused(small_world: Path, bundle: Bundle) -> None:
    bare = Bundle(bundle.builder, bundle.config, bundle.models, bundle.metadata)
    with (
        open_dataset(small_world).connect() as con,
        pytest.raises(NextbestError, match="no uplift models"),
    ):
        evaluate_bundle(con, bare)


def test_truth_rows_align_with_the_exposures(small_world: Path) -> None:
    from training.synth.oracle import load_exposure_truth

    exposures = pd.read_parquet(small_world / "exposures.parquet").head(50)
    keys = exposures.rename(columns={"ts": "as_of"})
    truth = load_exposure_truth(default_truth_dir(small_world), keys)
    assert len(truth) == 50 and truth["customer_id"].tolist() == keys["customer_id"].tolist()


def one_offer_set(root: Path, n: int = 20_000, seed: int = 0) -> Path:
    """A randomized test of one offer with a binary outcome and no scores: the offer lifts visits
    by 10 points where x > 0 and does nothing elsewhere."""
    rng = np.random.default_rng(seed)
    root.mkdir()
    x = rng.normal(size=n)
    ids = [f"V{i:05d}" for i in range(n)]
    treated = rng.random(n) < 0.5
    visit = rng.random(n) < 0.2 + 0.10 * (treated & (x > 0))
    day = pd.Timestamp("2026-03-01")
    pd.DataFrame({"customer_id": ids, "x": x}).to_csv(root / "customers.csv", index=False)
    pd.DataFrame(
        {
            "customer_id": np.array(ids)[visit],
            "ts": str(day + pd.Timedelta(days=3)),
            "channel": "web",
            "event_type": "visit",
            "value": np.nan,
        }
    ).to_csv(root / "events.csv", index=False)
    pd.DataFrame(
        {"customer_id": ids, "ts": str(day), "action_id": np.where(treated, "offer", "control"),
         "propensity": 0.5}
    ).to_csv(root / "exposures.csv", index=False)  # fmt: skip
    (root / "config.yaml").write_text(
        "snapshots: {as_of: [2026-03-01], observed_until: 2026-04-01}\n"
        "outcomes:\n  visit: {kind: any, event_types: [visit], horizon_days: 14}\n"
        "objective: {value_outcome: visit}\n"
        "actions: actions.yaml\n"
    )
    (root / "actions.yaml").write_text("actions:\n  - {id: offer, name: Offer, cost: 0.05}\n")
    return root


@pytest.mark.slow
def test_one_action_and_a_binary_outcome_are_enough(tmp_path: Path) -> None:
    from training.config import load_config
    from training.features.definition import FeatureBuilder
    from training.uplift.fit import train_uplift

    data = one_offer_set(tmp_path / "one_offer")
    config = load_config(data / "config.yaml")
    with open_dataset(data).connect() as con:
        builder = FeatureBuilder(config.features).fit(con)
        result = train_uplift(con, builder, config)
        assert result is not None and list(result.learners) == ["visit"]
        bundle = Bundle(builder, config, {}, uplift=result.learners)
        evaluation = evaluate_bundle(con, bundle)
    table = evaluation.policies.set_index("policy")
    assert set(table.index) == {"learned", "nothing", "random", "best_single"}  # no churn score
    # 10 points for half the customers, for 5: targeting pays, treating everyone breaks even
    assert table.loc["learned", "dr_value"] > table.loc["random", "dr_value"]
    assert 0.3 < table.loc["learned", "treated_share"] < 0.8
    assert evaluation.qini.loc[0, "qini"] > 0.02
