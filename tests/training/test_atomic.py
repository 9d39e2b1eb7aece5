"""Outputs appear whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from training.atomic import atomic_directory, atomic_file


def test_failed_directory_write_keeps_the_previous_output(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("killed")
    assert (target / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary left behind


def test_directory_write_replaces_the_previous_output_whole(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        (tmp / "old.txt").write_text("1")
    with atomic_directory(target) as tmp:
        (tmp / "new.txt").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_failed_file_write_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "f.parquet"
    with pytest.raises(ValueError), atomic_file(target) as tmp:
        tmp.write_text("partial")
        raise ValueError("bad")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("umask", "directory", "file"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)]
)
def test_outputs_get_the_permissions_of_the_umask(
    tmp_path: Path, umask: int, directory: int, file: int
) -> None:
    """Not mkdtemp's and mkstemp's private 0700/0600: a CRM job must be able to read the scores."""
    old = os.umask(umask)
    try:
        with atomic_directory(tmp_path / "out") as tmp:
            (tmp / "a.txt").write_text("x")
        with atomic_file(tmp_path / "store.sqlite") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "out").stat().st_mode & 0o777 == directory
    assert (tmp_path / "store.sqlite").stat().st_mode & 0o777 == file
