"""The closed loop on a small simulated population: round 0 explores and loses money, the first
trained version becomes champion and decides better, every round's decisions are logged with their
propensities, control group, channel and model version, and the impact of each round is measured
beside its truth; the loop's MLflow store is its own."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.pipelines.loop import run_loop


@pytest.mark.slow
def test_two_rounds_learn_and_measure_themselves(tmp_path: Path) -> None:
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID")
    before = {name: os.environ.get(name) for name in names}
    lines: list[str] = []
    result = run_loop(1, tmp_path / "loop", customers=2500, seed=3, say=lines.append)
    assert {name: os.environ.get(name) for name in names} == before
    assert (tmp_path / "loop" / "mlflow.db").is_file()
    explore, learned = result.rounds
    assert explore.model_version == "" and explore.value_share < 0  # random actions lose money
    assert learned.model_version == "1" and "becomes champion" in learned.promotion
    assert learned.value_share > explore.value_share
    assert learned.oracle_value > 0 and learned.true_value <= learned.oracle_value
    assert np.isnan(explore.ceiling_share) and 0 < learned.ceiling_share <= 1  # what features allow
    for estimate, ci, truth in [(learned.impact, learned.impact_ci, learned.impact_truth),
                                result.last_impact]:  # fmt: skip
        assert np.isfinite(estimate) and ci > 0 and np.isfinite(truth)
        assert abs(estimate - truth) <= 2 * ci  # within twice the 95% half-width
    exposures = pd.read_parquet(tmp_path / "loop" / "data" / "exposures.parquet")
    assert set(exposures["model_version"]) == {"explore", "1"}
    assert set(exposures["channel"]) == {"app", "email"}
    control = exposures[exposures["control_group"]]
    assert len(control) > 0 and (control["action_id"] == "control").all()
    assert exposures["propensity"].between(0, 1, inclusive="right").all()
    greedy = exposures.groupby("model_version")["greedy_action"]  # round 0 explores: none
    assert (
        greedy.count()["explore"] == 0
        and greedy.count()["1"] == (exposures["model_version"] == "1").sum()
    )
    learned_rows = exposures[exposures["model_version"] == "1"]
    shown = learned_rows[~learned_rows["control_group"]]
    assert (shown["action_id"] == shown["greedy_action"]).mean() > 0.7  # 1 - epsilon, and more
    assert any("round 1" in line and "of the oracle" in line for line in lines)
