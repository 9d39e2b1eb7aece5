"""Artifact checksums: recorded by `Bundle.save`, checked by `Bundle.load` before any parser reads a
file, so a truncated LightGBM model is one clear error instead of an aborted process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.training.registry.test_bundle import train_all
from training.registry.bundle import Bundle
from training.registry.checksums import CorruptArtifactError, checksums, verify


@pytest.fixture
def saved(small_world: Path, tmp_path: Path) -> Path:
    return train_all(small_world).bundle().save(tmp_path / "bundle")


def test_save_records_a_sha256_of_every_file_but_the_metadata(saved: Path) -> None:
    recorded = json.loads((saved / "metadata.json").read_text())["checksums"]
    assert recorded == checksums(saved)
    assert "models/churn/model.txt" in recorded and "metadata.json" not in recorded
    assert all(len(digest) == 64 for digest in recorded.values())
    Bundle.load(saved)  # intact: loads


@pytest.mark.parametrize("damage", ["truncate", "empty", "delete", "extra"])
def test_damaged_artifacts_are_refused_before_lightgbm_reads_them(saved: Path, damage: str) -> None:
    model = saved / "models" / "churn" / "model.txt"
    if damage == "truncate":
        model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    elif damage == "empty":
        model.write_bytes(b"")
    elif damage == "delete":
        model.unlink()
    else:
        (saved / "uplift").mkdir(exist_ok=True)
        (saved / "uplift" / "visit.json").write_text("{}")
    with pytest.raises(CorruptArtifactError, match="models/churn/model.txt|uplift/visit.json"):
        Bundle.load(saved)


def test_a_truncated_model_no_longer_aborts_the_process(saved: Path) -> None:
    """Without the check LightGBM dies with SIGABRT on this file; with it, a Python error."""
    model = saved / "models" / "churn" / "model.txt"
    model.write_bytes(model.read_bytes()[:200])
    code = f"from training.registry.bundle import Bundle\nBundle.load({str(saved)!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1 and "CorruptArtifactError" in done.stderr


def test_verify_names_the_missing_file(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(CorruptArtifactError, match="b.json: artifact missing"):
        verify(tmp_path, {"a.json": checksums(tmp_path)["a.json"], "b.json": "0" * 64})
