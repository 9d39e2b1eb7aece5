"""`nextbest evaluate` on a bundle without uplift models: the score models judged on held-out data."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
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


def test_the_twin_without_text_loses_what_the_text_carried() -> None:
    from training.data.snapshots import TrainingSet
    from training.evaluation.report import WITHOUT_TEXT, score_section
    from training.evaluation.score_metrics import score_metrics
    from training.evaluation.scores import ScoreEvaluation, metric_rows, without_text_metrics
    from training.scores.base import fit_on
    from training.scores.churn import ChurnModel

    rng = np.random.default_rng(0)
    n = 6000
    tone, tenure = rng.normal(size=n), rng.normal(size=n)  # churn follows the tone of the texts
    y = (rng.random(n) < 1 / (1 + np.exp(-(2.0 * -tone + 0.5 * tenure)))).astype(float)
    X = np.column_stack([tenure, tone]).astype(np.float32)
    cut = [slice(0, 4000), slice(4000, 5000), slice(5000, n)]
    data = TrainingSet(
        ["tenure", "text_score_mean_90d"], [], *(a for s in cut for a in (X[s], y[s]))
    )
    model = fit_on(ChurnModel(), data)
    with_text = score_metrics(model, data)
    twin = without_text_metrics(model, data, ["text_score_mean_90d"])
    assert with_text["roc_auc"] > 0.8 and twin["roc_auc"] < with_text["roc_auc"] - 0.15
    assert twin["roc_auc"] > 0.55  # the twin still reads tenure
    assert model.feature_names_ == ["tenure", "text_score_mean_90d"]  # the bundle's model untouched
    rows = pd.DataFrame(metric_rows("churn", "churn", with_text, twin))
    auc = rows.set_index("metric").loc["roc_auc"]
    assert auc["model"] == with_text["roc_auc"] and auc["without_text"] == twin["roc_auc"]
    page = score_section(ScoreEvaluation("1", [], rows))
    assert WITHOUT_TEXT in page and f"{twin['roc_auc']:.3f}"[:4] in page
    plain = pd.DataFrame(metric_rows("churn", "churn", with_text))
    assert plain["without_text"].isna().all()
    assert WITHOUT_TEXT not in score_section(ScoreEvaluation("1", [], plain))
