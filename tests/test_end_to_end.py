"""The data scientist's loop through the real command line on a real MLflow store:
train -> promote -> score -> evaluate -> retrain and promote (the notebooks: test_notebook_*.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

NEXTBEST = str(Path(sys.executable).with_name("nextbest"))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A project directory with its own MLflow store (sqlite + mlruns) and the env to use it."""
    root = tmp_path_factory.mktemp("project")
    return os.environ | {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "ROOT": str(root),
    }


def nextbest(env: dict[str, str], *args: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [NEXTBEST, *map(str, args)],
        env=env,
        cwd=env["ROOT"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_train_promote_score_evaluate_and_retrain(
    small_world: Path, project: dict[str, str]
) -> None:
    trained = nextbest(project, "train", "--data", small_world)
    assert "registered nextbest version 1" in trained.stdout
    promoted = nextbest(project, "promote")
    assert "version 1 becomes champion" in promoted.stdout

    out, kept = Path(project["ROOT"]) / "score", Path(project["ROOT"]) / "text_scores"
    nextbest(project, "score", "--data", small_world, "--as-of", "2026-11-02", "--out", out,
             "--text-cache", kept)  # fmt: skip
    assert (kept / "manifest.json").is_file()  # the champion's text scores, kept for tomorrow
    scores = pd.read_parquet(out / "scores.parquet")
    assert list(scores.columns) == [
        "customer_id",
        "churn_probability",
        "satisfaction",
        "ltv",
        "window_value",
        "model_version",
        "as_of",
        "control_group",
    ]
    assert scores.customer_id.is_unique and (scores.model_version == "1").all()
    assert scores.churn_probability.between(0, 1).all() and (scores.ltv >= 0).all()
    actions = pd.read_parquet(out / "actions.parquet")
    assert list(actions.columns) == [
        "customer_id",
        "action_id",
        "rank",
        "expected_value",
        "cost",
        "uplift_churn",
        "uplift_satisfaction",
        "uplift_value",
        "uplift_visit",
        "selected",
    ]
    assert set(actions.customer_id) <= set(scores.customer_id)
    assert (actions[actions["rank"] == 1].expected_value > 0).all()

    report = Path(project["ROOT"]) / "report"
    evaluated = nextbest(project, "evaluate", "--data", small_world, "--out", report).stdout
    assert re.search(r"^value +normalized_gini +0\.\d{4} +\(baseline ", evaluated, re.MULTILINE)
    assert re.search(r"^learned +DR +[-+]\d", evaluated, re.MULTILINE)
    assert re.search(r"^verdict: (the learned policy|not distinguishable)", evaluated, re.MULTILINE)
    assert (report / "report.html").is_file() and (report / "evaluation.json").is_file()
    assert "same model without the text features" in (report / "report.html").read_text()

    # a second, identical training is not worse: promotion moves the champion to version 2
    nextbest(project, "train", "--data", small_world)
    assert "champion" in nextbest(project, "promote").stdout
