"""The model bundle: everything serving needs, versioned as ONE registered MLflow model "nextbest".

A bundle is the fitted feature definition, the configuration (with its action catalog), one score
model per role that could be trained, and metadata. On disk it is JSON plus each model's own files
(LightGBM text models + JSON, never pickle):

    builder.json  config.json  metadata.json  models/<role>/...  uplift/<outcome>.json

The registered model wraps that folder in a pyfunc (`NextbestPyfunc`, logged from code, so the
MLflow model holds no pickle either); the hot path (`load_bundle`) reads the folder directly.
"""

from __future__ import annotations

import importlib
import json
import os
import tempfile
from datetime import UTC, date, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # read once, when mlflow is imported
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from lightgbm.basic import LightGBMError  # noqa: E402
from mlflow.pyfunc import PythonModel, PythonModelContext  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field  # noqa: E402

from training.config import SCORE_NAMES, Config  # noqa: E402
from training.errors import NextbestError  # noqa: E402
from training.features import FeatureBuilder, to_matrix  # noqa: E402
from training.models.base import ScoreModel  # noqa: E402
from training.registry.checksums import checksums, verify  # noqa: E402
from training.uplift_choice import UpliftModel, load_uplift  # noqa: E402

REGISTERED_MODEL = "nextbest"
CHAMPION = "champion"
DEFAULT_REF = f"models:/{REGISTERED_MODEL}@{CHAMPION}"
FORMAT = 1
ROLES = ("churn", "satisfaction", "value")
SCORE_COLUMNS = tuple(SCORE_NAMES[role] for role in ROLES)
# The only classes a bundle may name, per role: a bundle's JSON can never load arbitrary code.
MODEL_CLASSES = {
    "churn": "training.models.churn.ChurnModel",
    "satisfaction": "training.models.satisfaction.SatisfactionModel",
    "value": "training.models.ltv.LtvModel",
}
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


class BundleMetadata(BaseModel):
    """What was trained, when, on what data and how well; skipped roles with the reason."""

    model_config = ConfigDict(extra="forbid")

    format: int = FORMAT
    trained_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    as_of: list[date] = Field(default_factory=list)
    rows: int = Field(default=0, description="snapshot rows (customer x as-of) trained on")
    data: dict[str, Any] = Field(default_factory=dict, description="tracking.data_fingerprint")
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict, description="per role")
    feature_version: str = ""
    catalog_version: str = ""
    skipped: dict[str, str] = Field(default_factory=dict, description="role -> reason")
    nextbest_version: str = ""


