"""Batch fixtures: a bundle with uplift learners on the small world, and that bundle registered in a
real (temporary) MLflow store for the end-to-end batch tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from training.bundle import Bundle

AS_OF = "2026-11-02"


@pytest.fixture(scope="session")
def uplift_bundle(small_world: Path) -> Bundle:
    """The three score models and the uplift learners of the small world, in one bundle."""
    from tests.training.test_bundle import train_all
    from tests.training.test_uplift_train import uplift_on

    base = train_all(small_world).bundle()
    learners = uplift_on(small_world).learners
    return Bundle(base.builder, base.config, base.models, base.metadata, learners)


@dataclass(frozen=True)
class Registry:
    """A temporary MLflow store holding `uplift_bundle` as version `version`."""

    tracking_uri: str
    version: str

    def env(self) -> dict[str, str]:
        return os.environ | {"MLFLOW_TRACKING_URI": self.tracking_uri}


@pytest.fixture(scope="module")
def registry(
    small_world: Path, uplift_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """Register the bundle once per module; MLFLOW_TRACKING_URI points at the store meanwhile."""
    import mlflow

    from tests.training.test_bundle import migrated_store, register, train_all, use_store

    with pytest.MonkeyPatch.context() as patch:
        db = use_store(migrated_store(tmp_path_factory), tmp_path_factory.mktemp("store"), patch)
        version = register(train_all(small_world), uplift_bundle)
        yield Registry(f"sqlite:///{db}", version)
    mlflow.set_tracking_uri(None)
