"""Artifact checksums: a SHA-256 of every file of a bundle, recorded in its metadata when it is saved
and verified before any loader (LightGBM, JSON) reads a file.

LightGBM aborts the whole process (SIGABRT) on a truncated model file, so a corrupt artifact must be
refused before it reaches the parser: a mismatch, a missing file or an extra model file is one
`CorruptArtifactError` naming the file, which the service logs in one line while it keeps serving
what it has, and which `nextbest score` turns into exit status 2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

from training.errors import NextbestError

CHUNK = 1 << 20
EXCLUDED = frozenset({"metadata.json"})  # the checksums live in it


class CorruptArtifactError(NextbestError):
    """A bundle file is missing, truncated or altered since the bundle was saved."""


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def artifact_files(folder: Path) -> list[str]:
    """Every file of a bundle folder but its metadata, as sorted POSIX paths relative to it."""
    folder = Path(folder)
    names = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    return sorted(n for n in names if n not in EXCLUDED)


def checksums(folder: Path) -> dict[str, str]:
    """relative path -> SHA-256 of every artifact of `folder` (what `save` records)."""
    return {name: sha256_file(Path(folder) / name) for name in artifact_files(folder)}


def verify(folder: Path, expected: Mapping[str, str]) -> None:
    """Refuse a bundle whose files differ from the recorded checksums: missing, altered or unknown
    (an unknown file could be read as a model: uplift JSON is found by name)."""
    folder = Path(folder)
    present = set(artifact_files(folder))
    for name in sorted(expected):
        if name not in present:
            raise CorruptArtifactError(f"{folder / name}: artifact missing from the bundle")
        if sha256_file(folder / name) != expected[name]:
            raise CorruptArtifactError(
                f"{folder / name}: artifact checksum mismatch (truncated or altered since it was "
                "saved); re-register the bundle or promote another version"
            )
    extra = sorted(present - set(expected))
    if extra:
        raise CorruptArtifactError(
            f"{folder / extra[0]}: file not recorded in the bundle's checksums"
        )