# ------------------------------------------------------------------------------ the bundle
class Bundle:
    """Feature builder + config + score models (roles present only) + uplift learners (per
    configured outcome, optional) + metadata; scores fast."""

    def __init__(
        self,
        builder: FeatureBuilder,
        config: Config,
        models: dict[str, ScoreModel],
        metadata: BundleMetadata | dict[str, Any] | None = None,
        uplift: dict[str, UpliftModel] | None = None,
    ) -> None:
        unknown = set(models) - set(ROLES)
        if unknown:
            raise ValueError(f"unknown roles {sorted(unknown)}; roles are {', '.join(ROLES)}")
        uplift = uplift or {}
        strange = set(uplift) - set(config.outcomes)
        if strange:
            raise ValueError(f"uplift for unknown outcomes {sorted(strange)}")
        self.builder = builder
        self.config = config
        self.models = {role: models[role] for role in ROLES if role in models}
        self.uplift = {name: uplift[name] for name in config.outcomes if name in uplift}
        if not isinstance(metadata, BundleMetadata):
            metadata = BundleMetadata.model_validate(metadata or {})
        self.metadata = metadata.model_copy(
            update={
                "feature_version": builder.version,
                "catalog_version": config.catalog.version,
                "nextbest_version": _version("nextbest"),
            }
        )
        self.version: str | None = None  # the registry version, once loaded from the registry
        self._categories = {
            s.name: list(s.categories) for s in builder.static_ if s.kind == "categorical"
        }

    # -- scoring ------------------------------------------------------------------------------
    def score_matrix(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """The three scores of a model matrix (`to_matrix` of `builder.feature_names_`); NaN
        for the scores whose role was not trained."""
        out = {name: np.full(len(X), np.nan) for name in SCORE_COLUMNS}
        for role, model in self.models.items():
            out[SCORE_NAMES[role]] = np.asarray(model.predict(X), dtype=np.float64)
        return out

    def uplift_matrix(self, X: np.ndarray) -> dict[str, np.ndarray]:
        """Predicted uplift per outcome with an uplift learner: (n, k) with columns in the
        catalog's action order; an action the learner never saw exposed gets 0 (no known effect)."""
        ids = self.config.catalog.ids
        out = {}
        for outcome, learner in self.uplift.items():
            matrix = np.zeros((len(X), len(ids)), dtype=np.float64)
            known = [(j, learner.actions_.index(a)) for j, a in enumerate(ids)
                     if a in learner.actions_]  # fmt: skip
            if known:
                predicted = learner.predict(X)
                cols, source = (list(c) for c in zip(*known, strict=True))
                matrix[:, cols] = predicted[:, source]
            out[outcome] = matrix
        return out

    def score_frame(self, features: pd.DataFrame) -> pd.DataFrame:
        """customer_id (when given) and the three scores of FeatureBuilder output rows.

        Categorical features may come as pandas categoricals or as plain strings (JSON, the MLflow
        signature): both are coded with the categories fitted in training; unseen values -> NaN.
        """
        X = to_matrix(self.prepare(features), self.builder.feature_names_)
        scores = pd.DataFrame(self.score_matrix(X), index=features.index)
        if "customer_id" in features:
            scores.insert(0, "customer_id", features["customer_id"].astype(str))
        return scores.reset_index(drop=True)

    def prepare(self, features: pd.DataFrame) -> pd.DataFrame:
        """The feature columns in training form: every name present, categoricals re-coded with
        the fitted categories (a no-op for FeatureBuilder output)."""
        missing = [n for n in self.builder.feature_names_ if n not in features]
        if missing:
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise NextbestError(f"features: missing columns {', '.join(missing[:5])}{more}")
        frame = features
        for name, categories in self._categories.items():
            col = features[name]
            if (
                isinstance(col.dtype, pd.CategoricalDtype)
                and list(col.cat.categories) == categories
            ):
                continue
            if frame is features:
                frame = features.copy()
            text = col.astype(object).where(col.notna(), None).map(_text)
            frame[name] = pd.Categorical(text, categories=categories)
        return frame

    def example_input(self, features: pd.DataFrame, rows: int = 5) -> pd.DataFrame:
        """A few rows as the pyfunc takes them: customer_id and features, categoricals as text."""
        keep = ["customer_id", *self.builder.feature_names_]
        frame = features[keep].head(rows).reset_index(drop=True)
        for name in self._categories:
            frame[name] = frame[name].astype(object).where(frame[name].notna(), None)
        return frame

    @property
    def main_metrics(self) -> dict[str, dict[str, Any]]:
        """role -> {metric, value, greater_is_better}: what promotion compares."""
        out = {}
        for role, model in self.models.items():
            value = self.metadata.metrics.get(role, {}).get(model.main_metric, float("nan"))
            out[role] = {
                "metric": model.main_metric,
                "value": float(value),
                "greater_is_better": bool(model.greater_is_better),
            }
        return out

    # -- persistence --------------------------------------------------------------------------
    def save(self, folder: Path | str) -> Path:
        """Write the bundle into `folder` (created; must not exist or be empty)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if any(folder.iterdir()):
            raise NextbestError(f"{folder}: bundle folder is not empty")
        classes = {role: _class_path(model) for role, model in self.models.items()}
        for role, path in classes.items():
            if MODEL_CLASSES[role] != path:
                raise NextbestError(f"role '{role}': {path} is not {MODEL_CLASSES[role]}")
            (folder / "models" / role).mkdir(parents=True)
            self.models[role].save(folder / "models" / role)
        for outcome, learner in self.uplift.items():
            (folder / "uplift").mkdir(exist_ok=True)
            _write_json(folder / "uplift" / f"{outcome}.json", learner.to_dict())
        _write_json(folder / "builder.json", self.builder.to_dict())
        # warnings=False: pydantic warns (wrongly) about Snapshots.as_of's plain validator
        config = self.config.model_dump(mode="json", warnings=False)
        _write_json(folder / "config.json", config)
        meta = self.metadata.model_dump(mode="json") | {"models": classes}
        _write_json(folder / "metadata.json", meta | {"checksums": checksums(folder)})
        return folder

    @classmethod
    def load(cls, folder: Path | str) -> Bundle:
        """Read a bundle written by `save`; model classes only from the allow-list, every file
        checked against its recorded checksum before it is parsed."""
        folder = Path(folder)
        try:
            meta = _read_json(folder / "metadata.json")
            classes: dict[str, str] = meta.pop("models")
            recorded = meta.pop("checksums", None)
            if recorded is not None:  # bundles saved before checksums were recorded have none
                verify(folder, recorded)
            builder = FeatureBuilder.from_dict(_read_json(folder / "builder.json"))
            config = Config.model_validate(_read_json(folder / "config.json"))
        except (OSError, KeyError, ValueError) as exc:
            raise NextbestError(f"{folder}: not a readable nextbest bundle ({exc})") from None
        try:
            models = {role: _model_class(role, path).load(folder / "models" / role)
                      for role, path in classes.items()}  # fmt: skip
            uplift = {name: load_uplift(_read_json(folder / "uplift" / f"{name}.json"))
                      for name in config.outcomes if (folder / "uplift" / f"{name}.json").is_file()}  # fmt: skip
            metadata = BundleMetadata.model_validate(meta)
        except (OSError, KeyError, ValueError, TypeError, LightGBMError) as exc:
            raise NextbestError(f"{folder}: a model of the bundle is unreadable ({exc})") from None
        if metadata.format != FORMAT:
            raise NextbestError(f"{folder}: bundle format {metadata.format} is not {FORMAT}")
        if metadata.feature_version != builder.version:
            raise NextbestError(f"{folder}: metadata and builder.json disagree on the features")
        bundle = cls(builder, config, models, metadata, uplift)
        bundle.metadata = metadata  # as saved (nextbest_version of the training code)
        return bundle


def _text(value: object) -> str | None:
    """A categorical value as the text LightGBM's categories were fitted on."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _class_path(model: ScoreModel) -> str:
    return f"{type(model).__module__}.{type(model).__qualname__}"


def _model_class(role: str, path: str) -> type[ScoreModel]:
    """The class of a role's model, only if it is the allow-listed one."""
    if MODEL_CLASSES.get(role) != path:
        raise NextbestError(f"bundle names model class {path!r} for role {role!r}: not allowed")
    module, name = path.rsplit(".", 1)
    model_class: type[ScoreModel] = getattr(importlib.import_module(module), name)
    return model_class


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True, allow_nan=True), encoding="utf-8")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _version(package: str) -> str:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


