"""The model bundle: everything serving needs, as one folder of JSON and LightGBM text.

A bundle is the fitted feature definition, the configuration (with its action catalog), one score
model per role that could be trained, the uplift learners, and metadata. On disk it is JSON plus each
model's own files (LightGBM text models + JSON, never pickle):

    builder.json  config.json  metadata.json  models/<role>/...  uplift/<outcome>.json
    text/text.json  text/text.npz   (only with a text model: vocabularies, idf, coefficients)
    lifetime.json  (with `objective.lifetime_months`: how `ltv` projects value, see scores.lifetime)
    reference.json (the training reference of features and scores that batch drift compares with)

This module is pure: no MLflow, nothing at import time. Registering a bundle as a version of the MLflow
model "nextbest" and finding it again is `training.registry.mlflow_models`.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from lightgbm.basic import LightGBMError
from pydantic import BaseModel, ConfigDict, Field

from training.config import (
    LTV_SCORE,
    ROLES,
    SCORE_COLUMNS,
    SCORE_NAMES,
    WINDOW_VALUE_SCORE,
    Config,
)
from training.drift.profile import Reference, fit_reference
from training.errors import NextbestError
from training.features.definition import FeatureBuilder, to_matrix
from training.registry.checksums import checksums, verify
from training.scores.base import ScoreModel
from training.scores.lifetime import LifetimeValue
from training.text.model import JSON_FILE as TEXT_JSON
from training.text.model import TextModel
from training.uplift.selection import SelectedUplift, UpliftModel, load_uplift

FORMAT = 1
# The only classes a bundle may name, per role: a bundle's JSON can never load arbitrary code.
MODEL_CLASSES = {
    "churn": "training.scores.churn.ChurnModel",
    "satisfaction": "training.scores.satisfaction.SatisfactionModel",
    "value": "training.scores.ltv.LtvModel",
}
# Class paths written by bundles saved before the layout by stage: read as their new homes.
LEGACY_CLASSES = {
    "training.models.churn.ChurnModel": MODEL_CLASSES["churn"],
    "training.models.satisfaction.SatisfactionModel": MODEL_CLASSES["satisfaction"],
    "training.models.ltv.LtvModel": MODEL_CLASSES["value"],
}


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
    registry_version: str = Field(
        default="", description="the registry version it was exported as (empty in the registry)"
    )


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
        lifetime: LifetimeValue | None = None,
        reference: Reference | None = None,
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
        self.lifetime = lifetime if "value" in self.models else None
        self.reference = reference
        if not isinstance(metadata, BundleMetadata):
            metadata = BundleMetadata.model_validate(metadata or {})
        self.metadata = metadata.model_copy(
            update={
                "feature_version": builder.version,
                "catalog_version": config.catalog.version,
                "nextbest_version": package_version("nextbest"),
            }
        )
        # the registry version, once loaded from the registry or from a folder it was exported to
        self.version: str | None = None
        self._categories = {
            s.name: list(s.categories) for s in builder.static_ if s.kind == "categorical"
        }
        # outcome -> (its learner, catalog positions, learner columns): see _uplift_columns
        self._columns: dict[str, tuple[UpliftModel, list[int], list[int]]] = {}

    # -- scoring ------------------------------------------------------------------------------
    def score_matrix(
        self, X: np.ndarray, known: Mapping[str, np.ndarray] | None = None
    ) -> dict[str, np.ndarray]:
        """The scores of a model matrix (`to_matrix` of `builder.feature_names_`); NaN for the
        scores whose role was not trained. `ltv` is the lifetime value when the bundle has a
        lifetime model, else the label-window revenue (`window_value`), as before lifetimes.
        `known`: score models' outputs on these rows already known (by score column), not
        computed again."""
        out = {name: np.full(len(X), np.nan) for name in SCORE_COLUMNS}
        for role, model in self.models.items():
            name = SCORE_NAMES[role]
            given = known.get(name) if known else None
            scores = model.predict_score(X) if given is None else given
            out[name] = np.asarray(scores, dtype=np.float64)
        if self.lifetime is not None:
            names = self.builder.feature_names_
            out[LTV_SCORE] = self.lifetime.predict(X, names, out)
        else:
            out[LTV_SCORE] = out[WINDOW_VALUE_SCORE]
        return out

    @property
    def trained_scores(self) -> tuple[str, ...]:
        """The score columns this bundle's models provide (the others are always NaN)."""
        have = {SCORE_NAMES[role] for role in self.models}
        if "value" in self.models:
            have.add(LTV_SCORE)
        return tuple(name for name in SCORE_COLUMNS if name in have)

    def uplift_matrix(
        self, X: np.ndarray, outcomes: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Predicted uplift per outcome with an uplift learner (or of `outcomes` only): (n, k)
        with columns in the catalog's action order; an action the learner never saw exposed gets
        0 (no known effect)."""
        k = len(self.config.catalog.ids)
        out = {}
        for outcome in self.uplift if outcomes is None else outcomes:
            learner = self.uplift[outcome]
            matrix = np.zeros((len(X), k), dtype=np.float64)
            cols, source = self._uplift_columns(outcome, learner)
            if cols:
                matrix[:, cols] = learner.predict(X)[:, source]
            out[outcome] = matrix
        return out

    def uplift_of_learners(
        self, X: np.ndarray, outcome: str, names: Sequence[str]
    ) -> tuple[list[int], np.ndarray]:
        """The outcome's uplift of the actions its named learners predict (a SelectedUplift's),
        as `uplift_matrix` gives them: (catalog positions, (n, len(positions)))."""
        model = self.uplift[outcome]
        assert isinstance(model, SelectedUplift)
        columns, values = model.predict_learners(X, names)
        cols, source = self._uplift_columns(outcome, model)
        catalog = dict(zip(source, cols, strict=True))  # the model's column -> catalog position
        known = [(catalog[c], k) for k, c in enumerate(columns) if c in catalog]
        return [j for j, _ in known], values[:, [k for _, k in known]]

    def _uplift_columns(self, outcome: str, learner: UpliftModel) -> tuple[list[int], list[int]]:
        """(catalog positions, the learner's columns) of the actions the outcome's learner knows;
        found once per learner, since a one-row decision pays for every step of this."""
        cached = self._columns.get(outcome)
        if cached is None or cached[0] is not learner:
            ids = self.config.catalog.ids
            known = [(j, learner.actions_.index(a)) for j, a in enumerate(ids)
                     if a in learner.actions_]  # fmt: skip
            cols, source = [j for j, _ in known], [c for _, c in known]
            cached = self._columns[outcome] = (learner, cols, source)
        return cached[1], cached[2]

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

    def fit_reference(self, features: pd.DataFrame) -> Reference:
        """The drift reference of FeatureBuilder rows (training keeps its latest snapshot's): their
        features' and trained scores' distributions, in `config.drift.bins` quantile bins."""
        X = to_matrix(self.prepare(features), self.builder.feature_names_)
        scores = self.score_matrix(X)
        trained = {name: scores[name] for name in self.trained_scores}
        categories = {name: len(values) for name, values in self._categories.items()}
        names = self.builder.feature_names_
        return fit_reference(X, names, trained, categories, self.config.drift.bins)

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
        text = self.builder.text_model_
        if text is not None and not isinstance(text, TextModel):  # checked before any write
            kind = type(text).__name__
            raise NextbestError(f"the bundle saves only the final text model, not a {kind}")
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
        if text is not None:
            (folder / "text").mkdir()
            text.save(folder / "text")
        if self.lifetime is not None:
            _write_json(folder / "lifetime.json", self.lifetime.to_dict())
        if self.reference is not None:
            _write_json(folder / "reference.json", self.reference.to_dict())
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
            text = (
                TextModel.load(folder / "text") if (folder / "text" / TEXT_JSON).is_file() else None
            )
            builder = FeatureBuilder.from_dict(_read_json(folder / "builder.json"), text)
            config = Config.model_validate(_read_json(folder / "config.json"))
        except (OSError, KeyError, ValueError) as exc:
            raise NextbestError(f"{folder}: not a readable nextbest bundle ({exc})") from None
        try:
            models = {role: _model_class(role, path).load(folder / "models" / role)
                      for role, path in classes.items()}  # fmt: skip
            uplift = {name: load_uplift(_read_json(folder / "uplift" / f"{name}.json"))
                      for name in config.outcomes if (folder / "uplift" / f"{name}.json").is_file()}  # fmt: skip
            lifetime = (LifetimeValue.from_dict(_read_json(folder / "lifetime.json"))
                        if (folder / "lifetime.json").is_file() else None)  # fmt: skip
            reference = (Reference.from_dict(_read_json(folder / "reference.json"))
                         if (folder / "reference.json").is_file() else None)  # fmt: skip
            metadata = BundleMetadata.model_validate(meta)
        except (OSError, KeyError, ValueError, TypeError, LightGBMError, NextbestError) as exc:
            raise NextbestError(f"{folder}: a model of the bundle is unreadable ({exc})") from None
        if metadata.format != FORMAT:
            raise NextbestError(f"{folder}: bundle format {metadata.format} is not {FORMAT}")
        if metadata.feature_version != builder.version:
            raise NextbestError(f"{folder}: metadata and builder.json disagree on the features")
        bundle = cls(builder, config, models, metadata, uplift, lifetime, reference)
        bundle.metadata = metadata  # as saved (nextbest_version of the training code)
        bundle.version = metadata.registry_version or None  # an exported bundle keeps its version
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
    path = LEGACY_CLASSES.get(path, path)
    if MODEL_CLASSES.get(role) != path:
        raise NextbestError(f"bundle names model class {path!r} for role {role!r}: not allowed")
    module, name = path.rsplit(".", 1)
    model_class: type[ScoreModel] = getattr(importlib.import_module(module), name)
    return model_class


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True, allow_nan=True), encoding="utf-8")


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def package_version(package: str) -> str:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"
