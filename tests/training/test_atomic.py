"""Outputs appear whole or not at all."""

from __future__ import annotations

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
