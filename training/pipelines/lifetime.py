"""Fit `ltv` over `objective.lifetime_months`: each lifetime method judged on held-out customers
against the revenue they then brought, the best kept, the comparison logged to MLflow.

The methods are judged on the earliest training as-of date (the one with the longest observed
future); the judged horizon is the lifetime, or as much of it as the data has observed after that
date. Customers of the held-out split (`holdout_mask`) are judged; the repeat-purchase model is
fitted on the others there, then refitted on every customer of the latest snapshot for serving.

The blend's weight is chosen on the latest snapshot whose label window is observed in full, on the
customers outside the held-out split (no score model was fitted on that snapshot's rows), with a
repeat-purchase model fitted on them as serving fits it: their purchase histories are as long as
those scored after training, where the earliest snapshot's are the shortest (a retailer's young
customers with a few weeks of history, on whom BG/NBD alone says little and the weight would lean
on the window model whatever the model is worth later).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from training.config import WINDOW_VALUE_SCORE, Config, OutcomeSpec
from training.data.lifetime import LABEL, judging_rows
from training.data.snapshots import holdout_mask
from training.errors import NextbestError
from training.evaluation.metrics import normalized_gini, pearson, spearman
from training.features.definition import FeatureBuilder, to_matrix
from training.scores.base import ScoreModel
from training.scores.lifetime import (
    METHODS,
    WITH_REPEAT,
    LifetimeValue,
    Method,
    RepeatPurchaseModel,
    purchase_summary,
)

BLEND_WEIGHTS = (0.25, 0.5, 0.75)
REFERENCE = "window_scaled"  # in `selection`: the scaled window revenue, judged, never chosen


def fit_lifetime(
    con: duckdb.DuckDBPyConnection,
    frame: pd.DataFrame,
    builder: FeatureBuilder,
    config: Config,
    models: Mapping[str, ScoreModel],
    observed_until: datetime | None,
) -> LifetimeValue | None:
    """The lifetime model the held-out revenue favours, or None without a lifetime horizon (or
    without a trained value score, which every method needs)."""
    objective = config.objective
    value = config.outcome_for_role("value")
    if objective.lifetime_months is None or "value" not in models or value is None:
        return None
    names = builder.feature_names_
    windows = config.features.windows
    window = 365 if 365 in windows or not windows else max(windows)
    churn = config.outcome_for_role("churn")
    judged = judging_rows(con, frame, value[1], objective.lifetime_months, observed_until)
    X = to_matrix(judged, names)
    held = holdout_mask(judged["customer_id"])
    days = float(judged.attrs["days"])
    scores = _scores(models, X)
    candidates: dict[Method, LifetimeValue] = {}
    if "churn" in models and churn is not None:
        candidates["survival"] = _lifetime("survival", config, churn[1], value[1], window)
    y = judged[LABEL].to_numpy(dtype=np.float64)
    if set(value[1].event_types) == {config.features.purchase_event_type}:
        try:
            summary = purchase_summary(X, names, window)
            repeat = RepeatPurchaseModel(horizon=days, discount_rate=0.0).fit(summary[~held])
        except NextbestError:
            repeat = None  # too few purchases to fit: the other method (if any) stands
        if repeat is not None:
            base = churn[1] if churn is not None and "churn" in models else None
            for method in WITH_REPEAT:
                candidates[method] = _lifetime(method, config, base, value[1], window, repeat)
            weighing = _weigh_blend(con, frame, candidates["blend"], config, models,
                                    names, observed_until)  # fmt: skip
            candidates["blend"].weight = weighing[0]
    if not candidates:
        return None
    quality: dict[str, dict[str, float]] = {
        method: _quality(y[held], model.predict(X[held], names, _rows(scores, held), days))
        for method, model in candidates.items()
    }
    best = max(candidates, key=lambda m: (_score(quality[m]), -METHODS.index(m)))
    chosen = candidates[best]
    chosen.discount_rate = objective.discount_rate  # judged undiscounted, against realised money
    if best in WITH_REPEAT:
        latest = frame[frame["as_of"] == frame["as_of"].max()]
        summary = purchase_summary(to_matrix(latest, names), names, window)
        chosen.repeat = RepeatPurchaseModel(
            horizon=chosen.horizon, discount_rate=objective.discount_rate
        ).fit(summary)
    # the label-window revenue scaled to the judged horizon: the reference every method must beat
    scaled = scores[WINDOW_VALUE_SCORE][held] * days / value[1].horizon_days
    quality[REFERENCE] = _quality(y[held], scaled)
    chosen.selection = {m: q | {"judged_days": days, "judged_customers": float(held.sum())}
                        for m, q in quality.items()}  # fmt: skip
    if "blend" in candidates:
        chosen.selection["blend"]["weight"] = candidates["blend"].weight
        chosen.selection |= weighing[1]
    return chosen


def _weigh_blend(
    con: duckdb.DuckDBPyConnection,
    frame: pd.DataFrame,
    blend: LifetimeValue,
    config: Config,
    models: Mapping[str, ScoreModel],
    names: list[str],
    observed_until: datetime | None,
) -> tuple[float, dict[str, dict[str, float]]]:
    """The blend weight judged on the latest complete snapshot's customers outside the held-out
    split, with a repeat-purchase model fitted on them (the earliest snapshot's when that fit
    fails), and each weight's figures there (`blend_w<weight>`)."""
    value = config.outcome_for_role("value")
    assert value is not None and config.objective.lifetime_months is not None
    latest = judging_rows(con, frame, value[1], config.objective.lifetime_months, observed_until,
                          snapshot="latest")  # fmt: skip
    days = float(latest.attrs["days"])
    rows = latest[~holdout_mask(latest["customer_id"])].reset_index(drop=True)
    X = to_matrix(rows, names)
    repeat: RepeatPurchaseModel | None
    try:
        summary = purchase_summary(X, names, blend.window)
        repeat = RepeatPurchaseModel(horizon=days, discount_rate=0.0).fit(summary)
    except NextbestError:
        repeat = blend.repeat
    judged = LifetimeValue("blend", blend.lifetime_months, 0.0, blend.churn_days,
                           blend.value_days, blend.window, repeat)  # fmt: skip
    scores = _scores(models, X)
    repeat_part, window_part = (
        _with_weight(judged, w).predict(X, names, scores, days) for w in (1.0, 0.0)
    )
    y = rows[LABEL].to_numpy(dtype=np.float64)
    weight, figures = choose_weight(y, repeat_part, window_part)
    judged_on = {"judged_days": days, "judged_customers": float(len(rows))}
    return weight, {f"blend_w{w:g}": q | judged_on for w, q in figures.items()}


