"""notebooks/scores.ipynb runs top to bottom against a real MLflow store whose @champion was
trained on the small world, and shows its plots inline (no forced backend)."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import pytest

from tests.conftest import REPO
from tests.notebooks.run import environment, execute, images, outputs
from training.registry.mlflow_models import CHAMPION, REGISTERED_MODEL

NOTEBOOK = REPO / "notebooks" / "scores.ipynb"


@pytest.fixture(scope="module")
def project(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A project directory whose MLflow store holds the small world's bundle as @champion."""
    from tests.training.registry.test_bundle import migrated_store, register, train_all

    root = tmp_path_factory.mktemp("scores-project")
    shutil.copy(migrated_store(tmp_path_factory), root / "mlflow.db")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "NEXTBEST_ROOT": str(root),
        "NEXTBEST_DATA": str(small_world),
    }
    trained = train_all(small_world)
    with environment(env):
        try:
            version = register(trained, trained.bundle())
            mlflow.MlflowClient().set_registered_model_alias(REGISTERED_MODEL, CHAMPION, version)
        finally:
            mlflow.set_tracking_uri(None)
    return env


def test_the_notebook_picks_no_backend_itself() -> None:
    source = NOTEBOOK.read_text(encoding="utf-8")
    assert "matplotlib.use(" not in source and "%matplotlib inline" in source


@pytest.mark.slow
def test_scores_notebook_runs_and_shows_its_plots(project: dict[str, str]) -> None:
    notebook = execute(NOTEBOOK, project, timeout=300)
    assert not [o for o in outputs(notebook) if o.get("output_type") == "error"]
    assert images(notebook) >= 1  # the calibration plot, inline
    texts = [o.get("text", "") for o in outputs(notebook) if o.get("output_type") == "stream"]
    assert any("champion: version 1" in t for t in texts)
