"""Where the service's bundle comes from: a registry reference, or a bundle folder.

A folder (NEXTBEST_BUNDLE_DIR: written by `nextbest export-bundle`, or the one `nextbest bento`
bakes into a Bento) is read without MLflow, so a service installed with the `serve` extra alone
runs on it; a registry reference (NEXTBEST_MODEL, default @champion) needs the `train` extra and
a reachable MLflow store.
"""

from __future__ import annotations

import os
from pathlib import Path

from serving.online.settings import ServingSettings
from training.errors import NextbestError
from training.registry.bundle import Bundle
from training.registry.mlflow_models import load_bundle, resolve_version


def folder_key(folder: Path) -> str:
    """Identity of a bundle folder's metadata file: a re-export (a rename onto the folder) changes it."""
    try:
        stat = os.stat(Path(folder) / "metadata.json")
    except OSError as exc:
        raise NextbestError(
            f"NEXTBEST_BUNDLE_DIR: {folder} is not a bundle folder ({exc})"
        ) from None
    return f"{folder}:{stat.st_ino}:{stat.st_mtime_ns}"


def served_key(settings: ServingSettings) -> str:
    """What identifies the bundle the settings point to now (the reload loop compares it)."""
    if settings.bundle_dir is not None:
        return folder_key(settings.bundle_dir)
    return str(resolve_version(settings.model).version)


def load_served(settings: ServingSettings) -> tuple[Bundle, str]:
    """The bundle the settings point to, and its key as `served_key` gives it."""
    if settings.bundle_dir is not None:
        key = folder_key(settings.bundle_dir)  # before reading: a re-export meanwhile is seen later
        return Bundle.load(settings.bundle_dir), key
    bundle = load_bundle(settings.model)
    return bundle, bundle.version or ""


def challenger_key(settings: ServingSettings) -> str:
    """The registry version the challenger reference points to now; "" when no challenger is
    configured or the reference names nothing yet (no @challenger alias: the champion alone)."""
    if not settings.challenger_on:
        return ""
    try:
        return str(resolve_version(settings.challenger).version)
    except NextbestError:
        return ""


def load_challenger(settings: ServingSettings) -> Bundle:
    """The challenger's bundle, from the registry (a challenger is always a registry reference)."""
    return load_bundle(settings.challenger)