def choose_weight(
    y: np.ndarray, repeat: np.ndarray, window: np.ndarray
) -> tuple[float, dict[float, dict[str, float]]]:
    """The weight of BLEND_WEIGHTS whose blend `w x repeat + (1 - w) x window` predicts the
    realised revenue `y` best (mean of Pearson, Spearman and normalized Gini; ties: the lower
    weight), and every weight's figures."""
    figures = {w: _quality(y, w * repeat + (1.0 - w) * window) for w in BLEND_WEIGHTS}
    best = max(BLEND_WEIGHTS, key=lambda w: (_score(figures[w]), -w))
    return best, figures


def _lifetime(
    method: Method,
    config: Config,
    churn: OutcomeSpec | None,
    value: OutcomeSpec,
    window: int,
    repeat: RepeatPurchaseModel | None = None,
) -> LifetimeValue:
    objective = config.objective
    assert objective.lifetime_months is not None
    return LifetimeValue(
        method=method,
        lifetime_months=objective.lifetime_months,
        discount_rate=0.0,
        churn_days=churn.horizon_days if churn is not None else None,
        value_days=value.horizon_days,
        window=window,
        repeat=repeat,
    )


def _scores(models: Mapping[str, ScoreModel], X: np.ndarray) -> dict[str, np.ndarray]:
    out = {WINDOW_VALUE_SCORE: models["value"].predict_score(X)}
    if "churn" in models:
        out["churn_probability"] = models["churn"].predict_score(X)
    return out


def _rows(scores: Mapping[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[mask] for name, values in scores.items()}


def _score(quality: Mapping[str, float]) -> float:
    """One number to choose by: the mean of Pearson (the amounts), Spearman (the order) and
    normalized Gini (the order weighted by the amounts); NaN counts as 0."""
    return float(
        np.mean([np.nan_to_num(quality[k]) for k in ("pearson", "spearman", "normalized_gini")])
    )


def _with_weight(model: LifetimeValue, weight: float) -> LifetimeValue:
    model.weight = weight
    return model


def _quality(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {
        "normalized_gini": normalized_gini(y, pred),
        "spearman": spearman(y, pred),
        "pearson": pearson(y, pred),
        "mean_ratio": float(np.mean(pred) / np.mean(y)) if np.mean(y) > 0 else float("nan"),
    }


def describe(model: LifetimeValue) -> dict[str, Any]:
    """What a run logs: the chosen method as params, each method's held-out figures as metrics."""
    params = {
        "lifetime.method": model.method,
        "lifetime.months": model.lifetime_months,
        "lifetime.discount_rate": model.discount_rate,
    }
    metrics = {f"lifetime.{m}.{k}": v for m, q in model.selection.items() for k, v in q.items()}
    return {"params": params, "metrics": metrics}
