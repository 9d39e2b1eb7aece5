"""The bundle: saved and loaded, logged and registered in a real (temporary) MLflow store, and read
back through `load_bundle` and through MLflow's own pyfunc loader with exactly the same scores.

The helpers here (trained models on the small world, a pre-migrated store) are shared with
test_promote.py and test_tracking.py.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import mlflow  # noqa: E402

from training.config import SCORE_COLUMNS, Config, load_config  # noqa: E402
from training.data.contract import open_dataset  # noqa: E402
from training.data.snapshots import (  # noqa: E402
    TrainingSet,
    build_snapshots,
    data_span,
    resolve_as_of,
    split_for,
)
from training.errors import NextbestError  # noqa: E402
from training.evaluation.score_metrics import score_metrics  # noqa: E402
from training.features.definition import FeatureBuilder, to_matrix  # noqa: E402
from training.registry.bundle import Bundle, BundleMetadata
from training.registry.mlflow_models import NO_CHAMPION, load_bundle, log_bundle, parse_ref
from training.registry.tracking import data_fingerprint, training_run  # noqa: E402
from training.scores.base import ScoreModel, fit_on  # noqa: E402
from training.scores.churn import ChurnModel  # noqa: E402
from training.scores.ltv import LtvModel  # noqa: E402
from training.scores.satisfaction import SatisfactionModel  # noqa: E402

FAST = {"n_estimators": 60, "learning_rate": 0.1, "n_jobs": 1}
CLASSES: dict[str, type[Any]] = {
    "churn": ChurnModel,
    "satisfaction": SatisfactionModel,
    "value": LtvModel,
}


# ------------------------------------------------------------------------- shared helpers
@dataclass
class Trained:
    """Everything a bundle is made of, trained quickly on the small world."""

    data_dir: Path
    config: Config
    builder: FeatureBuilder
    frame: pd.DataFrame
    as_of: list[date]
    sets: dict[str, TrainingSet]
    models: dict[str, ScoreModel]
    metrics: dict[str, dict[str, float]]
    fingerprint: dict[str, Any]

    def bundle(self, models: dict[str, ScoreModel] | None = None, **meta: Any) -> Bundle:
        """A bundle of these (or other) models, their metrics evaluated on the real test slices."""
        models = self.models if models is None else models
        metrics = {r: score_metrics(m, self.sets[r]) for r, m in models.items()}
        metadata = BundleMetadata(as_of=self.as_of, data=self.fingerprint, metrics=metrics, **meta)
        return Bundle(self.builder, self.config, models, metadata)

    def run(self, **kwargs: Any) -> Any:
        """A training run on this data (the context manager of tracking.py)."""
        ds = open_dataset(self.data_dir)
        return training_run(ds, self.builder, self.config, None, self.as_of, **kwargs)


_CACHE: dict[object, Any] = {}  # per test process: what several modules share


def train_all(data_dir: Path) -> Trained:
    """Snapshots, splits and the three real score models on a data set (about 2 s, once per
    process; the models are only read)."""
    if data_dir not in _CACHE:
        _CACHE[data_dir] = _train_all(data_dir)
    trained: Trained = _CACHE[data_dir]
    return trained


def _train_all(data_dir: Path) -> Trained:
    config = load_config()
    ds = open_dataset(data_dir)
    with ds.connect() as con:
        builder = FeatureBuilder(config.features).fit(con)
        as_of = resolve_as_of(config, data_span(con))
        frame = build_snapshots(con, builder, config, as_of)
    sets, models, metrics = {}, {}, {}
    for role, cls in CLASSES.items():
        found = config.outcome_for_role(role)
        assert found is not None
        name, spec = found
        sets[role] = split_for(frame, name, builder.feature_names_, spec.horizon_days)
        models[role] = fit_on(cls(**FAST), sets[role])
        metrics[role] = score_metrics(models[role], sets[role])
    return Trained(
        data_dir, config, builder, frame, as_of, sets, models, metrics, data_fingerprint(ds)
    )


def migrated_store(factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store with every table created, made once per process (migrating
    takes seconds; copying the file takes milliseconds, so each test copies this one)."""
    if "store" not in _CACHE:
        db = factory.mktemp("mlflow-template") / "template.db"
        mlflow.MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
        _CACHE["store"] = db
    template: Path = _CACHE["store"]
    return template


