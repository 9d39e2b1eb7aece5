"""MLflow tracking for training: where runs go, what data they saw, one parent run per training.

Nothing happens at import time. `configure_tracking` is the one place that chooses the store: the
URI in $MLFLOW_TRACKING_URI, else a SQLite file `mlflow.db` in the current directory (the project
root) with artifacts in `mlruns/` beside it. MLflow is imported inside the functions, after the
telemetry switches are set, because MLflow decides about telemetry when it is first imported.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from training.config import Config
from training.data.contract import Dataset
from training.data.snapshots import TrainingSet
from training.features.definition import FeatureBuilder
from training.scores.base import ScoreModel
from training.uplift.fit import UpliftResult

if TYPE_CHECKING:
    import mlflow
    from matplotlib.figure import Figure

EXPERIMENT = "nextbest"
DB_FILE = "mlflow.db"
ARTIFACT_DIR = "mlruns"
SMALL_FILE_BYTES = 64 * 2**20  # files up to this size are fingerprinted by content
_CHUNK = 8 * 2**20
_DIGEST_CHARS = 16  # MLflow stores dataset digests in 36 characters at most
TELEMETRY_SWITCHES = {"MLFLOW_DISABLE_TELEMETRY": "true", "BENTOML_DO_NOT_TRACK": "true"}


# ----------------------------------------------------------------------------- the store
def quiet_telemetry() -> None:
    """Turn MLflow and BentoML telemetry off unless the user set the variables explicitly."""
    for name, value in TELEMETRY_SWITCHES.items():
        os.environ.setdefault(name, value)


def configure_tracking() -> str:
    """Point MLflow at $MLFLOW_TRACKING_URI or at `sqlite:///<cwd>/mlflow.db`; return the URI."""
    quiet_telemetry()
    import mlflow
    from mlflow.telemetry import set_telemetry_client

    set_telemetry_client()  # re-read the switches in case mlflow was imported before them
    for name in ("mlflow", "alembic"):  # store migrations and registry chatter: not for users
        logging.getLogger(name).setLevel(logging.WARNING)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / DB_FILE}"
    mlflow.set_tracking_uri(uri)
    return uri


def artifact_location(uri: str) -> str | None:
    """Artifact root for a new experiment: `mlruns/` beside a SQLite file; the server's default
    (None) for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    return (db.resolve().parent / ARTIFACT_DIR).as_uri()


def ensure_experiment(name: str = EXPERIMENT) -> str:
    """Make `name` the active experiment, creating it (with its artifact location) if needed."""
    import mlflow

    found = mlflow.get_experiment_by_name(name)
    if found is None:
        where = artifact_location(mlflow.get_tracking_uri())
        experiment_id = mlflow.create_experiment(name, artifact_location=where)
    else:
        experiment_id = found.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)


# ------------------------------------------------------------------------- data fingerprint
def data_fingerprint(ds: Dataset) -> dict[str, Any]:
    """What a training run read: per table its files, bytes, rows and a sha256 digest.

    Files up to SMALL_FILE_BYTES are hashed by content; bigger ones by (size, mtime, rows, Parquet
    metadata), which costs no full read. `digest` covers every table.
    """
    tables = {table: _table_print(path) for table, path in ds.files.items() if path is not None}
    whole = hashlib.sha256(json.dumps(tables, sort_keys=True).encode()).hexdigest()
    return {"root": str(ds.root.resolve()), "tables": tables, "digest": whole}


def _table_print(path: Path) -> dict[str, Any]:
    """Fingerprint of one table: a file, or a directory of Parquet parts."""
    parts = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    files = [_file_print(part, part.relative_to(path.parent)) for part in parts]
    digest = hashlib.sha256("".join(f["sha256"] for f in files).encode()).hexdigest()
    return {
        "files": files,
        "bytes": sum(f["bytes"] for f in files),
        "rows": sum(f["rows"] for f in files),
        "sha256": digest,
    }


