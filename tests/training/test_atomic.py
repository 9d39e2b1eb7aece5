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


def test_concurrent_directory_writers_never_leave_the_target_missing(tmp_path: Path) -> None:
    """Writers finishing together all succeed (a lock orders their swaps) and a reader polling the
    target never misses it: the swap is one atomic exchange."""
    import threading

    target = tmp_path / "out"
    with atomic_directory(target) as tmp:
        (tmp / "f").write_text("0")
    misses, stop = [0], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            if not (target / "f").exists():
                misses[0] += 1

    def writer(k: int) -> None:
        for n in range(30):
            with atomic_directory(target) as tmp:
                (tmp / "f").write_text(f"{k}-{n}")

    watching = threading.Thread(target=reader)
    watching.start()
    writers = [threading.Thread(target=writer, args=(k,)) for k in range(3)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    watching.join()
    assert misses == [0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing left beside it


def test_an_unwritable_place_is_one_clear_error_before_any_work(tmp_path: Path) -> None:
    from training.atomic import check_writable
    from training.errors import NextbestError

    (tmp_path / "file").write_text("x")
    with pytest.raises(NextbestError, match="is not a directory"):
        check_writable(tmp_path / "file" / "out")
    with pytest.raises(NextbestError, match="cannot write"):
        check_writable(Path("/proc/nextbest-out"))
    check_writable(tmp_path / "new" / "deeper" / "out")  # creatable: fine
