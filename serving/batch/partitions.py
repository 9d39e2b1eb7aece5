"""The batch output's history: one `as_of=YYYY-MM-DD/` partition per run, the newest few kept.

The output directory is still replaced whole, in one atomic exchange (training.atomic): the new
tree holds this run's partition, the kept earlier partitions as hard links (no copy: written files
are never modified), and this run's files again at the top level, so readers of
`out/score/actions.parquet` keep working. A run for a date already kept replaces that partition.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import date
from pathlib import Path

PARTITION = re.compile(r"^as_of=(\d{4}-\d{2}-\d{2})$")


def partition_name(as_of: date) -> str:
    return f"as_of={as_of.isoformat()}"


def partitions(out: Path) -> dict[date, Path]:
    """The partitions of an output directory, by date (none if it does not exist)."""
    found: dict[date, Path] = {}
    if not out.is_dir():
        return found
    for path in out.iterdir():
        match = PARTITION.match(path.name)
        if match and path.is_dir():
            try:
                found[date.fromisoformat(match.group(1))] = path
            except ValueError:
                continue
    return found


def previous_partition(out: Path, as_of: date) -> tuple[date, Path] | None:
    """The latest kept run before `as_of`, the one this run is compared with."""
    earlier = [d for d in partitions(out) if d < as_of]
    if not earlier:
        return None
    day = max(earlier)
    return day, partitions(out)[day]


def carry_over(out: Path, tmp: Path, as_of: date, keep: int) -> list[date]:
    """Link into `tmp` the partitions of `out` that stay beside this run's: the newest `keep`
    dates counting `as_of` itself. Returns the dates carried over."""
    kept = sorted({*partitions(out), as_of}, reverse=True)[:keep]
    carried = []
    for day, path in sorted(partitions(out).items()):
        if day == as_of or day not in kept:
            continue
        _link_tree(path, tmp / path.name)
        carried.append(day)
    return carried


def publish(tmp: Path, as_of: date) -> None:
    """This run's files (written in its partition) also at the top level of `tmp`."""
    for path in (tmp / partition_name(as_of)).iterdir():
        if path.is_file():
            _link(path, tmp / path.name)


def _link_tree(source: Path, target: Path) -> None:
    target.mkdir()
    for path in source.iterdir():
        if path.is_file():
            _link(path, target / path.name)


def _link(source: Path, target: Path) -> None:
    """A hard link (the same file, no copy), or a copy where links are impossible."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
