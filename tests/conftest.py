"""Shared fixtures: one small synthetic world per test session (a few seconds), never modified."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

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
