"""The serving commands of the CLI: user errors are one line and exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import REPO
from training.cli import app

runner = CliRunner()


def test_serve_without_a_store_says_to_materialize(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--store", str(tmp_path / "none.sqlite")])
    assert result.exit_code == 2
    assert "nextbest materialize" in result.output


def test_export_exposures_without_a_log_is_a_user_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["export-exposures", "--log", str(tmp_path / "x"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "no decision log" in result.output


def test_materialize_rejects_a_bad_date(tmp_path: Path) -> None:
    result = runner.invoke(app, ["materialize", "--data", str(tmp_path), "--as-of", "yesterday"])
    assert result.exit_code == 2 and "not a date" in result.output


@pytest.mark.slow
def test_bentoml_build_works_offline(tmp_path: Path) -> None:
    """bentofile.yaml builds a Bento without locking packages (no network needed)."""
    env = os.environ | {"BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "true"}
    bentoml = Path(sys.executable).with_name("bentoml")
    done = subprocess.run(
        [str(bentoml), "build"], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    built = list((tmp_path / "bentos" / "nextbest").glob("*/src"))
    assert len(built) == 1
    assert (built[0] / "serving" / "online" / "static" / "desktop.html").is_file()
    assert (built[0] / "serving" / "online" / "service.py").is_file()
