"""Held-out quality of a bundle's score models (churn, satisfaction, LTV) for `nextbest evaluate`.

The snapshots are rebuilt with the bundle's own feature builder at its training dates, and every
model is judged on its test slice: the held-out customers of the latest snapshot, the very rows the
training tested on (`training.data.snapshots.split_for` splits by a stable hash of the customer), beside
the baseline each model is compared with in training, and, with a text model, a twin fitted on the
same fit rows without the text features (what the text adds). A bundle without uplift models (a
churn-only data set such as IBM Telco) gets this section alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.base import clone

from training.data.lifetime import LABEL, judging_rows
from training.data.snapshots import TrainingSet, build_snapshots, data_span, holdout_mask, split_for
from training.errors import NextbestError
from training.evaluation import metrics as em
from training.evaluation import plots
from training.evaluation.score_metrics import BASELINE, score_figures, score_metrics
from training.features.definition import to_matrix
from training.registry.bundle import Bundle
from training.scores.base import ScoreModel, fit_on
from training.scores.lifetime import LifetimeValue

#: the baseline each score is compared with, in words (`score_metrics` computes it)
BASELINES = {
    "churn": "logistic regression",
    "satisfaction": "the last survey answer carried forward",
    "value": "the customer's historical average",
    "lifetime": "label-window revenue scaled to the horizon",
}
LIFETIME_METRICS = ("normalized_gini", "spearman", "pearson", "mean_ratio")


@dataclass
class ScoreEvaluation:
    """Per score: its outcome, metrics beside the baseline's, and the figures of its test slice."""

    model_version: str
    as_of: list[str]
    metrics: pd.DataFrame  # role, outcome, metric, model, baseline, without_text
    figures: dict[str, Figure] = field(default_factory=dict)  # "<role>_<figure>"
    #: held-out customers by decile of `ltv` (metrics.lift_by_decile) and the days it covers
    lifetime_deciles: pd.DataFrame | None = None
    lifetime_days: int = 0

    def headline(self) -> dict[str, float]:
        """Flat metrics for MLflow: `score.<role>.<metric>`."""
        return {
            f"score.{r['role']}.{r['metric']}": float(r["model"])
            for r in self.metrics.to_dict("records")
            if np.isfinite(r["model"])
        }


def metric_rows(
    role: str,
    outcome: str,
    metrics: dict[str, float],
    without_text: Mapping[str, float] | None = None,
) -> list[dict[str, object]]:
    """One row per metric with the baseline's value and the text-less twin's beside the model's
    (NaN without one)."""
    twin = without_text or {}
    return [
        {"role": role, "outcome": outcome, "metric": name, "model": value,
         "baseline": metrics.get(BASELINE + name, np.nan),
         "without_text": twin.get(name, np.nan) if name != "n_test" else np.nan}
        for name, value in metrics.items()
        if not name.startswith(BASELINE)
    ]  # fmt: skip


def without_text_metrics(
    model: ScoreModel, data: TrainingSet, text_features: list[str]
) -> dict[str, float]:
    """The test metrics of `model`'s twin (same estimator, same fit and validation rows) fitted
    without the text features."""
    plain = data.without(text_features)
    return score_metrics(fit_on(clone(model), plain), plain)


def lifetime_rows(
    method: str, selection: Mapping[str, Mapping[str, float]]
) -> list[dict[str, object]]:
    """The chosen lifetime method's held-out figures at training (`LifetimeValue.selection`)
    beside the label-window revenue scaled to the same horizon; empty when training judged none."""
    chosen, scaled = selection.get(method), selection.get("window_scaled", {})
    if not chosen:
        return []
    days = int(chosen.get("judged_days", 0))
    outcome = f"revenue over the next {days} days, {method}"
    return [
        {"role": "lifetime", "outcome": outcome, "metric": name, "model": chosen[name],
         "baseline": scaled.get(name, np.nan)}
        for name in LIFETIME_METRICS
        if name in chosen
    ]  # fmt: skip


def evaluate_scores(con: duckdb.DuckDBPyConnection, bundle: Bundle) -> ScoreEvaluation:
    """Every score model of `bundle` on its held-out test slice of the data behind `con`."""
    config, builder = bundle.config, bundle.builder
    dates = sorted(bundle.metadata.as_of)
    frame = build_snapshots(con, builder, config, dates) if dates and bundle.models else None
    rows: list[dict[str, object]] = []
    figures: dict[str, Figure] = {}
    for role, model in bundle.models.items():
        found = config.outcome_for_role(role)  # type: ignore[arg-type]
        if found is None or frame is None:
            continue
        outcome, spec = found
        data = split_for(frame, outcome, list(builder.feature_names_), spec.horizon_days)
        if len(data.y_test) == 0:
            continue
        text = builder.text_feature_names_
        twin = without_text_metrics(model, data, text) if text else None
        rows += metric_rows(role, outcome, score_metrics(model, data), twin)
        figures |= {f"{role}_{name}": fig for name, fig in score_figures(model, data).items()}
    deciles, days = None, 0
    if bundle.lifetime is not None:
        rows += lifetime_rows(bundle.lifetime.method, bundle.lifetime.selection)
        judged = realised_lifetime(con, bundle, frame) if frame is not None else None
        if judged is not None:
            y, pred, days = judged
            deciles = em.lift_by_decile(y, pred)
            figures |= lifetime_figures(y, pred)
    columns = ["role", "outcome", "metric", "model", "baseline", "without_text"]
    return ScoreEvaluation(
        bundle.version or "",
        [d.isoformat() for d in dates],
        pd.DataFrame(rows, columns=columns),
        figures,
        deciles,
        days,
    )


def realised_lifetime(
    con: duckdb.DuckDBPyConnection, bundle: Bundle, frame: pd.DataFrame
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(realised revenue, predicted `ltv`, days) of the held-out customers at the earliest
    training date, over the lifetime or as much of it as the data observed (the horizon training
    judged the methods on), undiscounted like the money it is compared with; None when the data
    cannot judge it (no value outcome, too few held-out customers)."""
    value = bundle.config.outcome_for_role("value")
    if bundle.lifetime is None or value is None or "value" not in bundle.models:
        return None
    until = data_span(con, bundle.config).observed_until
    try:
        rows = judging_rows(con, frame, value[1], bundle.lifetime.lifetime_months, until)
    except NextbestError:
        return None
    rows = rows[holdout_mask(rows["customer_id"])].reset_index(drop=True)
    names = list(bundle.builder.feature_names_)
    X = to_matrix(bundle.prepare(rows), names)
    undiscounted = LifetimeValue.from_dict(bundle.lifetime.to_dict() | {"discount_rate": 0.0})
    days = int(rows.attrs["days"])
    pred = undiscounted.predict(X, names, bundle.score_matrix(X), horizon=float(days))
    return rows[LABEL].to_numpy(dtype=np.float64), pred, days


def lifetime_figures(y: np.ndarray, pred: np.ndarray) -> dict[str, Figure]:
    """The gain chart and the calibration by decile of `ltv` against realised revenue."""
    return {
        "lifetime_gain": plots.gain_chart(y, pred),
        "lifetime_calibration": plots.decile_calibration(y, pred),
    }
