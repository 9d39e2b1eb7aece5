"""Impact from production: on simulated production months with a global control group, the 95%
interval of the decisions' incremental value covers the simulator's truth in most draws; the
command reads a real decision log, and the inputs it cannot judge get one clear line."""

from __future__ import annotations

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
from training.evaluation.impact import incremental, take_rates
from training.pipelines.impact import impact
from training.policy.control import control_mask
from training.synth import live
from training.synth.actions import ARMS

DECIDE_WEEK, CUSTOMERS = 30, 3000


def production_month(out: Path, seed: int) -> tuple[pd.DataFrame, float]:
    """A month of decisions by a targeting policy with the configured global control group,
    their outcomes 13 weeks on, written as a data set; (decisions, true incremental value)."""
    decisioning = load_config().decisioning
    month = live.production_month(
        out, CUSTOMERS, seed,
        lambda ids: control_mask(ids, decisioning.control_share, decisioning.control_salt),
        decisioning.control_share, DECIDE_WEEK, channels=("app", "email"), model_version="3",
    )  # fmt: skip
    return month.exposures, month.truth


@pytest.mark.slow
def test_the_interval_covers_the_true_incremental_value(tmp_path: Path) -> None:
    covered, errors = 0, []
    draws = 8
    for seed in range(draws):
        _, truth = production_month(tmp_path / f"m{seed}", seed)
        result = impact(tmp_path / f"m{seed}", seed=seed)
        overall = result.tables["overall"].iloc[0]
        covered += abs(overall["incremental_value"] - truth) <= overall["ci"]
        errors.append((overall["incremental_value"] - truth) / overall["ci"])
    assert covered >= draws - 2, errors
    assert abs(np.mean(errors)) < 0.5, errors  # no bias beyond noise
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
    decisions, _ = production_month(tmp_path / "month", 0)
    log = DecisionLog(tmp_path / "decision_log.sqlite")
    start = datetime(2025, 6, 2, tzinfo=UTC)
    for i, row in enumerate(decisions.to_dict("records")):
        log.record(DecisionRecord(
            f"d{i}", pd.Timestamp(row["ts"]).tz_localize(UTC).to_pydatetime(), row["customer_id"],
            row["channel"], "3", row["action_id"], float(row["propensity"]),
            bool(row["action_id"] == "control" and row["propensity"] > 0.5), False, False,
            () if row["action_id"] == "control" else (row["action_id"],), {},
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
    take = pd.read_csv(out / "take_rates.csv")
    assert take["accepted"].sum() > 0 and take["declined"].sum() > 0
    late = runner.invoke(app, ["impact", "--data", str(tmp_path / "month"), "--since", "2030-01-01",
                               "--out", str(tmp_path / "none")])  # fmt: skip
    assert late.exit_code == 2 and "no logged decisions since 2030-01-01" in late.stderr
