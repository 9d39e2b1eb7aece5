"""The simulator: deterministic, valid, causal bookkeeping right, and its ground truth honest."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from training.data.contract import validate_dataset
from training.synth import dynamics as dyn
from training.synth.actions import ACTION_IDS, ARMS
from training.synth.generate import synthesize
from training.synth.world import WorldConfig

TINY = replace(WorldConfig(), chunk_size=500, truth_reps=4, weeks=40, truth_weeks=(30, 40))


def test_same_seed_same_data_other_seed_other_data(tmp_path: Path) -> None:
    cfg = replace(TINY, campaigns=TINY.campaigns[:1])
    a = synthesize(800, tmp_path / "a", seed=3, cfg=cfg)
    b = synthesize(800, tmp_path / "b", seed=3, cfg=cfg)
    c = synthesize(800, tmp_path / "c", seed=4, cfg=cfg)
    assert a.events == b.events
    for name in ("customers", "events", "exposures"):
        left = pq.read_table(tmp_path / "a" / f"{name}.parquet")
        assert left.equals(pq.read_table(tmp_path / "b" / f"{name}.parquet"))
    assert not pq.read_table(tmp_path / "a/events.parquet").equals(
        pq.read_table(tmp_path / "c/events.parquet")
    )
    assert c.events != a.events


def test_truth_is_written_apart_from_the_data(small_world: Path) -> None:
    truth = small_world.with_name(small_world.name + "_truth")
    assert sorted(p.name for p in small_world.iterdir()) == [
        "customers.parquet",
        "events.parquet",
        "exposures.parquet",
    ]
    assert {"customers_truth.parquet", "exposures_truth.parquet", "manifest.json"} <= {
        p.name for p in truth.iterdir()
    }
    columns = pq.read_schema(truth / "customers_truth.parquet").names
    for arm in ARMS:
        assert {f"churn_{arm}", f"value_{arm}", f"satisfaction_{arm}"} <= set(columns)
    assert {"value_12m", "value_24m"} <= set(columns)
    exposed = pq.read_schema(truth / "exposures_truth.parquet").names
    assert "value_12m_control" in exposed
    latent = {"satisfaction_latent", "price_sensitivity", "engagement", "service_need"}
    assert not latent & set(pq.read_schema(small_world / "customers.parquet").names)


def test_output_passes_the_contract(small_world: Path) -> None:
    summary = validate_dataset(small_world, known_actions=ACTION_IDS)
    assert summary.rows["customers"] == 6000
    assert {"visit", "purchase", "call", "chat", "complaint", "nps", "csat", "churn"} <= set(
        summary.event_types
    )
    assert summary.rows["events"] > 6000 * 30


def test_churned_customers_fall_silent(small_world: Path) -> None:
    con = duckdb.connect()
    ev = f"read_parquet('{small_world}/events.parquet')"
    churns = con.sql(
        f"SELECT customer_id, count(*) n, min(ts) t FROM {ev} WHERE event_type='churn' GROUP BY 1"
    ).df()
    assert len(churns) > 300 and churns.n.max() == 1
    first = f"SELECT customer_id, min(ts) t FROM {ev} WHERE event_type = 'churn' GROUP BY 1"
    (after,) = con.execute(
        f"SELECT count(*) FROM {ev} e JOIN ({first}) c USING (customer_id) WHERE e.ts > c.t"
    ).fetchone() or (None,)
    assert after == 0


def test_campaigns_mix_randomized_and_targeted_propensities(small_world: Path) -> None:
    x = pd.read_parquet(small_world / "exposures.parquet")
    assert set(x.action_id) == set(ARMS)
    assert x.propensity.between(0, 1, inclusive="right").all()
    randomized = x[x.campaign.str.endswith("randomized")]
    assert np.allclose(randomized.propensity, 1 / len(ARMS), atol=1e-6)
    targeted = x[x.campaign.str.endswith("targeted")]
    assert targeted.propensity.std() > 0.05  # genuinely non-uniform
    # targeting follows observable history: apology credits go to recent complainers
    assert targeted.groupby("action_id").propensity.mean()["control"] > 1 / len(ARMS)


def _arm_value(frame: pd.DataFrame, outcome: str) -> np.ndarray:
    cols = frame[[f"{outcome}_{arm}" for arm in ARMS]].to_numpy()
    return cols[np.arange(len(frame)), frame.action_id.map(ARMS.index).to_numpy()]


def test_ground_truth_matches_what_happened(small_world: Path) -> None:
    """Averaged over exposures, the truth of the arm received equals the realised outcome."""
    truth = pd.read_parquet(small_world.with_name("demo_truth") / "exposures_truth.parquet")
    con = duckdb.connect()
    con.register("x", truth[["customer_id", "ts"]])
    real = con.sql(
        f"""SELECT x.customer_id, x.ts,
              count(*) FILTER (WHERE e.event_type = 'churn') AS churn,
              coalesce(sum(e.value) FILTER (WHERE e.event_type = 'purchase'), 0) AS value,
              arg_max(e.value, e.ts) FILTER (WHERE e.event_type = 'nps') AS satisfaction
            FROM x LEFT JOIN read_parquet('{small_world}/events.parquet') e
              ON e.customer_id = x.customer_id AND e.ts >= x.ts AND e.ts < x.ts + INTERVAL 90 DAY
            GROUP BY ALL"""
    ).df()
    both = truth.merge(real, on=["customer_id", "ts"])
    assert len(both) == len(truth) > 2000
    for outcome, tol in (("churn", 4), ("value", 4), ("satisfaction", 4)):
        expected = _arm_value(both, outcome)
        diff = both[outcome].to_numpy() - expected
        diff = diff[~np.isnan(diff)]  # satisfaction: only where the window holds an answer
        se = diff.std() / np.sqrt(len(diff))
        assert abs(diff.mean()) < tol * se, (outcome, diff.mean(), se)


@pytest.fixture(scope="module")
def truth_today(small_world: Path) -> pd.DataFrame:
    t = pd.read_parquet(small_world.with_name("demo_truth") / "customers_truth.parquet")
    return t[t.as_of == t.as_of.max()]


def test_world_has_sleeping_dogs_and_costly_actions(truth_today: pd.DataFrame) -> None:
    t = truth_today
    harm = t.churn_retention_discount - t.churn_control
    assert (harm > 0.005).mean() > 0.05  # a segment the discount pushes out of the door
    assert (harm < -0.01).mean() > 0.05  # and one it keeps
    loyalty_gain = t.value_loyalty_upgrade - t.value_control
    assert (loyalty_gain < 25.0).mean() > 0.6  # not worth its cost for most customers


def test_several_actions_are_best_somewhere_and_none_often(truth_today: pd.DataFrame) -> None:
    t = truth_today
    costs = dict(zip(ACTION_IDS, (15.0, 8.0, 4.0, 25.0, 12.0), strict=True))
    net = pd.DataFrame(
        {
            a: (t[f"value_{a}"] - t.value_control)
            + (t.churn_control - t[f"churn_{a}"]) * t.value_control
            - costs[a]
            for a in ACTION_IDS
        }
    )
    best = net.idxmax(axis=1).where(net.max(axis=1) > 0, "none")
    shares = best.value_counts(normalize=True)
    assert 0.3 < shares["none"] < 0.8
    assert (shares.drop("none") > 0.01).sum() >= 3


def test_expected_nps_answer_is_the_mean_of_real_answers() -> None:
    """The truth's satisfaction uses the rounded, 0-10 answer's mean, not its centre: near the top
    of the scale the two differ by more than the effects being measured."""
    rng = np.random.default_rng(0)
    sat = np.repeat(np.array([-3.0, -1.0, 0.0, 1.0, 1.4, 2.0]), 200_000)
    answers = dyn.nps_answer(sat, rng.normal(size=sat.size)).reshape(6, -1)
    expected = dyn.expected_nps_answer(sat).reshape(6, -1)[:, 0]
    np.testing.assert_allclose(answers.mean(axis=1), expected, atol=0.01)
    centre = dyn.nps_mean(sat).reshape(6, -1)[:, 0]
    assert centre[4] - expected[4] > 0.2  # 9.52 centre, 9.26 mean: the old truth's error


def test_inverse_cdf_poisson_has_the_right_law() -> None:
    from training.synth.truth import poisson_from_uniform

    rng = np.random.default_rng(0)
    for lam in (0.05, 0.8, 3.0):
        k = poisson_from_uniform(rng.random(200_000), np.full(200_000, lam))
        assert abs(k.mean() - lam) < 0.02 and abs(k.var() - lam) < 0.05


@pytest.mark.parametrize(
    ("design", "arms", "propensity"),
    [("single", set(ARMS), 1 / len(ARMS)), ("offer", {"control", ACTION_IDS[0]}, 0.5)],
)
def test_designs_run_one_randomized_campaign_on_one_date(
    tmp_path: Path, design: str, arms: set[str], propensity: float
) -> None:
    from training.synth.world import design_config

    campaign = replace(design_config(design).campaigns[0], week=20)  # inside TINY's 40 weeks
    synthesize(1500, tmp_path / design, seed=2, cfg=replace(TINY, campaigns=(campaign,)))
    exposures = pd.read_parquet(tmp_path / design / "exposures.parquet")
    assert exposures["ts"].nunique() == 1 and set(exposures["action_id"]) == arms
    assert np.allclose(exposures["propensity"], propensity, atol=1e-6)
    assert len(exposures) > 0.4 * 1500  # 60% of the customers active and old enough


def test_an_unknown_design_is_refused() -> None:
    from training.synth.world import design_config

    with pytest.raises(ValueError, match="design must be one of demo, waves, single, offer"):
        design_config("weekly")


def test_the_demo_design_reaches_every_active_customer_where_waves_reach_part(
    tmp_path: Path,
) -> None:
    """The same calendar; the demo's waves expose every customer active then, so its held-out
    exposures are about 1 / 0.3 times as many at the first wave."""
    from training.synth.world import design_config

    counts = {}
    for design in ("demo", "waves"):
        first = design_config(design).campaigns[0]
        assert first.week == 26 and not first.targeted
        cfg = replace(TINY, campaigns=(first,), truth_weeks=())
        synthesize(1500, tmp_path / design, seed=2, cfg=cfg)
        counts[design] = len(pd.read_parquet(tmp_path / design / "exposures.parquet"))
    assert counts["demo"] > 0.4 * 1500  # everyone active and old enough at week 26
    assert 2.5 < counts["demo"] / counts["waves"] < 4.5


def test_a_harmful_action_changes_its_own_truth_and_nothing_else(tmp_path: Path) -> None:
    """WorldConfig.harm adds churn to one action only: on the same seed, each exposure's truth for
    every other arm is unchanged, the harmful arm's churn rises several times over and its
    90-day value falls."""
    cfg = replace(TINY, campaigns=TINY.campaigns[:1], truth_weeks=())
    synthesize(800, tmp_path / "plain", seed=3, cfg=cfg)
    synthesize(800, tmp_path / "harm", seed=3, cfg=replace(cfg, harm={"loyalty_upgrade": 3.0}))
    plain, harm = (
        pd.read_parquet(tmp_path / f"{name}_truth" / "exposures_truth.parquet")
        for name in ("plain", "harm")
    )
    assert len(plain) > 100
    for arm in ARMS:
        for outcome in ("churn", "value", "satisfaction"):
            column = f"{outcome}_{arm}"
            if arm != "loyalty_upgrade":
                pd.testing.assert_series_equal(plain[column], harm[column])
    assert harm.churn_loyalty_upgrade.mean() > 4 * plain.churn_loyalty_upgrade.mean()
    assert harm.value_loyalty_upgrade.mean() < 0.8 * plain.value_loyalty_upgrade.mean()
    manifest = json.loads((tmp_path / "harm_truth" / "manifest.json").read_text())
    assert manifest["world"]["harm"] == {"loyalty_upgrade": 3.0}


@pytest.mark.parametrize(
    ("harm", "message"),
    [
        ({"loyalty_upgrade": 0.0}, "positive, finite churn log-odds"),
        ({"loyalty_upgrade": float("nan")}, "positive, finite churn log-odds"),
        ({"free_lunch": 1.0}, "unknown actions \\['free_lunch'\\]"),
    ],
)
def test_a_bad_harm_is_refused_before_anything_is_written(
    tmp_path: Path, harm: dict[str, float], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        synthesize(100, tmp_path / "d", seed=1, cfg=replace(TINY, harm=harm))
    assert not (tmp_path / "d").exists()


def test_lifetime_truth_is_what_the_next_twelve_months_bring(tmp_path: Path) -> None:
    """value_12m (the truth an LTV model is scored on) predicts the revenue the simulation then
    realises over the next 12 months: unbiased in total and tracking it customer by customer."""
    cfg = replace(WorldConfig(), chunk_size=1500, truth_reps=8, weeks=76, truth_weeks=(20,),
                  campaigns=())  # fmt: skip
    synthesize(1500, tmp_path / "d", seed=5, cfg=cfg)
    truth = pd.read_parquet(tmp_path / "d_truth" / "customers_truth.parquet")
    assert len(truth) > 1000
    assert (truth.value_24m > truth.value_12m).all() and (
        truth.value_12m > truth.value_control
    ).all()
    start = pd.Timestamp(cfg.week_start(20))
    events = pd.read_parquet(tmp_path / "d" / "events.parquet")
    window = (events.ts >= start) & (events.ts < start + pd.Timedelta(days=365.25))
    bought = events[window & (events.event_type == "purchase")]
    realised = bought.groupby("customer_id").value.sum().reindex(truth.customer_id).fillna(0.0)
    assert realised.mean() == pytest.approx(truth.value_12m.mean(), rel=0.05)
    assert np.corrcoef(realised, truth.value_12m)[0, 1] > 0.7
