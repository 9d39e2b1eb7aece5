"""`nextbest train` end to end on a real (temporary) MLflow store."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.pipelines.train import train


@pytest.fixture()
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tmp_path)  # artifacts land under tmp_path/mlruns
    return uri


@pytest.mark.slow
def test_trains_every_score_and_registers_one_bundle(small_world: Path, mlflow_store: str) -> None:
    from training.registry.mlflow_models import load_bundle

    result = train(small_world)
    assert result.version == "1"
    assert set(result.metrics) == {"churn", "satisfaction", "value"} and not result.skipped
    bundle = load_bundle("1")
    assert set(bundle.models) == {"churn", "satisfaction", "value"}
    assert [d.isoformat() for d in bundle.metadata.as_of] == result.as_of
    # the simulator's texts give a text model (the final one, not the cross-fitted) and features
    assert result.text.startswith("text: 10 topics"), result.text
    assert type(bundle.builder.text_model_).__name__ == "TextModel"
    assert "text_score_mean_90d" in bundle.builder.feature_names_
    assert len(bundle.builder.topic_terms_) == 10


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


def randomized_conversion_test(root: Path, n: int = 4000, seed: int = 0) -> Path:
    """One action against control at propensity 0.5, one conversion outcome and no role at all:
    the action lifts conversion by 15 points in segment A and does nothing in segment B."""
    rng = np.random.default_rng(seed)
    root.mkdir()
    ids = np.array([f"U{i:05d}" for i in range(n)])
    segment = np.where(rng.random(n) < 0.5, "A", "B")
    pd.DataFrame({"customer_id": ids, "segment": segment, "age": rng.integers(18, 80, n)}).to_csv(
        root / "customers.csv", index=False
    )
    treated = rng.random(n) < 0.5
    sent = pd.Timestamp("2026-01-01 09:00")
    pd.DataFrame(
        {"customer_id": ids, "ts": str(sent), "action_id": np.where(treated, "promo", "control"),
         "propensity": 0.5}
    ).to_csv(root / "exposures.csv", index=False)  # fmt: skip
    converts = rng.random(n) < 0.10 + 0.15 * (treated & (segment == "A"))
    days = pd.to_timedelta(rng.integers(1, 25, n), "D")
    visits = pd.DataFrame({"customer_id": ids, "ts": sent - pd.Timedelta(days=3), "type": "visit"})
    buys = pd.DataFrame(
        {"customer_id": ids[converts], "ts": (sent + days)[converts], "type": "purchase"}
    )
    events = pd.concat([visits, buys]).rename(columns={"type": "event_type"})
    events.assign(channel="web", value=np.nan, ts=events["ts"].astype(str)).to_csv(
        root / "events.csv", index=False
    )
    (root / "config.yaml").write_text(
        "snapshots: {as_of: [2026-01-01], observed_until: 2026-02-15}\n"
        "outcomes:\n"
        "  converted: {kind: any, event_types: [purchase], horizon_days: 30}\n"
        "objective: {outcome_values: {converted: 60.0}}\n"
        "actions: actions.yaml\n"
    )
    (root / "actions.yaml").write_text("actions:\n  - {id: promo, name: Promo, cost: 2.0}\n")
    return root


@pytest.mark.slow
def test_a_randomized_test_without_roles_trains_uplift_alone_and_targets_the_segment(
    tmp_path: Path, mlflow_store: str
) -> None:
    from serving.batch.job import score

    data = randomized_conversion_test(tmp_path / "ab")
    result = train(data, data / "config.yaml")
    assert result.metrics == {} and set(result.skipped) == {"churn", "satisfaction", "value"}
    assert set(result.uplift) == {"converted"}
    score(data, pd.Timestamp("2026-02-15").date(), tmp_path / "out", result.version)
    actions = pd.read_parquet(tmp_path / "out" / "actions.parquet")
    segment = pd.read_csv(data / "customers.csv").set_index("customer_id")["segment"]
    actions["segment"] = actions["customer_id"].map(segment)
    first = actions[actions["rank"] == 1].groupby("segment").size()
    chosen = first.reindex(["A", "B"], fill_value=0) / segment.value_counts()
    # worth 0.15 x 60 = 9 against a cost of 2 in A, nothing in B
    assert chosen["A"] > 0.6 and chosen["B"] < 0.2, chosen
    means = actions.groupby("segment")["uplift_converted"].mean()
    assert means["A"] - means["B"] > 0.05, means


@pytest.mark.slow
@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("tenur > 3", "eligibility reads unknown name 'tenur' (did you mean 'tenure'?)"),
        ("ltv > 100", "eligibility reads 'ltv', but no outcome has the value role"),
        (
            "satisfaction < 5",
            "eligibility reads 'satisfaction', but the satisfaction score was not trained (no nps",
        ),
    ],
)
def test_a_rule_that_can_never_be_read_stops_training(
    tmp_path: Path, mlflow_store: str, rule: str, message: str
) -> None:
    """As `nextbest validate` would: no bundle whose action can never be eligible is registered."""
    import mlflow

    from training.errors import ConfigError

    data = static_only_churn_set(tmp_path / "telco_like", n=600)
    (data / "actions.yaml").write_text(
        f'actions:\n  - {{id: call, name: Call, cost: 1.0, eligibility: "{rule}"}}\n'
    )
    with pytest.raises(ConfigError, match=re.escape(f"actions.yaml: action 'call': {message}")):
        train(data, data / "config.yaml")
    assert mlflow.MlflowClient().search_registered_models() == []


def censored_conversion_test(root: Path) -> Path:
    """The randomized test whose config leaves the end of observation to be inferred: the last
    event comes 24 days after the campaign, so every 30-day conversion window is censored."""
    data = randomized_conversion_test(root, n=1500)
    config = (data / "config.yaml").read_text()
    (data / "config.yaml").write_text(config.replace(", observed_until: 2026-02-15", ""))
    return data


@pytest.mark.slow
def test_censored_labels_stop_training_with_the_cause_and_the_fix(
    tmp_path: Path, mlflow_store: str
) -> None:
    import mlflow

    from training.errors import NextbestError

    data = censored_conversion_test(tmp_path / "ab")
    last = pd.read_csv(data / "events.csv", parse_dates=["ts"])["ts"].max()
    until = (last.normalize() + pd.Timedelta(days=1)).strftime("%Y-%m-%d")
    with pytest.raises(NextbestError) as caught:
        train(data, data / "config.yaml")
    message = str(caught.value)
    assert "no action can be valued in money" in message and "--scores-only" in message
    assert f"end of observation {until} (inferred" in message
    assert "needs data until 2026-01-31" in message and "snapshots.observed_until" in message
    assert mlflow.MlflowClient().search_registered_models() == []


@pytest.mark.slow
def test_a_scores_only_bundle_is_registered_when_asked_for(
    tmp_path: Path, mlflow_store: str
) -> None:
    from training.registry.mlflow_models import load_bundle

    data = censored_conversion_test(tmp_path / "ab")
    result = train(data, data / "config.yaml", scores_only=True)
    assert "snapshots.observed_until" in result.uplift_skipped["converted"]
    assert not load_bundle(result.version).uplift
