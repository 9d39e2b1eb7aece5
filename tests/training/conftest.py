"""Fixtures shared by the MLflow tests (bundle, tracking, promotion): a fresh store per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from tests.training.registry.test_bundle import migrated_store, use_store


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrated_store(tmp_path_factory)


@pytest.fixture
def store(template_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    yield use_store(template_db, tmp_path, monkeypatch)
    mlflow.set_tracking_uri(None)  # forget the temporary store (and the variable MLflow set)
