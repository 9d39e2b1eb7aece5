"""`nextbest evaluate` on a bundle without uplift models: the score models judged on held-out data."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.training.pipelines.test_train import static_only_churn_set
from training.pipelines.evaluate import evaluate
from training.pipelines.train import train


@pytest.mark.slow
def test_a_scores_only_bundle_gets_a_score_report(tmp_path: Path, store: Path) -> None:
    data = static_only_churn_set(tmp_path / "telco_like")
    result = train(data, data / "config.yaml")
    evaluation, scores, path = evaluate(data, result.version, tmp_path / "report")
    assert evaluation is None
    metrics = scores.metrics.set_index("metric")
    # the same held-out customers as training's test: the same AUC, and better than chance
    assert metrics.loc["roc_auc", "model"] == pytest.approx(result.metrics["churn"]["roc_auc"])
    assert metrics.loc["roc_auc", "model"] > 0.7 and metrics.loc["roc_auc", "baseline"] > 0.5
    assert sorted(p.name for p in path.iterdir()) == [
        "evaluation.json",
        "report.html",
        "scores.csv",
    ]
    page = (path / "report.html").read_text()
    assert 'id="scores"' in page and "logistic regression" in page and "data:image/png" in page
    assert 'id="policies"' not in page and 'href="#scores"' in page
    assert pd.read_csv(path / "scores.csv")["role"].unique().tolist() == ["churn"]
    headline = json.loads((path / "evaluation.json").read_text())["headline"]
    assert headline["score.churn.roc_auc"] == pytest.approx(metrics.loc["roc_auc", "model"])
    [run] = mlflow.search_runs(
        filter_string="attributes.run_name = 'evaluate'", output_format="list"
    )
    assert run.data.metrics["score.churn.roc_auc"] == pytest.approx(headline["score.churn.roc_auc"])
