"""Promotion: the first bundle becomes champion, a clearly worse one is refused and the alias stays,
`force` moves it, and the comparison rows say why — on a real (temporary) MLflow registry."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import mlflow
import numpy as np
import pytest
from rich.console import Console

from tests.training.registry.test_bundle import Trained, register, train_all
from training.errors import NextbestError
from training.registry.mlflow_models import NO_CHAMPION, load_bundle
from training.registry.promotion import Comparison, compare, promote, promotion_table, render
from training.scores.base import fit_on
from training.scores.churn import ChurnModel


@pytest.fixture(scope="module")
def trained(small_world: Path) -> Trained:
    return train_all(small_world)


@pytest.fixture(scope="module")
def shuffled_churn(trained: Trained) -> ChurnModel:
    """A churn model that learned from shuffled labels: no better than chance on the real test."""
    rng = np.random.default_rng(0)
    data = trained.sets["churn"]
    noise = replace(data, y_fit=rng.permutation(data.y_fit), y_val=rng.permutation(data.y_val))
    return fit_on(ChurnModel(n_estimators=60, learning_rate=0.1, n_jobs=1), noise)


def champion_version() -> str:
    return str(mlflow.MlflowClient().get_model_version_by_alias("nextbest", "champion").version)


def test_first_version_becomes_champion(trained: Trained, store: Path) -> None:
    with pytest.raises(NextbestError, match="no champion yet"):
        load_bundle(None)
    register(trained, trained.bundle())
    result = promote()
    assert (result.candidate, result.champion, result.promoted) == ("1", None, True)
    assert result.rows == ()
    assert champion_version() == "1"
    assert load_bundle(None).version == "1"


def test_worse_candidate_is_refused_then_forced(
    trained: Trained, shuffled_churn: ChurnModel, store: Path
) -> None:
    register(trained, trained.bundle())
    promote()
    worse = trained.bundle({**trained.models, "churn": shuffled_churn})
    assert register(trained, worse) == "2"

    refused = promote()
    assert (refused.candidate, refused.champion) == ("2", "1")
    assert not refused.promoted and not refused.passed
    assert champion_version() == "1"
    rows = {row.role: row for row in refused.rows}
    assert set(rows) == {"churn", "satisfaction", "value"}
    churn = rows["churn"]
    assert churn.metric == "roc_auc" and not churn.ok
    assert churn.champion == trained.metrics["churn"]["roc_auc"]
    assert churn.candidate == worse.metadata.metrics["churn"]["roc_auc"]
    assert churn.delta is not None and churn.delta < -0.05
    assert churn.delta == pytest.approx(churn.candidate - churn.champion)
    assert rows["satisfaction"].ok and rows["satisfaction"].delta == 0.0
    assert rows["value"].ok and not rows["satisfaction"].greater_is_better
    assert "refused" in refused.reason and "churn" in refused.reason

    forced = promote(force=True)
    assert forced.promoted and forced.forced and not forced.passed
    assert champion_version() == "2"
    tags = mlflow.MlflowClient().get_model_version("nextbest", "2").tags
    assert tags["nextbest.replaced"] == "1"


def test_tolerance_lets_a_small_loss_through(
    trained: Trained, shuffled_churn: ChurnModel, store: Path
) -> None:
    register(trained, trained.bundle())
    promote()
    register(trained, trained.bundle({**trained.models, "churn": shuffled_churn}))
    assert promote(tolerance=1.0).promoted
    assert champion_version() == "2"


def test_candidate_missing_a_champion_role_is_refused(trained: Trained, store: Path) -> None:
    register(trained, trained.bundle())
    promote()
    partial = {r: m for r, m in trained.models.items() if r != "satisfaction"}
    register(trained, trained.bundle(partial, skipped={"satisfaction": "no surveys"}))
    result = promote("2")
    assert not result.promoted
    missing = next(row for row in result.rows if row.role == "satisfaction")
    assert (missing.ok, missing.candidate, missing.note) == (False, None, "missing")
    assert champion_version() == "1"


def test_an_explicit_older_version_can_be_compared(trained: Trained, store: Path) -> None:
    register(trained, trained.bundle())
    register(trained, trained.bundle())
    assert promote("models:/nextbest/2").champion is None
    same = promote("1")  # identical models: every delta is 0, so it passes
    assert same.promoted and all(row.delta == 0.0 for row in same.rows)
    assert champion_version() == "1"
    assert "already the champion" in promote("1").reason


def test_nothing_registered_is_one_clear_line(store: Path) -> None:
    with pytest.raises(NextbestError, match="no registered bundle yet"):
        promote()
    with pytest.raises(NextbestError) as raised:
        load_bundle(None)
    assert str(raised.value) == NO_CHAMPION


def test_compare_respects_direction_and_tolerance() -> None:
    champion = {
        "churn": {"metric": "roc_auc", "value": 0.80, "greater_is_better": True},
        "satisfaction": {"metric": "mae", "value": 1.00, "greater_is_better": False},
    }
    candidate = {
        "churn": {"metric": "roc_auc", "value": 0.795, "greater_is_better": True},
        "satisfaction": {"metric": "mae", "value": 1.02, "greater_is_better": False},
        "value": {"metric": "normalized_gini", "value": 0.5, "greater_is_better": True},
    }
    rows = {r.role: r for r in compare(champion, candidate, tolerance=0.01)}
    assert rows["churn"].ok and rows["churn"].delta == pytest.approx(-0.005)
    assert not rows["satisfaction"].ok  # MAE up by 0.02 > 0.01
    assert rows["value"] == Comparison(
        "value", "normalized_gini", None, 0.5, None, True, True, "new role"
    )
    nan = {"churn": {"metric": "roc_auc", "value": float("nan"), "greater_is_better": True}}
    assert not compare(champion, nan, 0.01)[0].ok


def test_bad_tolerance_is_refused(store: Path) -> None:
    with pytest.raises(NextbestError, match="tolerance"):
        promote(tolerance=-1)


def test_table_renders_rows_and_verdict(
    trained: Trained, shuffled_churn: ChurnModel, store: Path
) -> None:
    register(trained, trained.bundle())
    promote()
    register(trained, trained.bundle({**trained.models, "churn": shuffled_churn}))
    console = Console(record=True, width=140)
    console.print(promotion_table(promote()))
    text = console.export_text()
    assert "candidate v2 vs champion v1" in text
    assert "roc_auc" in text and "normalized_gini" in text and "refused" in text


def test_render_prints_the_verdict_without_rows(trained: Trained, store: Path) -> None:
    register(trained, trained.bundle())
    console = Console(record=True, width=140)
    render(promote(), console)
    assert "version 1 becomes champion" in console.export_text()
