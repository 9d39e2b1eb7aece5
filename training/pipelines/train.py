"""`nextbest train`: snapshots -> one model per score -> MLflow runs -> one registered bundle.

Orchestration only: every step lives in its own module. Scores whose outcome the data cannot
support (no such events, too few labels) are skipped with the reason, and the others still train;
a randomized test with no role at all (one action, one conversion outcome) trains uplift alone.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.config import ROLES, Config, OutcomeSpec, load_config
from training.data.contract import open_dataset, validate_dataset
from training.data.snapshots import (
    DataSpan,
    TrainingSet,
    build_snapshots,
    censoring_note,
    data_span,
    resolve_as_of,
    split_for,
)
from training.data.texts import fit_texts
from training.errors import NextbestError
from training.evaluation.score_metrics import score_figures, score_metrics
from training.features.definition import FeatureBuilder
from training.pipelines.lifetime import describe, fit_lifetime
from training.pipelines.validate import check_rule_names, check_rule_scores
from training.registry.bundle import Bundle
from training.registry.mlflow_models import log_bundle
from training.registry.tracking import (
    configure_tracking,
    log_score_run,
    log_uplift_run,
    training_run,
)
from training.scores.base import LightGBMScoreModel, ScoreModel, fit_on
from training.scores.churn import ChurnModel
from training.scores.ltv import LtvModel
from training.scores.satisfaction import SatisfactionModel
from training.text.model import CrossFittedText
from training.uplift.fit import train_uplift

MIN_LABELS = 200  # fewer labelled rows than this cannot train and test a model honestly
MIN_POSITIVES = 20  # for binary outcomes: fewer positives (or negatives) than this either

Step = Callable[[str], None]


@dataclass
class TrainResult:
    version: str
    as_of: list[str]
    rows: int
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    uplift: dict[str, str] = field(default_factory=dict)  # outcome -> chosen learner class
    uplift_skipped: dict[str, str] = field(default_factory=dict)  # outcome -> why no uplift
    text: str = ""  # the text model fitted, or why there is none
    lifetime: str = ""  # the lifetime method `ltv` uses ("": ltv is the label-window revenue)


def make_model(role: str, spec: OutcomeSpec) -> LightGBMScoreModel:
    """The estimator for a score, parameterised by its outcome definition."""
    if role == "churn":
        return ChurnModel()
    if role == "satisfaction":
        return SatisfactionModel(survey_type=spec.event_types[0])
    return LtvModel(value_event_types=tuple(spec.event_types), horizon_days=spec.horizon_days)


def skip_reason(
    frame: pd.DataFrame,
    name: str,
    spec: OutcomeSpec,
    present: set[str],
    censoring: str | None = None,
) -> str | None:
    """Why a score cannot be trained on this data, or None if it can; `censoring` (from
    snapshots.censoring_note) says why labels are missing when their windows were censored."""
    if not present & set(spec.event_types):
        return f"no {'/'.join(spec.event_types)} events in the data"
    labels = frame[name].dropna()
    if len(labels) < MIN_LABELS:
        why = f": {censoring}" if censoring else ""
        return f"only {len(labels)} labelled rows for outcome '{name}' (need {MIN_LABELS}){why}"
    if spec.kind in ("any", "none"):
        positives = int(labels.sum())
        if min(positives, len(labels) - positives) < MIN_POSITIVES:
            return f"outcome '{name}' has {positives} positives in {len(labels)} rows"
    return None


def priced_outcomes(config: Config, trained_roles: Collection[str]) -> list[str]:
    """The outcomes whose uplift the objective turns into money (serving.value.net_value): the
    value outcome, the churn outcome when avoided churn is worth a *trained* LTV score, the
    satisfaction outcome at a non-zero weight, and the outcomes given a value per unit."""
    objective, priced = config.objective, []
    for name, spec in config.outcomes.items():
        if (
            name == objective.value_outcome
            or name in objective.outcome_values
            or (spec.role == "churn" and objective.retention_value == "ltv"
                and "value" in trained_roles)
            or (spec.role == "satisfaction" and objective.satisfaction_weight != 0)
        ):  # fmt: skip
            priced.append(name)
    return priced


def check_actions_valued(
    config: Config, trained_roles: Collection[str], uplift: dict[str, str], skipped: dict[str, str]
) -> None:
    """Refuse a bundle that has actions but cannot put money on any of them (every outcome the
    objective prices lacks an uplift model): batch scoring would silently recommend nothing.
    `uplift` maps outcome -> learner; `skipped` outcome -> why it has none."""
    if not config.catalog.actions:
        return
    priced = priced_outcomes(config, trained_roles)
    if set(priced) & set(uplift):
        return
    if not priced:
        why = "the objective prices no outcome (objective.value_outcome, retention_value, ...)"
    else:
        why = "; ".join(f"{o}: {skipped.get(o, 'no uplift model')}" for o in priced)
    raise NextbestError(
        f"no action can be valued in money, so every recommendation would be empty: {why}. "
        "Fix the data or config, or register a bundle of scores alone with --scores-only"
    )


def train(
    data: Path,
    config_path: Path | None = None,
    step: Step | None = None,
    scores_only: bool = False,
) -> TrainResult:
    """Train every score the data supports and register one bundle version in MLflow.

    Raises NextbestError when the catalog has actions but no uplift model can value any of them,
    unless `scores_only` (a bundle of scores alone, asked for explicitly)."""
    say = step or (lambda _msg: None)
    config = load_config(config_path)
    say("validating the data set")
    validate_dataset(data, known_actions=config.catalog.ids)
    configure_tracking()
    ds = open_dataset(data)
    with ds.connect() as con:
        builder = FeatureBuilder(config.features).fit(con)
        span = data_span(con, config)
        dates = resolve_as_of(config, span)
        texts = fit_texts(con, config, dates)
        text_note = (
            texts
            if isinstance(texts, str)
            else (
                f"text: {texts[0].n_topics} topics, cross-fitted in {config.text.folds} folds by customer"
            )
        )
        say(text_note)
        crossed = None if isinstance(texts, str) else texts[1]
        builder.with_text(None if isinstance(texts, str) else texts[0])
        check_rule_names(config, builder.feature_names_)
        say(f"building snapshots as of {', '.join(map(str, dates))}")
        with _text_scored_by(builder, crossed):
            frame = build_snapshots(con, builder, config, dates)
        present = {t for (t,) in con.execute("SELECT DISTINCT event_type FROM events").fetchall()}
    result = TrainResult(
        version="", as_of=[d.isoformat() for d in dates], rows=len(frame), text=text_note
    )
    models: dict[str, ScoreModel] = {}
    with training_run(ds, builder, config, config_path, dates) as run:
        for role in ROLES:
            trained = _train_role(role, config, frame, builder, present, span, result, say)
            if trained is not None:
                model, data_set = trained
                log_score_run(model, data_set, result.metrics[role], score_figures(model, data_set))
                models[role] = model
        check_rule_scores(config, result.skipped)
        lifetime = None
        if config.objective.lifetime_months is not None and "value" in models:
            say(f"choosing the lifetime value model ({config.objective.lifetime_months} months)")
            with ds.connect() as con:
                lifetime = fit_lifetime(con, frame, builder, config, models, span.observed_until)
        if lifetime is not None:
            log_lifetime(describe(lifetime))
            result.lifetime = lifetime.method
        say("training uplift models on the exposures")
        with ds.connect() as con, _text_scored_by(builder, crossed):
            uplift = train_uplift(con, builder, config)
        if not models and uplift is None:
            why = "; ".join(f"{r}: {w}" for r, w in result.skipped.items())
            raise NextbestError(
                f"nothing to train: {why}; and no exposures with actions for uplift"
            )
        if uplift is not None:
            log_uplift_run(uplift)
            result.uplift = {o: type(m).__name__ for o, m in uplift.learners.items()}
            result.uplift_skipped = dict(uplift.skipped)
        if scores_only:
            uplift = None
        else:
            check_actions_valued(
                config, models, result.uplift, uplift.skipped if uplift is not None else {}
            )
        say("registering the bundle")
        bundle = Bundle(
            builder=builder,
            config=config,
            models=models,
            metadata=_metadata(result, builder, config) | {"data": run.fingerprint},
            uplift=uplift.learners if uplift is not None else None,
            lifetime=lifetime,
        )
        if len(frame):
            bundle.reference = bundle.fit_reference(_latest_snapshot(frame))
        result.version = log_bundle(bundle, frame.head(5))
    return result


def _latest_snapshot(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the latest training as-of date: the population batch drift is compared with."""
    return frame[frame["as_of"] == frame["as_of"].max()]


