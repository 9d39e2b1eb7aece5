"""What one service worker serves: a bundle with its online store, swapped whole on reload.

`Runtime` is immutable; a request reads the current one once and uses it to the end, so a reload
(a newly promoted champion, a re-materialized store) never shows a request half of each, and
in-flight requests finish on the runtime they started with.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from serving.online.bundle_source import load_served, served_key
from serving.online.decision import Decider
from serving.online.fast_predict import accelerate
from serving.online.live_features import LiveFeatures
from serving.online.reasons import Explainer
from serving.online.settings import ServingSettings
from serving.online.store import OnlineStore
from training.registry.bundle import Bundle


@dataclass(frozen=True)
class Runtime:
    """A loaded bundle, its decision function and explainer, and the store it reads."""

    decider: Decider
    explainer: Explainer
    store: OnlineStore
    version: str
    key: tuple[str, tuple[int, int]]  # (bundle key, store file identity): what reload compares
    live: LiveFeatures  # features of a customer with live events, as of the request time

    @property
    def bundle(self) -> Bundle:
        return self.decider.bundle

    def close(self) -> None:
        """Release the store's file (a replaced store's disk space is freed only then)."""
        self.store.close()
        self.live.close()


def store_identity(path: Path) -> tuple[int, int]:
    """Inode and modification time: a re-materialized store (a rename onto the path) changes it."""
    stat = os.stat(path)
    return stat.st_ino, stat.st_mtime_ns


def current_key(settings: ServingSettings) -> tuple[str, tuple[int, int]]:
    """What the bundle setting (registry reference or folder) and the store path point to now."""

    return served_key(settings), store_identity(settings.online_store)


def load_runtime(
    settings: ServingSettings, previous: Runtime | None = None, keep_bundle: bool = False
) -> Runtime:
    """Load the bundle and open its store; a store of another feature definition is refused.
    When only the store changed, or `keep_bundle` (the new bundle cannot be loaded), `previous`'s
    bundle is kept: a store swap reads no model file."""
    if previous is not None and (keep_bundle or previous.key[0] == served_key(settings)):
        bundle, bundle_key = previous.bundle, previous.key[0]
    else:
        loaded, bundle_key = load_served(settings)
        bundle = accelerate(loaded)
    store = OnlineStore(settings.online_store)
    try:
        store.check_compatible(bundle.builder.version)
    except BaseException:
        store.close()
        raise
    version = bundle.version or ""
    key = (bundle_key, store.identity)  # the inode actually opened, not a second look at the path
    own_store = bool(version) and store.info.model_version == version  # outputs are this bundle's
    decider = Decider(bundle, stored_outputs=own_store)
    return Runtime(decider, Explainer(bundle), store, version, key, LiveFeatures(bundle))
