"""Impact from production: on simulated production months with a global control group, the 95%
interval of the decisions' incremental value covers the simulator's truth in most draws; the
command reads a real decision log, and the inputs it cannot judge get one clear line."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.history.log import ACCEPTED, DECLINED, DecisionLog, DecisionRecord
from training.cli import app
from training.config import load_config
from training.errors import NextbestError
from training.evaluation.impact import (
    greedy_logged,
    greedy_table,
    impact_tables,
    incremental,
    take_rates,
)
from training.pipelines.impact import impact
from training.policy.control import control_mask
from training.synth import live
from training.synth.actions import ARMS

DECIDE_WEEK, CUSTOMERS = 30, 3000


def production_month(out: Path, seed: int) -> live.ProductionMonth:
    """A month of decisions by a targeting policy with the configured global control group,
    their outcomes 13 weeks on, written as a data set: the decisions (with their greedy action)
    and the true incremental value, overall and per greedy action."""
    decisioning = load_config().decisioning
    return live.production_month(
        out, CUSTOMERS, seed,
        lambda ids: control_mask(ids, decisioning.control_share, decisioning.control_salt),
        decisioning.control_share, DECIDE_WEEK, channels=("app", "email"), model_version="3",
    )  # fmt: skip


@pytest.mark.slow
def test_the_interval_covers_the_true_incremental_value(tmp_path: Path) -> None:
    covered, errors = 0, []
    greedy_covered, greedy_errors = 0, []
    draws = 8
    for seed in range(draws):
        month = production_month(tmp_path / f"m{seed}", seed)
        result = impact(tmp_path / f"m{seed}", seed=seed)
        overall = result.tables["overall"].iloc[0]
        covered += abs(overall["incremental_value"] - month.truth) <= overall["ci"]
        errors.append((overall["incremental_value"] - month.truth) / overall["ci"])
        # per greedy action: the policy's effect on the customers it wanted that action for,
        # judged where the control group holds enough of them (the two main greedy actions)
        greedy = result.tables["greedy"].set_index("greedy_action")
        assert result.greedy_unlogged == 0 and greedy["rows"].sum() == result.rows
        main = greedy[greedy["control"] >= 30]
        assert set(main.index) == {"control", "retention_discount"}, greedy
        for action, row in main.iterrows():
            truth = month.greedy_truth[str(action)]
            greedy_covered += abs(row["incremental_value"] - truth) <= row["ci"]
            greedy_errors.append((row["incremental_value"] - truth) / row["ci"])
    assert covered >= draws - 2, errors
    assert abs(np.mean(errors)) < 0.5, errors  # no bias beyond noise
    assert greedy_covered >= len(greedy_errors) - 3, greedy_errors
    assert abs(np.mean(greedy_errors)) < 0.5, greedy_errors
    # every slice the page shows is there, with intervals
    assert set(result.tables) >= {"overall", "actions", "weekly", "channel", "model_version",
                                  "segments"}  # fmt: skip
    assert set(result.tables["actions"]["action_id"]) == set(ARMS[1:])
    assert set(result.tables["channel"]["channel"]) == {"app", "email"}
    segments = result.tables["segments"]
    assert {"plan", "contract", "region"} <= set(segments["column"])
    assert (segments.dropna()["ci"] > 0).all()


def test_hajek_difference_and_its_bootstrap_interval() -> None:
    rng = np.random.default_rng(1)
    n = 4000
    control = rng.random(n) < 0.1
    action = np.where(control | (rng.random(n) < 0.3), "control", "offer")
    propensity = np.where(action == "control", 0.1 + 0.9 * 0.3, 0.9 * 0.7)
    value = rng.normal(10, 3, n) + 2.0 * (action == "offer")
    est = incremental(value, action, propensity, control)
    assert est is not None and est.decisions == (~control).sum()
    nothing = value[action == "control"].mean()  # equal propensities: the Hajek mean is the mean
    assert est.value == pytest.approx(value[~control].mean() - nothing)
    assert 0.1 < est.ci < 0.5 and abs(est.value - 2.0 * 0.7) < est.ci * 1.5
    offer = incremental(value, action, propensity, control, arm="offer")
    assert offer is not None and abs(offer.value - 2.0) < offer.ci
    assert incremental(value[:10], action[:10], propensity[:10], control[:10]) is None
    with pytest.raises(NextbestError, match="propensity"):
        incremental(value, action, np.zeros(n), control)


def greedy_world(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray, dict[str, float]]:
    """Decisions of an epsilon-greedy policy with a global control group on a world where the
    policy wants `gift` for customers it helps (+12) who spend more anyway, and `fee` for others
    it harms (-10 for anyone); (decision rows, their money, the true effect per greedy action of
    the policy on the customers it wanted that action for)."""
    rng = np.random.default_rng(seed)
    share, epsilon, arms = 0.1, 0.2, np.array(["gift", "fee", "control"])
    greedy = rng.choice(arms, n, p=[0.3, 0.3, 0.4])
    control = rng.random(n) < share
    drawn = np.where(rng.random(n) < epsilon, rng.choice(arms, n), greedy)
    action = np.where(control, "control", drawn)
    policy = (1 - epsilon) * (action == greedy) + epsilon / len(arms)
    propensity = (1 - share) * policy + share * (action == "control")
    helps = greedy == "gift"
    effect = {"gift": np.where(helps, 12.0, 0.0), "fee": np.full(n, -10.0), "control": np.zeros(n)}
    value = rng.normal(50.0 + 30.0 * helps, 20.0)
    for arm, gain in effect.items():
        value += (action == arm) * gain
    truth = {}
    for g in arms:  # the policy's expected effect over nothing for the customers it wants g for
        mine = greedy == g
        probs = {a: (1 - epsilon) * (a == g) + epsilon / len(arms) for a in arms}
        truth[str(g)] = float(np.mean(sum(p * effect[a][mine] for a, p in probs.items())))
    frame = pd.DataFrame({"action_id": action, "propensity": propensity, "control_group": control,
                          "week": "2026-01-05", "greedy_action": greedy})  # fmt: skip
    return frame, value, truth


def test_the_greedy_table_measures_the_policy_on_the_customers_it_targeted() -> None:
    covered, draws, gift_everyone = 0, 5, []
    for seed in range(draws):
        frame, value, truth = greedy_world(15_000, seed)
        assert truth["gift"] > 8 and truth["fee"] < -8  # a clearly good and a clearly harmful one
        frame.loc[frame.index[::10], "greedy_action"] = None  # older rows: not logged
        greedy = greedy_table(frame, value, seed).set_index("greedy_action")
        assert set(greedy.index) == {"gift", "fee", "control"}
        assert greedy["rows"].sum() == greedy_logged(frame).sum() == len(frame) - 1500  # left out
        assert (
            greedy.loc["gift", "incremental_value"]
            > 4
            > -4
            > greedy.loc["fee", "incremental_value"]
        )
        for action, row in greedy.iterrows():
            covered += abs(row["incremental_value"] - truth[str(action)]) <= row["ci"]
            assert row["ci"] < 2.5
        gift = incremental(value, frame["action_id"].to_numpy(), frame["propensity"].to_numpy(),
                           frame["control_group"].to_numpy(), "gift", seed)  # fmt: skip
        assert gift is not None
        gift_everyone.append(gift.value)
    assert covered >= 3 * draws - 2
    # "giving gift vs nothing" over everyone it could go to (the actions table) is another
    # question: it helps only the 30% the policy wants it for (12 x 0.3); the greedy table
    # measures the policy where it wants gift
    assert abs(np.mean(gift_everyone) - 3.6) < 0.8, gift_everyone
    # an action no control-group customer was wanted for has no row; without the column, no table
    fee = frame["greedy_action"] == "fee"
    frame.loc[fee, "control_group"] = False
    assert "fee" not in set(greedy_table(frame, value)["greedy_action"])
    assert "greedy" not in impact_tables(frame.drop(columns="greedy_action"), value)
    assert "greedy" in impact_tables(frame, value)


def test_take_rates_per_action_shown() -> None:
    exposures = pd.DataFrame({"action_id": ["a", "a", "b", "control", "a"]})
    feedback = pd.DataFrame(
        {"action_id": ["a", "a", "b"], "outcome": [ACCEPTED, DECLINED, DECLINED]}
    )
    table = take_rates(exposures, feedback).set_index("action_id")
    assert table.loc["a", ["shown", "accepted", "declined"]].tolist() == [3, 1, 1]
    assert table.loc["a", "accept_rate"] == pytest.approx(1 / 3)
    assert table.loc["b", "decline_rate"] == 1.0


@pytest.mark.slow
def test_the_command_reads_a_decision_log(tmp_path: Path, store: Path) -> None:
    decisions = production_month(tmp_path / "month", 0).exposures
    log = DecisionLog(tmp_path / "decision_log.sqlite")
    start = datetime(2025, 6, 2, tzinfo=UTC)
    for i, row in enumerate(decisions.to_dict("records")):
        log.record(DecisionRecord(
            f"d{i}", pd.Timestamp(row["ts"]).tz_localize(UTC).to_pydatetime(), row["customer_id"],
            row["channel"], "3", row["action_id"], float(row["propensity"]),
            bool(row["action_id"] == "control" and row["propensity"] > 0.5), False, False,
            () if row["action_id"] == "control" else (row["action_id"],), {},
            greedy_action=None if i % 10 == 0 else row["greedy_action"],  # some not logged
        ))  # fmt: skip
        log.record(DecisionRecord(  # its shadow twin: logged, never shown, never measured
            f"s{i}", pd.Timestamp(row["ts"]).tz_localize(UTC).to_pydatetime(), row["customer_id"],
            row["channel"], "4", "control", 0.5, False, False, False, (), {},
            arm="challenger", shadow=True,
        ))  # fmt: skip
        if row["action_id"] != "control" and i % 3 == 0:
            log.feedback(f"d{i}", row["action_id"], ACCEPTED if i % 2 else DECLINED,
                         start + timedelta(days=1))  # fmt: skip
    log.close()
    out = tmp_path / "page"
    runner = CliRunner()
    result = runner.invoke(app, ["impact", "--data", str(tmp_path / "month"), "--decision-log",
                                 str(tmp_path / "decision_log.sqlite"), "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "incremental value per decision:" in result.stdout
    assert f"{len(decisions):,} decisions" in result.stdout  # the shadow twins are left out
    page = (out / "impact.html").read_text()
    assert "accept rate" in page and "data:image/png;base64," in page
    unlogged = (len(decisions) + 9) // 10
    assert "per greedy action, the policy vs the control group:" in result.stdout
    assert f"greedy action, left out: {unlogged:,}" in page
    meta = json.loads((out / "impact.json").read_text())
    assert meta["greedy_unlogged"] == unlogged
    greedy = pd.read_csv(out / "greedy.csv")
    assert greedy["rows"].sum() == meta["rows"] - unlogged
    for action in greedy.dropna(subset=["incremental_value"])["greedy_action"]:
        assert f"impact.greedy_action.{action}.ci" in meta["metrics"]
    take = pd.read_csv(out / "take_rates.csv")
    assert take["accepted"].sum() > 0 and take["declined"].sum() > 0
    late = runner.invoke(app, ["impact", "--data", str(tmp_path / "month"), "--since", "2030-01-01",
                               "--out", str(tmp_path / "none")])  # fmt: skip
    assert late.exit_code == 2 and "no logged decisions since 2030-01-01" in late.stderr


def test_the_page_says_why_there_is_no_greedy_table() -> None:
    from training.evaluation.impact import Impact
    from training.evaluation.impact_report import greedy_section

    without = greedy_section(Impact("EUR", 10, 0, "", "value", "hash"))
    assert "do not log the policy&#x27;s greedy action" in without
    table = pd.DataFrame(columns=["greedy_action", "rows", "incremental_value", "ci", "control"])
    empty = greedy_section(Impact("EUR", 10, 0, "", "value", "hash", {"greedy": table}, 10))
    assert "left out: 10" in empty and "Nothing to show" in empty
