"""`ltv` over a lifetime horizon, trained end to end on the simulator and judged by its truth."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from training.config import DEMO_CONFIG
from training.data.contract import open_dataset
from training.evaluation.metrics import normalized_gini, pearson, spearman
from training.evaluation.scores import evaluate_scores, lifetime_rows
from training.pipelines.lifetime import BLEND_WEIGHTS, choose_weight
from training.pipelines.train import train
from training.scores.lifetime import METHODS

LIFETIME_KEYS = ("pearson", "spearman", "normalized_gini")
END = date(2026, 11, 2)  # the end of the simulated data: value_12m is the next 12 months from here


def lifetime_config(folder: Path, months: int = 12) -> Path:
    config = yaml.safe_load(DEMO_CONFIG.read_text())
    config["objective"] |= {"lifetime_months": months, "discount_rate": 0.0}
    shutil.copy(DEMO_CONFIG.with_name("actions.yaml"), folder / "actions.yaml")
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.mark.parametrize("truth", ["repeat", "window"])
def test_the_blend_weight_leans_on_the_model_that_predicts(truth: str) -> None:
    """Of two component predictions, one tracks the realised revenue and the other is mostly
    noise: the weight goes to the one that predicts, and every weight's figures come back."""
    rng = np.random.default_rng(3)
    value = rng.gamma(0.6, 80.0, size=3000)
    y = value * rng.lognormal(0.0, 0.3, size=3000)
    good, noise = value, rng.gamma(0.6, 80.0, size=3000) + 0.2 * value
    repeat, window = (good, noise) if truth == "repeat" else (noise, good)
    weight, figures = choose_weight(y, repeat, window)
    assert weight == (max(BLEND_WEIGHTS) if truth == "repeat" else min(BLEND_WEIGHTS))
    assert set(figures) == set(BLEND_WEIGHTS)
    leaning = figures[weight]["pearson"]
    assert all(leaning >= q["pearson"] for q in figures.values())


@pytest.mark.slow
def test_lifetime_ltv_beats_the_scaled_window_on_the_truth(
    small_world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.registry.mlflow_models import load_bundle

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    result = train(small_world, lifetime_config(tmp_path))
    assert result.lifetime in METHODS
    bundle = load_bundle(result.version)
    assert bundle.lifetime is not None and bundle.lifetime.method == result.lifetime
    assert set(bundle.lifetime.selection) >= {
        "survival",
        "repeat_purchase",
        "blend",
        "window_repeat",
        "window_scaled",
    }
    # what the report shows: the chosen method beside the scaled window, judged at training
    rows = {r["metric"]: r for r in lifetime_rows(result.lifetime, bundle.lifetime.selection)}
    assert rows["normalized_gini"]["model"] > rows["normalized_gini"]["baseline"]

    # the report's deciles: held-out customers' ltv against the revenue they then brought
    with open_dataset(small_world).connect() as con:
        judged = evaluate_scores(con, bundle)
    deciles = judged.lifetime_deciles
    assert deciles is not None and judged.lifetime_days >= 90
    assert deciles["cum_capture"].iloc[-1] == pytest.approx(1.0)
    assert deciles["cum_capture"].iloc[0] > 0.15, deciles  # the top tenth: 1.5x its share
    assert deciles["mean_y"].iloc[0] > 3 * deciles["mean_y"].iloc[-1]
    assert deciles["mean_pred"].iloc[0] == pytest.approx(deciles["mean_y"].iloc[0], rel=0.35)
    assert {"lifetime_gain", "lifetime_calibration"} <= set(judged.figures)

    run = mlflow.search_runs(experiment_names=["nextbest"], output_format="list")[-1]
    assert run.data.params["lifetime.method"] == result.lifetime
    assert "lifetime.survival.spearman" in run.data.metrics

    # the blend's weight: judged on the latest complete snapshot (2026-08-03, its label window
    # and a day), not on the earliest the methods are judged on; every weight logged
    selection = bundle.lifetime.selection
    weighed = {w: selection[f"blend_w{w:g}"] for w in BLEND_WEIGHTS}
    assert all(q["judged_days"] == 91 for q in weighed.values())
    assert selection["blend"]["judged_days"] > 300  # the earliest, 2025-11-03
    assert all(q["judged_customers"] > 1000 for q in weighed.values())
    best = max(weighed, key=lambda w: np.mean([weighed[w][k] for k in LIFETIME_KEYS]))
    assert selection["blend"]["weight"] == best
    assert run.data.metrics["lifetime.blend_w0.75.pearson"] == weighed[0.75]["pearson"]

    truth = pd.read_parquet(
        small_world.with_name(small_world.name + "_truth") / "customers_truth.parquet"
    )
    truth = truth[pd.to_datetime(truth.as_of) == pd.Timestamp(END)]
    with open_dataset(small_world).connect() as con:
        features = bundle.builder.transform(con, as_of=END)
    scores = bundle.score_frame(features).set_index("customer_id").loc[truth.customer_id]
    y = truth.value_12m.to_numpy()
    ours, scaled = scores.ltv.to_numpy(), scores.window_value.to_numpy() * 365.25 / 90
    for metric in (pearson, spearman, normalized_gini):
        assert metric(y, ours) > metric(y, scaled), metric.__name__
    assert ours.mean() == pytest.approx(y.mean(), rel=0.15)
    assert np.all(ours >= scores.window_value.to_numpy() * 0.99)  # a year holds the quarter