@contextmanager
def _text_scored_by(builder: FeatureBuilder, crossed: CrossFittedText | None) -> Iterator[None]:
    """Training rows score texts out of fold (cross-fitted by customer), so no score model sees
    a text score fitted on its own label; the bundle keeps the model fitted on every label."""
    final = builder.text_model_
    if crossed is None:
        yield
        return
    builder.with_text(crossed)
    try:
        yield
    finally:
        builder.with_text(final)


def _train_role(
    role: str,
    config: Config,
    frame: pd.DataFrame,
    builder: FeatureBuilder,
    present: set[str],
    span: DataSpan,
    result: TrainResult,
    say: Step,
) -> tuple[ScoreModel, TrainingSet] | None:
    found = config.outcome_for_role(role)  # type: ignore[arg-type]
    if found is None:
        result.skipped[role] = "no outcome has this role in the config"
        return None
    name, spec = found
    configured = config.snapshots.observed_until is not None
    censoring = censoring_note(frame["as_of"], spec, span, configured) if len(frame) else None
    reason = skip_reason(frame, name, spec, present, censoring)
    if reason is not None:
        result.skipped[role] = reason
        return None
    say(f"training {role} on outcome '{name}'")
    data_set = split_for(frame, name, builder.feature_names_, spec.horizon_days)
    model = fit_on(make_model(role, spec), data_set)
    result.metrics[role] = score_metrics(model, data_set)
    return model, data_set


def log_lifetime(described: dict[str, Any]) -> None:
    """The lifetime choice on the training run: the method as params, each method's held-out
    figures as `lifetime.<method>.<metric>` metrics."""
    import mlflow

    mlflow.log_params(described["params"])
    metrics = {k: float(v) for k, v in described["metrics"].items() if np.isfinite(v)}
    mlflow.log_metrics(metrics)


def _metadata(result: TrainResult, builder: FeatureBuilder, config: Config) -> dict[str, object]:
    return {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "as_of": result.as_of,
        "rows": result.rows,
        "metrics": result.metrics,
        "skipped": result.skipped,
        "feature_version": builder.version,
        "catalog_version": config.catalog.version,
    }