def use_store(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point MLflow at a fresh copy of the template store in tmp_path; returns the db path."""
    db = tmp_path / "mlflow.db"
    shutil.copy(template, db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    return db


def register(trained: Trained, bundle: Bundle) -> str:
    """Log and register a bundle the way training does (inside a training run)."""
    with trained.run(fingerprint=trained.fingerprint):
        return log_bundle(bundle, trained.frame)


# -------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def trained(small_world: Path) -> Trained:
    return train_all(small_world)


@pytest.fixture
def features(trained: Trained) -> pd.DataFrame:
    """FeatureBuilder output rows (categoricals as pandas categoricals) of several customers."""
    return trained.frame.head(400).reset_index(drop=True)


# ---------------------------------------------------------------------------------- tests
def test_save_and_load_give_the_same_scores(trained: Trained, features, tmp_path: Path) -> None:
    bundle = trained.bundle(skipped={})
    folder = bundle.save(tmp_path / "bundle")
    assert sorted(p.name for p in folder.iterdir()) == [
        "builder.json",
        "config.json",
        "metadata.json",
        "models",
    ]
    assert not list(folder.rglob("*.pkl"))
    loaded = Bundle.load(folder)
    pd.testing.assert_frame_equal(loaded.score_frame(features), bundle.score_frame(features))
    assert loaded.config == trained.config
    assert loaded.metadata.feature_version == trained.builder.version
    assert loaded.metadata.catalog_version == trained.config.catalog.version
    assert loaded.metadata.as_of == trained.as_of
    assert (
        loaded.metadata.metrics["churn"]["roc_auc"] == bundle.metadata.metrics["churn"]["roc_auc"]
    )


def test_the_drift_reference_travels_as_json_and_matches_its_own_data(
    trained: Trained, tmp_path: Path
) -> None:
    bundle = trained.bundle(skipped={})
    rows = trained.frame[trained.frame["as_of"] == trained.frame["as_of"].max()]
    bundle.reference = bundle.fit_reference(rows)
    assert bundle.reference.features.rows == len(rows)
    assert list(bundle.reference.features.binnings) == trained.builder.feature_names_
    assert list(bundle.reference.scores.binnings) == list(bundle.trained_scores)
    loaded = Bundle.load(bundle.save(tmp_path / "bundle"))
    assert (tmp_path / "bundle" / "reference.json").is_file()
    assert loaded.reference is not None
    assert loaded.reference.to_dict() == bundle.reference.to_dict()
    again = loaded.fit_reference(rows)  # the same rows on the same bins: identical counts
    assert again.to_dict() == bundle.reference.to_dict()


def test_scores_cover_three_columns_and_skipped_roles_are_nan(trained: Trained, features) -> None:
    models = {r: m for r, m in trained.models.items() if r != "satisfaction"}
    bundle = trained.bundle(models, skipped={"satisfaction": "no nps events"})
    scores = bundle.score_frame(features)
    assert list(scores.columns) == ["customer_id", *SCORE_COLUMNS]
    assert scores["satisfaction"].isna().all()
    assert scores["churn_probability"].between(0, 1).all()
    assert (scores["ltv"] >= 0).all()
    X = to_matrix(features, trained.builder.feature_names_)
    direct = trained.models["churn"].predict_score(X)
    np.testing.assert_array_equal(scores["churn_probability"].to_numpy(), direct)
    assert bundle.metadata.skipped == {"satisfaction": "no nps events"}


def test_categoricals_as_plain_text_score_the_same(trained: Trained, features) -> None:
    bundle = trained.bundle()
    as_text = bundle.example_input(features, rows=len(features))
    categorical = [c for c in features if isinstance(features[c].dtype, pd.CategoricalDtype)]
    assert categorical and all(as_text[c].dtype == object for c in categorical)
    pd.testing.assert_frame_equal(bundle.score_frame(as_text), bundle.score_frame(features))


def test_missing_feature_columns_are_named(trained: Trained, features) -> None:
    with pytest.raises(NextbestError, match="missing columns events_7d"):
        trained.bundle().score_frame(features.drop(columns=["events_7d"]))


def test_load_refuses_model_classes_off_the_allow_list(trained: Trained, tmp_path: Path) -> None:
    folder = trained.bundle().save(tmp_path / "bundle")
    meta = json.loads((folder / "metadata.json").read_text())
    meta["models"]["churn"] = "subprocess.Popen"
    (folder / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(NextbestError, match="not allowed"):
        Bundle.load(folder)


@pytest.mark.parametrize(
    ("ref", "parsed"),
    [
        (None, ("nextbest", None, "champion")),
        ("3", ("nextbest", "3", None)),
        ("models:/nextbest/12", ("nextbest", "12", None)),
        ("models:/nextbest@challenger", ("nextbest", None, "challenger")),
    ],
)
def test_parse_ref(ref: str | None, parsed: tuple[str, str | None, str | None]) -> None:
    assert parse_ref(ref) == parsed


@pytest.mark.parametrize("ref", ["latest", "models:/nextbest", "models:/nextbest/x", "v3"])
def test_parse_ref_rejects_other_text(ref: str) -> None:
    with pytest.raises(NextbestError, match="--model"):
        parse_ref(ref)


def test_log_register_and_load_back_exactly(
    trained: Trained, features, store: Path, record_property
) -> None:
    bundle = trained.bundle()
    with trained.run(fingerprint=trained.fingerprint):
        start = time.perf_counter()
        first = log_bundle(bundle, trained.frame)
        record_property("log_bundle_seconds", round(time.perf_counter() - start, 3))
        second = log_bundle(bundle, trained.frame)
    assert (first, second) == ("1", "2")

    expected = bundle.score_frame(features)
    start = time.perf_counter()
    by_number = load_bundle("1")
    record_property("load_bundle_seconds", round(time.perf_counter() - start, 3))
    assert by_number.version == "1"
    pd.testing.assert_frame_equal(by_number.score_frame(features), expected, check_exact=True)
    by_uri = load_bundle("models:/nextbest/2")
    pd.testing.assert_frame_equal(by_uri.score_frame(features), expected, check_exact=True)

    pyfunc = mlflow.pyfunc.load_model("models:/nextbest/1")
    served = pyfunc.predict(bundle.example_input(features, rows=len(features)))
    pd.testing.assert_frame_equal(served, expected, check_exact=True)

    artifacts = store.parent / "mlruns"
    assert artifacts.is_dir() and not list(artifacts.rglob("*.pkl"))


def test_versions_carry_main_metrics_as_tags(trained: Trained, store: Path) -> None:
    bundle = trained.bundle()
    version = register(trained, bundle)
    tags = mlflow.MlflowClient().get_model_version("nextbest", version).tags
    main = json.loads(tags["nextbest.main_metrics"])
    assert main["churn"] == {
        "metric": "roc_auc",
        "value": trained.metrics["churn"]["roc_auc"],
        "greater_is_better": True,
    }
    assert main["satisfaction"]["greater_is_better"] is False
    assert tags["nextbest.feature_version"] == trained.builder.version
    assert tags["nextbest.data_digest"] == trained.fingerprint["digest"]
    assert float(tags["value.normalized_gini"]) == pytest.approx(
        trained.metrics["value"]["normalized_gini"], rel=1e-5
    )


def test_signature_takes_features_as_optional_columns(trained: Trained, store: Path) -> None:
    register(trained, trained.bundle())
    info = mlflow.models.get_model_info("models:/nextbest/1")
    inputs = {c.name: c for c in info.signature.inputs.inputs}
    assert set(inputs) == {"customer_id", *trained.builder.feature_names_}
    assert inputs["customer_id"].required
    assert not any(c.required for n, c in inputs.items() if n != "customer_id")
    assert [c.name for c in info.signature.outputs.inputs] == ["customer_id", *SCORE_COLUMNS]


def test_no_champion_is_one_clear_line(store: Path) -> None:
    with pytest.raises(NextbestError) as raised:
        load_bundle(None)
    assert str(raised.value) == NO_CHAMPION


def test_unknown_version_is_one_clear_line(trained: Trained, store: Path) -> None:
    register(trained, trained.bundle())
    with pytest.raises(NextbestError, match="has no version 7") as raised:
        load_bundle("7")
    assert "\n" not in str(raised.value)


def test_metadata_may_be_given_as_a_dict(trained: Trained) -> None:
    meta = {"as_of": ["2026-08-03"], "rows": 12, "skipped": {"value": "no purchases"}}
    bundle = Bundle(trained.builder, trained.config, trained.models, meta)
    assert bundle.metadata.as_of == [date(2026, 8, 3)]
    assert bundle.metadata.rows == 12
    with pytest.raises(ValueError, match="unknown_field"):
        Bundle(trained.builder, trained.config, trained.models, {"unknown_field": 1})


def test_a_text_model_travels_in_the_bundle_without_pickle(
    trained: Trained, tmp_path: Path
) -> None:
    from training.data.texts import fit_texts

    with open_dataset(trained.data_dir).connect() as con:
        fitted = fit_texts(con, trained.config, trained.as_of)
        assert not isinstance(fitted, str), fitted
        builder = FeatureBuilder.from_dict(trained.builder.to_dict()).with_text(fitted[0])
        expected = builder.transform(con, as_of=trained.as_of[-1])
    assert "text_negative_share_30d" in builder.feature_names_
    folder = Bundle(builder, trained.config, {}).save(tmp_path / "bundle")
    assert sorted(p.name for p in (folder / "text").iterdir()) == ["text.json", "text.npz"]
    assert not list(folder.rglob("*.pkl"))
    loaded = Bundle.load(folder)
    assert loaded.builder.version == builder.version
    assert loaded.builder.topic_terms_ == builder.topic_terms_
    with open_dataset(trained.data_dir).connect() as con:
        got = loaded.builder.transform(con, as_of=trained.as_of[-1])
    pd.testing.assert_frame_equal(got, expected)
    with pytest.raises(NextbestError, match="only the final"):
        Bundle(builder.with_text(fitted[1]), trained.config, {}).save(tmp_path / "crossed")
    assert not (tmp_path / "crossed").exists()
    (folder / "text" / "text.npz").write_bytes(b"not the arrays")
    with pytest.raises(NextbestError, match="bundle"):
        Bundle.load(folder)
