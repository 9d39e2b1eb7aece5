"""Held-out quality of a bundle's score models (churn, satisfaction, LTV) for `nextbest evaluate`.

The snapshots are rebuilt with the bundle's own feature builder at its training dates, and every
model is judged on its test slice: the held-out customers of the latest snapshot, the very rows the
training tested on (`training.data.snapshots.split_for` splits by a stable hash of the customer), beside
the baseline each model is compared with in training. A bundle without uplift models (a churn-only
data set such as IBM Telco) gets this section alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import duckdb
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from training.data.snapshots import build_snapshots, split_for
from training.evaluation.score_metrics import BASELINE, score_figures, score_metrics
from training.registry.bundle import Bundle

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
    metrics: pd.DataFrame  # role, outcome, metric, model, baseline
    figures: dict[str, Figure] = field(default_factory=dict)  # "<role>_<figure>"

    def headline(self) -> dict[str, float]:
        """Flat metrics for MLflow: `score.<role>.<metric>`."""
        return {
            f"score.{r['role']}.{r['metric']}": float(r["model"])
            for r in self.metrics.to_dict("records")
            if np.isfinite(r["model"])
        }


def metric_rows(role: str, outcome: str, metrics: dict[str, float]) -> list[dict[str, object]]:
    """One row per metric with the baseline's value beside the model's (NaN without one)."""
    return [
        {"role": role, "outcome": outcome, "metric": name, "model": value,
         "baseline": metrics.get(BASELINE + name, np.nan)}
        for name, value in metrics.items()
        if not name.startswith(BASELINE)
    ]  # fmt: skip


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
        rows += metric_rows(role, outcome, score_metrics(model, data))
        figures |= {f"{role}_{name}": fig for name, fig in score_figures(model, data).items()}
    if bundle.lifetime is not None:
        rows += lifetime_rows(bundle.lifetime.method, bundle.lifetime.selection)
    columns = ["role", "outcome", "metric", "model", "baseline"]
    return ScoreEvaluation(
        bundle.version or "",
        [d.isoformat() for d in dates],
        pd.DataFrame(rows, columns=columns),
        figures,
    )
