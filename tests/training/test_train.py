"""`nextbest train` end to end on a real (temporary) MLflow store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.train import train


@pytest.fixture()
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # artifacts land under tmp_path/mlruns
    return uri


@pytest.mark.slow
def test_trains_every_score_and_registers_one_bundle(small_world: Path, mlflow_store: str) -> None:
    from training.bundle import load_bundle

    result = train(small_world)
    assert result.version == "1"
    assert set(result.metrics) == {"churn", "satisfaction", "value"} and not result.skipped
    bundle = load_bundle("1")
    assert set(bundle.models) == {"churn", "satisfaction", "value"}
    assert [d.isoformat() for d in bundle.metadata.as_of] == result.as_of


def static_only_churn_set(root: Path, n: int = 3000, seed: int = 0) -> Path:
    """A differently shaped data set: static attributes only, churn as explicit events."""
    rng = np.random.default_rng(seed)
    root.mkdir()
    tenure = rng.integers(0, 72, n)
    monthly = rng.random(n) < 0.5
    risk = 1 / (1 + np.exp(-(-2.0 + 1.5 * monthly - 0.04 * tenure)))
    churned = rng.random(n) < risk
    ids = [f"T{i:05d}" for i in range(n)]
    pd.DataFrame(
        {"customer_id": ids, "tenure": tenure, "contract": np.where(monthly, "monthly", "annual")}
    ).to_csv(root / "customers.csv", index=False)
    days = rng.integers(1, 89, n)
    pd.DataFrame(
        {
            "customer_id": np.array(ids)[churned],
            "ts": (pd.Timestamp("2026-01-01") + pd.to_timedelta(days[churned], "D")).astype(str),
            "channel": "account",
            "event_type": "churn",
            "value": np.nan,
        }
    ).to_csv(root / "events.csv", index=False)
    (root / "config.yaml").write_text(
        "snapshots: {as_of: [2026-01-01], observed_until: 2026-04-01}\n"
        "outcomes:\n"
        "  churn: {role: churn, kind: any, event_types: [churn], horizon_days: 90}\n"
        "  satisfaction: {role: satisfaction, kind: last, event_types: [nps], horizon_days: 90}\n"
        "actions: actions.yaml\n"
    )
    (root / "actions.yaml").write_text("actions: []\n")
    return root


@pytest.mark.slow
def test_static_only_data_trains_churn_alone_and_says_why(
    tmp_path: Path, mlflow_store: str
) -> None:
    data = static_only_churn_set(tmp_path / "telco_like")
    result = train(data, data / "config.yaml")
    assert set(result.metrics) == {"churn"}
    assert "no nps events" in result.skipped["satisfaction"]
    assert "value" in result.skipped
    assert result.metrics["churn"]["roc_auc"] > 0.7
