"""The bundle in the MLflow registry: log and register a version, resolve a reference, load it.

MLflow is imported inside the functions, after `configure_tracking` has set the telemetry switches,
so importing this module has no side effect and serving can import it cheaply.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from training.atomic import atomic_directory
from training.errors import NextbestError
from training.registry.bundle import Bundle, package_version
from training.registry.tracking import configure_tracking

REGISTERED_MODEL = "nextbest"
CHAMPION = "champion"
CHALLENGER = "challenger"  # the alias of the last version put through the promotion gate
DEFAULT_REF = f"models:/{REGISTERED_MODEL}@{CHAMPION}"
PINNED = (
    "mlflow",
    "lightgbm",
    "numpy",
    "pandas",
    "scikit-learn",
    "pyarrow",
    "duckdb",
    "pydantic",
    "pyyaml",
    "simpleeval",
)
METRICS_TAG = "nextbest.main_metrics"
NO_CHAMPION = "no champion yet: run `make train` then `make promote`"


# Logged as the model's code ("models from code"): nothing of the model is pickled.
MODEL_CODE = """\
from mlflow.models import set_model

from training.registry.pyfunc import NextbestPyfunc

set_model(NextbestPyfunc())
"""


def pip_requirements() -> list[str]:
    """The pinned versions of what loading the bundle needs (skips MLflow's slow inference)."""
    return [
        f"{name}=={package_version(name)}" for name in PINNED if package_version(name) != "unknown"
    ]


def log_bundle(bundle: Bundle, input_example_frame: pd.DataFrame) -> str:
    """Log the bundle into the active run as pyfunc "bundle" and register it as a new version
    of "nextbest", tagged with its main metrics (promotion reads them without downloading).
    Returns the new version number."""
    import mlflow
    from mlflow.models import infer_signature

    if mlflow.active_run() is None:
        raise RuntimeError("log_bundle needs an active run (tracking.training_run)")
    example = bundle.example_input(input_example_frame)
    signature = _optional_features(infer_signature(example, bundle.score_frame(example)))
    with tempfile.TemporaryDirectory(prefix="nextbest-bundle-") as tmp:
        folder = bundle.save(Path(tmp) / "bundle")
        code = Path(tmp) / "nextbest_model.py"
        code.write_text(MODEL_CODE, encoding="utf-8")
        info = mlflow.pyfunc.log_model(
            name="bundle",
            python_model=str(code),
            artifacts={"bundle": str(folder)},
            signature=signature,
            input_example=example,
            pip_requirements=pip_requirements(),
            metadata={"feature_version": bundle.metadata.feature_version},
        )
    registered = mlflow.register_model(info.model_uri, REGISTERED_MODEL, tags=version_tags(bundle))
    mlflow.set_tags(
        {"nextbest.bundle_version": str(registered.version)}
        | {f"nextbest.skipped.{role}": why[:4000] for role, why in bundle.metadata.skipped.items()}
    )
    return str(registered.version)


def _optional_features(signature: Any) -> Any:
    """Every input but customer_id optional: a feature may be missing for a customer (NaN)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    cols: list[ColSpec | TensorSpec] = [
        ColSpec(type=c.type, name=c.name, required=c.name == "customer_id")
        for c in signature.inputs.inputs
    ]
    return ModelSignature(inputs=Schema(cols), outputs=signature.outputs)


def version_tags(bundle: Bundle) -> dict[str, str]:
    """Model-version tags: the main metrics (JSON for promotion, one readable tag per role),
    the roles, the skipped roles, the data digest and the feature and catalog versions."""
    main = bundle.main_metrics
    tags = {
        METRICS_TAG: json.dumps(main, sort_keys=True),
        "nextbest.roles": ",".join(bundle.models),
        "nextbest.data_digest": str(bundle.metadata.data.get("digest", "")),
        "nextbest.feature_version": bundle.metadata.feature_version,
        "nextbest.catalog_version": bundle.metadata.catalog_version,
    }
    tags |= {f"{role}.{m['metric']}": f"{m['value']:.6g}" for role, m in main.items()}
    tags |= {f"skipped.{role}": reason[:4000] for role, reason in bundle.metadata.skipped.items()}
    return tags


# -------------------------------------------------------------------------- the registry
def parse_ref(ref: str | None) -> tuple[str, str | None, str | None]:
    """(name, version, alias) of "models:/name@alias", "models:/name/3" or "3" (None: champion)."""
    text = (ref or DEFAULT_REF).strip()
    if text.isdigit():
        return REGISTERED_MODEL, text, None
    body = text.removeprefix("models:/")
    if body != text and "@" in body:
        name, alias = body.split("@", 1)
        if name and alias and "/" not in body:
            return name, None, alias
    elif body != text and body.count("/") == 1:
        name, version = body.split("/")
        if name and version.isdigit():
            return name, version, None
    raise NextbestError(
        f"--model: cannot read {text!r}: use a version number, models:/{REGISTERED_MODEL}/3 or "
        f"{DEFAULT_REF}"
    )


def resolve_version(ref: str | None) -> Any:
    """The registry's ModelVersion for a reference; a missing model, version or alias is a
    one-line NextbestError."""
    import mlflow
    from mlflow.exceptions import MlflowException

    configure_tracking()
    name, version, alias = parse_ref(ref)
    client = mlflow.MlflowClient()
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        # the SQL store says RESOURCE_DOES_NOT_EXIST for a missing model or version but
        # INVALID_PARAMETER_VALUE for a missing alias
        if exc.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
    if alias == CHAMPION and name == REGISTERED_MODEL:
        raise NextbestError(NO_CHAMPION)
    what = f"alias @{alias}" if alias is not None else f"version {version}"
    raise NextbestError(f"registered model '{name}' has no {what} (run `make train` first?)")


def load_bundle(ref: str | None = None) -> Bundle:
    """The Bundle of a registry reference (default: models:/nextbest@champion), read straight
    from the artifact store (no pyfunc, no environment checks); `bundle.version` is set."""
    import mlflow

    mv = resolve_version(ref)
    bundle_uri = f"{_model_artifacts(mv)}/artifacts/bundle"
    local = _local_path(bundle_uri)
    if local is None and _is_local(bundle_uri):
        raise NextbestError(
            f"{bundle_uri}: the artifacts of model version {mv.version} are missing"
        )
    if local is not None:
        bundle = Bundle.load(local)
    else:
        with tempfile.TemporaryDirectory(prefix="nextbest-load-") as tmp:
            path = mlflow.artifacts.download_artifacts(artifact_uri=bundle_uri, dst_path=tmp)
            bundle = Bundle.load(path)
    bundle.version = str(mv.version)
    return bundle


def export_bundle(ref: str | None, folder: Path) -> Bundle:
    """Write the bundle of a registry reference into `folder` (replaced whole, atomically), its
    registry version recorded in its metadata: the service can then load it without MLflow
    (NEXTBEST_BUNDLE_DIR)."""
    bundle = load_bundle(ref)
    version = bundle.version or ""
    bundle.metadata = bundle.metadata.model_copy(update={"registry_version": version})
    with atomic_directory(folder) as tmp:
        bundle.save(tmp)
    return bundle


def _model_artifacts(mv: Any) -> str:
    """Artifact location of a version's logged model (MLflow 3: a LoggedModel of its own)."""
    import mlflow

    if getattr(mv, "model_id", None):
        return str(mlflow.MlflowClient().get_logged_model(mv.model_id).artifact_location)
    return str(mlflow.MlflowClient().get_model_version_download_uri(mv.name, mv.version))


def _is_local(uri: str) -> bool:
    from mlflow.utils.uri import is_local_uri

    return bool(is_local_uri(uri, is_tracking_or_registry_uri=False))


def bundle_folder(ref: str | None) -> Path | None:
    """The local folder holding a version's bundle files (None: a remote artifact store)."""
    return _local_path(f"{_model_artifacts(resolve_version(ref))}/artifacts/bundle")


def _local_path(uri: str) -> Path | None:
    """A local directory for a file: URI (read in place, no copy), else None."""
    from mlflow.utils.file_utils import local_file_uri_to_path
    from mlflow.utils.uri import is_local_uri

    if not is_local_uri(uri, is_tracking_or_registry_uri=False):
        return None
    path = Path(local_file_uri_to_path(uri))
    return path if path.is_dir() else None
