"""notebooks/uplift_roi.ipynb runs top to bottom against a real MLflow store whose @champion is a
bundle with uplift models, on the small world (with its truth), and writes the ROI report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pytest

from tests.conftest import REPO
from tests.notebooks.run import environment, execute, images, outputs
from training.registry.bundle import Bundle
from training.registry.mlflow_models import CHAMPION, REGISTERED_MODEL

NOTEBOOK = REPO / "notebooks" / "uplift_roi.ipynb"
TIMEOUT_SECONDS = 600


@pytest.fixture(scope="module")
def project(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A project directory whose MLflow store holds a bundle with uplift models as @champion; the
    variables that point the notebook at it and at the small world."""
    from tests.training.registry.test_bundle import migrated_store, register, train_all
    from tests.training.uplift.test_fit import uplift_on

    root = tmp_path_factory.mktemp("uplift-project")
    shutil.copy(migrated_store(tmp_path_factory), root / "mlflow.db")
    env = {
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "NEXTBEST_ROOT": str(root),
        "NEXTBEST_DATA": str(small_world),
    }
    trained = train_all(small_world)
    base = trained.bundle()
    bundle = Bundle(
        base.builder, base.config, base.models, base.metadata, uplift_on(small_world).learners
    )
    with environment(env):
        try:
            version = register(trained, bundle)
            mlflow.MlflowClient().set_registered_model_alias(REGISTERED_MODEL, CHAMPION, version)
        finally:
            mlflow.set_tracking_uri(None)
    return env | {"version": version}


@pytest.mark.slow
def test_uplift_notebook_runs_and_writes_the_report(project: dict[str, str]) -> None:
    variables = {k: v for k, v in project.items() if k != "version"}
    notebook = execute(NOTEBOOK, variables, TIMEOUT_SECONDS)
    assert not [o for o in outputs(notebook) if o.get("output_type") == "error"]
    assert images(notebook) >= 5  # the plots were shown

    report = Path(project["NEXTBEST_ROOT"]) / "out" / "report"
    assert "<img" in (report / "report.html").read_text(encoding="utf-8")
    meta = json.loads((report / "evaluation.json").read_text())
    assert meta["model_version"] == project["version"] and meta["has_truth"]