def _file_print(path: Path, name: Path) -> dict[str, Any]:
    """Name, bytes, rows and digest of one file (content digest when small, metadata when big)."""
    stat = path.stat()
    rows, meta = _rows_and_meta(path)
    if stat.st_size <= SMALL_FILE_BYTES:
        method, digest = "content", _content_digest(path)
    else:
        basis = json.dumps(
            [stat.st_size, stat.st_mtime_ns, rows, meta], sort_keys=True, default=str
        )
        method, digest = "metadata", hashlib.sha256(basis.encode()).hexdigest()
    return {
        "name": str(name),
        "bytes": stat.st_size,
        "rows": rows,
        "method": method,
        "sha256": digest,
    }


def _rows_and_meta(path: Path) -> tuple[int, Any]:
    """Row count (Parquet: from the footer; CSV: lines minus the header) and Parquet metadata."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        meta = pq.ParquetFile(path).metadata
        return int(meta.num_rows), meta.to_dict()
    lines, last = 0, b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    lines += last != b"\n"  # a last line without a newline still counts
    return max(lines - 1, 0), None


def _content_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def log_data_fingerprint(fingerprint: dict[str, Any], context: str = "training") -> None:
    """Record the data set as an MLflow dataset input of the active run (a MetaDataset: the
    files stay where they are; the fingerprint digest is the dataset's digest) and the whole
    fingerprint as `data_fingerprint.json`."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    root = Path(fingerprint["root"])
    with warnings.catch_warnings():  # MLflow registers two local sources ("" and file:)
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(str(root))
    digest = fingerprint["digest"][:_DIGEST_CHARS]
    # MLflow marks `profile` abstract on its base class yet MetaDataset works without one.
    dataset = MetaDataset(source, name=root.name, digest=digest)  # type: ignore[abstract]
    rows = {f"rows.{t}": str(v["rows"]) for t, v in fingerprint["tables"].items()}
    mlflow.log_input(dataset, context=context, tags=rows)
    mlflow.log_dict(fingerprint, "data_fingerprint.json")


# ------------------------------------------------------------------------------ the runs
@dataclass(frozen=True)
class TrainingRun:
    """The active parent run and the fingerprint of the data it trains on (for the bundle)."""

    run: mlflow.ActiveRun
    fingerprint: dict[str, Any]

    @property
    def run_id(self) -> str:
        return str(self.run.info.run_id)


@contextmanager
def training_run(
    ds: Dataset,
    builder: FeatureBuilder,
    config: Config,
    config_path: Path | str | None,
    as_of: list[date],
    *,
    fingerprint: dict[str, Any] | None = None,
    run_name: str | None = None,
) -> Iterator[TrainingRun]:
    """The parent run of one training, in experiment "nextbest"; score runs nest inside it.

    Records the data path, feature and catalog versions and config path (tags), the as-of dates
    (param), the configuration (`config.json`) and the data set (a dataset input; `fingerprint`
    is computed when not given). A failure inside the block ends the run as FAILED.
    """
    configure_tracking()
    ensure_experiment()
    import mlflow

    fingerprint = data_fingerprint(ds) if fingerprint is None else fingerprint
    name = run_name or f"train {datetime.now(UTC):%Y-%m-%d %H:%M}"
    with mlflow.start_run(run_name=name) as run:
        mlflow.set_tags(
            {
                "nextbest.data_path": str(ds.root.resolve()),
                "nextbest.feature_version": builder.version,
                "nextbest.catalog_version": config.catalog.version,
                "nextbest.config_path": str(config_path) if config_path else "(demo default)",
            }
        )
        mlflow.log_params(
            {
                "as_of": ",".join(d.isoformat() for d in as_of),
                "n_features": len(builder.feature_names_),
            }
        )
        mlflow.log_dict(config.model_dump(mode="json", warnings=False), "config.json")
        log_data_fingerprint(fingerprint)
        yield TrainingRun(run, fingerprint)


def log_score_run(
    model: ScoreModel,
    data: TrainingSet,
    metrics: dict[str, float],
    figures: dict[str, Figure],
    baselines: dict[str, float] | None = None,
) -> str:
    """A nested run for one score: params, data sizes, metrics, baseline metrics, PNG figures.

    The main metric is also logged on the parent run as `<role>.<metric>`, so the logged bundle
    (whose metrics MLflow copies from the parent run) carries it. Returns the nested run id.
    """
    import mlflow
    from matplotlib import pyplot as plt

    parent = mlflow.active_run()
    if parent is None:
        raise RuntimeError("log_score_run needs an active training_run")
    with mlflow.start_run(run_name=model.role, nested=True) as run:
        mlflow.set_tags({"nextbest.role": model.role, "nextbest.main_metric": model.main_metric})
        mlflow.log_params(_flat(model.params()) | _sizes(data))
        mlflow.log_metrics(_finite(metrics))
        mlflow.log_metrics(_finite({f"baseline.{k}": v for k, v in (baselines or {}).items()}))
        for name, figure in figures.items():
            mlflow.log_figure(figure, f"figures/{name}.png")
            plt.close(figure)
    main = metrics.get(model.main_metric)
    if main is not None and np.isfinite(main):
        mlflow.log_metric(
            f"{model.role}.{model.main_metric}", float(main), run_id=parent.info.run_id
        )
    return str(run.info.run_id)


def _flat(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested parameters as flat `a.b` keys with string values (MLflow params are strings)."""
    out: dict[str, str] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = (
                value if isinstance(value, str) else json.dumps(value, default=str)
            )
    return out


def _sizes(data: TrainingSet) -> dict[str, str]:
    return {
        "data.n_fit": str(len(data.y_fit)),
        "data.n_val": str(len(data.y_val)),
        "data.n_test": str(len(data.y_test)),
        "data.n_features": str(len(data.feature_names)),
        "data.horizon_days": str(data.horizon_days),
    }


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics MLflow can chart: finite floats only (a NaN AUC on a one-class slice is dropped)."""
    return {k: float(v) for k, v in metrics.items() if v is not None and np.isfinite(v)}


def log_uplift_run(result: UpliftResult) -> str:
    """A nested MLflow run "uplift" under the active training run: the chosen learner per outcome
    (params), `<outcome>.<learner>.<metric>` metrics, and the comparison as CSV and JSON."""
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("log_uplift_run needs an active training_run")
    with mlflow.start_run(run_name="uplift", nested=True) as run:
        mlflow.log_params(
            {
                f"{o}.{a}": chosen
                for o, m in result.learners.items()
                for a, chosen in m.describe().items()
            }
            | {"exposures": result.exposures}
            | {f"skipped.{o}": why[:500] for o, why in result.skipped.items()}
        )
        metrics: dict[str, float] = {}
        for record in result.comparison.to_dict("records"):
            prefix = f"{record['outcome']}.{record['action']}.{record['learner']}"
            for key, value in record.items():
                if key not in ("outcome", "action", "learner", "chosen") and np.isfinite(value):
                    metrics[f"{prefix}.{key}"] = float(value)
        mlflow.log_metrics(metrics)
        mlflow.log_text(result.comparison.to_csv(index=False), "uplift/comparison.csv")
        records = json.loads(result.comparison.to_json(orient="records"))
        summary = {"comparison": records, "skipped": result.skipped}
        mlflow.log_dict(summary, "uplift/comparison.json")
    return str(run.info.run_id)


def log_batch_run(
    as_of: date, model_version: str, metrics: dict[str, float], report: dict[str, Any]
) -> str:
    """One run per batch scoring (`score <as_of>`, experiment "nextbest"): its drift metrics, a
    `drift.flagged` tag and the whole drift report as `drift.json`. Returns the run id."""
    import mlflow

    ensure_experiment()
    with mlflow.start_run(run_name=f"score {as_of.isoformat()}") as run:
        mlflow.set_tags(
            {
                "nextbest.kind": "batch",
                "as_of": as_of.isoformat(),
                "model_version": model_version,
                "drift.flagged": str(bool(report.get("flagged"))).lower(),
            }
        )
        mlflow.log_metrics(_finite(metrics))
        mlflow.log_dict(report, "drift.json")
        return str(run.info.run_id)
