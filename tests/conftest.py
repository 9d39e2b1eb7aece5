"""Shared fixtures: one small synthetic world per test session (a few seconds), never modified."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from tests.postgres import REQUIRED_HINT, LocalPostgres, binaries, remove, start_local_postgres

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# two xdist workers each training with 2 LightGBM threads on 2 cores: passive waiting keeps idle
# OpenMP threads from spinning against the other worker (measured: 258 s -> 11 s)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"

SMALL_WORLD_CUSTOMERS = 6000


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6,000-customer synthetic data set (ground truth in `<dir>_truth`); read-only for tests."""
    from training.synth.generate import synthesize
    from training.synth.world import WorldConfig

    out = tmp_path_factory.mktemp("world") / "demo"
    cfg = replace(WorldConfig(), chunk_size=3000, truth_reps=8)
    synthesize(SMALL_WORLD_CUSTOMERS, out, seed=11, cfg=cfg)
    return out


def shared_dataset(name: str) -> Path:
    """A file of ../shared/datasets, or skip the test with the reason."""
    path = SHARED_DATASETS / name
    if not path.exists():
        pytest.skip(f"{path} is absent (the team's shared data sets are not mounted here)")
    return path


@pytest.fixture(scope="session")
def postgres() -> Iterator[LocalPostgres]:
    """A real PostgreSQL server for the session (tests/postgres.py). Without the binaries the
    tests that need it fail when NEXTBEST_REQUIRE_POSTGRES=1 (`.ci/run` sets it) and are skipped
    otherwise (a developer machine without PostgreSQL)."""
    if binaries() is None:
        if os.environ.get("NEXTBEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(REQUIRED_HINT, pytrace=False)
        pytest.skip(REQUIRED_HINT)
    server = start_local_postgres()
    yield server
    remove(server)


@pytest.fixture
def pg_url(postgres: LocalPostgres) -> str:
    """The URL of a new empty database on the session's server."""
    return postgres.new_database()