# ------------------------------------------------------------------------------- the pyfunc
class NextbestPyfunc(PythonModel):
    """The bundle as an MLflow pyfunc: FeatureBuilder output rows in, scores out."""

    def load_context(self, context: PythonModelContext) -> None:
        self.bundle = Bundle.load(Path(context.artifacts["bundle"]))

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        return self.bundle.score_frame(model_input)


# Logged as the model's code ("models from code"): nothing of the model is pickled.
_MODEL_CODE = """\
from mlflow.models import set_model

from training.bundle import NextbestPyfunc

set_model(NextbestPyfunc())
"""


def pip_requirements() -> list[str]:
    """The pinned versions of what loading the bundle needs (skips MLflow's slow inference)."""
    return [f"{name}=={_version(name)}" for name in PINNED if _version(name) != "unknown"]


def log_bundle(bundle: Bundle, input_example_frame: pd.DataFrame) -> str:
    """Log the bundle into the active run as pyfunc "bundle" and register it as a new version
    of "nextbest", tagged with its main metrics (promotion reads them without downloading).
    Returns the new version number."""
    from mlflow.models import infer_signature

    if mlflow.active_run() is None:
        raise RuntimeError("log_bundle needs an active run (tracking.training_run)")
    example = bundle.example_input(input_example_frame)
    signature = _optional_features(infer_signature(example, bundle.score_frame(example)))
    with tempfile.TemporaryDirectory(prefix="nextbest-bundle-") as tmp:
        folder = bundle.save(Path(tmp) / "bundle")
        code = Path(tmp) / "nextbest_model.py"
        code.write_text(_MODEL_CODE, encoding="utf-8")
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
    from mlflow.exceptions import MlflowException

    from training.tracking import configure_tracking

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


def _model_artifacts(mv: Any) -> str:
    """Artifact location of a version's logged model (MLflow 3: a LoggedModel of its own)."""
    if getattr(mv, "model_id", None):
        return str(mlflow.MlflowClient().get_logged_model(mv.model_id).artifact_location)
    return str(mlflow.MlflowClient().get_model_version_download_uri(mv.name, mv.version))


def _is_local(uri: str) -> bool:
    from mlflow.utils.uri import is_local_uri

    return bool(is_local_uri(uri, is_tracking_or_registry_uri=False))


def _local_path(uri: str) -> Path | None:
    """A local directory for a file: URI (read in place, no copy), else None."""
    from mlflow.utils.file_utils import local_file_uri_to_path
    from mlflow.utils.uri import is_local_uri

    if not is_local_uri(uri, is_tracking_or_registry_uri=False):
        return None
    path = Path(local_file_uri_to_path(uri))
    return path if path.is_dir() else None
