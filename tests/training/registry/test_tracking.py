"""Tracking: where the store is, what a data fingerprint holds, and what a training run records —
against a real (temporary) MLflow SQLite store."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.training.registry.test_bundle import FAST, Trained, train_all
from training.config import Config
from training.data.contract import open_dataset
from training.evaluation.score_metrics import score_figures
from training.registry.tracking import (
    artifact_location,
    configure_tracking,
    data_fingerprint,
    ensure_experiment,
    log_score_run,
    training_run,
)
from training.scores.churn import ChurnModel


@pytest.fixture(scope="module")
def trained(small_world: Path) -> Trained:
    return train_all(small_world)


# ----------------------------------------------------------------------------------- store
def test_uri_from_the_environment(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY")
    uri = configure_tracking()
    assert uri == f"sqlite:///{store}" == mlflow.get_tracking_uri()
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["BENTOML_DO_NOT_TRACK"] == "true"


def test_default_store_is_in_the_working_directory(
    template_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(template_db, tmp_path / "mlflow.db")  # an empty store, already migrated
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "placeholder")  # restored after the test
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(tmp_path)
    try:
        assert configure_tracking() == f"sqlite:///{tmp_path / 'mlflow.db'}"
        experiment_id = ensure_experiment()
        assert ensure_experiment() == experiment_id
        experiment = mlflow.get_experiment(experiment_id)
        assert experiment.name == "nextbest"
        assert experiment.artifact_location == (tmp_path / "mlruns").as_uri()
    finally:
        mlflow.set_tracking_uri(None)


def test_artifact_location_only_for_sqlite_files() -> None:
    assert artifact_location("sqlite:////srv/ml/mlflow.db") == "file:///srv/ml/mlruns"
    assert artifact_location("http://mlflow.internal:5000") is None
    assert artifact_location("postgresql://u@h/db") is None


# ------------------------------------------------------------------------------ fingerprint
def test_fingerprint_counts_rows_and_is_stable(small_world: Path) -> None:
    ds = open_dataset(small_world)
    first = data_fingerprint(ds)
    assert first == data_fingerprint(ds)
    with ds.connect() as con:
        for table in ("customers", "events", "exposures"):
            [(rows,)] = con.execute(f"SELECT count(*) FROM {table}").fetchall()
            assert first["tables"][table]["rows"] == rows
    events = first["tables"]["events"]
    assert events["files"][0]["name"] == "events.parquet"
    assert events["bytes"] == (small_world / "events.parquet").stat().st_size
    assert events["files"][0]["method"] == "content"
    assert len(first["digest"]) == 64


def test_fingerprint_changes_with_the_data(small_world: Path, tmp_path: Path) -> None:
    copy = tmp_path / "data"
    shutil.copytree(small_world, copy)
    before = data_fingerprint(open_dataset(copy))
    customers = pd.read_parquet(copy / "customers.parquet")
    customers.iloc[:-1].to_parquet(copy / "customers.parquet")
    after = data_fingerprint(open_dataset(copy))
    assert after["digest"] != before["digest"]
    assert after["tables"]["customers"]["rows"] == before["tables"]["customers"]["rows"] - 1
    assert after["tables"]["events"] == before["tables"]["events"]


def test_fingerprint_of_csv_and_of_big_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "customers.csv").write_text("customer_id,plan\nA,basic\nB,pro")  # no final newline
    (tmp_path / "events.csv").write_text("customer_id,ts,channel,event_type,value\n")
    small = data_fingerprint(open_dataset(tmp_path))
    assert small["tables"]["customers"]["rows"] == 2
    assert small["tables"]["events"]["rows"] == 0
    assert "exposures" not in small["tables"]

    monkeypatch.setattr("training.registry.tracking.SMALL_FILE_BYTES", 0)  # every file is "big"
    big = data_fingerprint(open_dataset(tmp_path))
    assert big["tables"]["customers"]["files"][0]["method"] == "metadata"
    os.utime(tmp_path / "customers.csv", ns=(1, 1))  # touched: may have changed
    assert data_fingerprint(open_dataset(tmp_path))["digest"] != big["digest"]


# ------------------------------------------------------------------------------------ runs
def test_training_run_records_data_and_scores(trained: Trained, store: Path) -> None:
    model = trained.models["churn"]
    data = trained.sets["churn"]
    metrics = trained.metrics["churn"]
    fingerprint = trained.fingerprint
    ds = open_dataset(trained.data_dir)
    b = trained.builder
    with training_run(ds, b, trained.config, "cfg.yaml", trained.as_of) as training:
        child = log_score_run(model, data, metrics, score_figures(model, data), {"roc_auc": 0.5})
    assert training.fingerprint == fingerprint  # computed by the run
    run = training.run

    client = mlflow.MlflowClient()
    parent = client.get_run(run.info.run_id)
    assert parent.info.run_name.startswith("train ")
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["nextbest.feature_version"] == trained.builder.version
    assert parent.data.tags["nextbest.config_path"] == "cfg.yaml"
    assert parent.data.tags["nextbest.catalog_version"] == trained.config.catalog.version
    assert parent.data.params["as_of"] == ",".join(d.isoformat() for d in trained.as_of)
    config = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/config.json")
    assert Config.model_validate(config) == trained.config
    assert parent.data.tags["nextbest.data_path"] == str(trained.data_dir.resolve())
    assert parent.data.metrics["churn.roc_auc"] == metrics["roc_auc"]
    [dataset_input] = parent.inputs.dataset_inputs
    assert dataset_input.dataset.digest == fingerprint["digest"][:16]
    assert dataset_input.dataset.name == trained.data_dir.name
    input_tags = {t.key: t.value for t in dataset_input.tags}
    assert input_tags["mlflow.data.context"] == "training"
    assert input_tags["rows.events"] == str(fingerprint["tables"]["events"]["rows"])
    logged = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/data_fingerprint.json")
    assert logged == fingerprint

    nested = client.get_run(child)
    assert nested.data.tags["mlflow.parentRunId"] == run.info.run_id
    assert nested.info.run_name == "churn"
    assert nested.data.metrics["roc_auc"] == metrics["roc_auc"]
    assert nested.data.metrics["baseline.roc_auc"] == 0.5
    assert "baseline_roc_auc" in nested.data.metrics  # the model's own baseline
    assert nested.data.params["n_estimators"] == str(FAST["n_estimators"])
    assert nested.data.params["data.n_test"] == str(len(data.y_test))
    figures = {a.path for a in client.list_artifacts(child, "figures")}
    assert figures == {f"figures/{name}.png" for name in score_figures(model, data)}


def test_a_failing_training_run_is_marked_failed(trained: Trained, store: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="boom"),
        trained.run() as training,
    ):
        raise RuntimeError("boom")
    assert mlflow.MlflowClient().get_run(training.run_id).info.status == "FAILED"
    assert mlflow.active_run() is None


def test_score_runs_need_a_parent(trained: Trained, store: Path) -> None:
    model = ChurnModel(**FAST)
    with pytest.raises(RuntimeError, match="active training_run"):
        log_score_run(model, trained.sets["churn"], {}, {})
