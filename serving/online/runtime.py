"""What one service worker serves: a bundle with its online store, swapped whole on reload.

`Runtime` is immutable; a request reads the current one once and uses it to the end, so a reload
(a newly promoted champion, a re-materialized store) never shows a request half of each, and
in-flight requests finish on the runtime they started with. With a challenger configured
(`challenger_share`, `shadow`), the runtime also holds the challenger's arm, loaded and reloaded
by the same path; a challenger that cannot be loaded, or reads another feature definition than
the store, is left out (and said why) while the champion serves on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from serving.online.bundle_source import challenger_key, load_challenger, load_served, served_key
from serving.online.decision import Decider
from serving.online.fast_predict import accelerate
from serving.online.live_features import LiveFeatures
from serving.online.reasons import Explainer
from serving.online.settings import ServingSettings
from serving.online.store import OnlineStore
from training.registry.bundle import Bundle
from training.registry.mlflow_models import CHALLENGER, CHAMPION

Key = tuple[str, tuple[int, int], str]  # (bundle key, store file identity, challenger version)


@dataclass(frozen=True)
class Arm:
    """A bundle that decides: its decision function, explainer and registry version."""

    name: str  # CHAMPION or CHALLENGER (the registry alias the arm is served from)
    decider: Decider
    explainer: Explainer
    version: str


@dataclass(frozen=True)
class Runtime:
    """A loaded bundle, its decision function and explainer, and the store it reads; and the
    challenger's arm when one is configured and loadable."""

    decider: Decider
    explainer: Explainer
    store: OnlineStore
    version: str
    key: Key  # what reload compares
    live: LiveFeatures  # features of a customer with live events, as of the request time
    challenger: Arm | None = None
    challenger_error: str | None = None  # why a configured challenger is not loaded
    same_catalog: bool = True  # the challenger's catalog is the champion's (one contact mask)

    @property
    def champion(self) -> Arm:
        return Arm(CHAMPION, self.decider, self.explainer, self.version)

    @property
    def bundle(self) -> Bundle:
        return self.decider.bundle

    @property
    def live_tag(self) -> str:
        """What a live row shared between workers was computed from: the bundle and the online
        store file (serving.online.live_rows)."""
        inode, mtime = self.key[1]
        return f"{self.key[0]}|{inode}:{mtime}"

    def close(self) -> None:
        """Release the store's file (a replaced store's disk space is freed only then)."""
        self.store.close()
        self.live.close()


def store_identity(path: Path) -> tuple[int, int]:
    """Inode and modification time: a re-materialized store (a rename onto the path) changes it."""
    stat = os.stat(path)
    return stat.st_ino, stat.st_mtime_ns


def current_key(settings: ServingSettings) -> Key:
    """What the bundle setting (registry reference or folder), the store path and the challenger
    reference point to now."""

    return served_key(settings), store_identity(settings.online_store), challenger_key(settings)


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
    challenger, error = _challenger(settings, store, previous)
    identity = challenger.version if challenger is not None else challenger_key(settings)
    key = (bundle_key, store.identity, identity)  # the inode opened, not a second look at the path
    own_store = bool(version) and store.info.model_version == version  # outputs are this bundle's
    decider = Decider(bundle, stored_outputs=own_store).warm()
    live = LiveFeatures(bundle)
    same = challenger is None or _same_policy(challenger.decider.bundle, bundle)
    return Runtime(decider, Explainer(bundle), store, version, key, live, challenger, error, same)


def _challenger(
    settings: ServingSettings, store: OnlineStore, previous: Runtime | None
) -> tuple[Arm | None, str | None]:
    """The challenger's arm (kept from `previous` when its version did not change), or None and
    why not. Never raises for the challenger's sake: the champion must serve regardless."""
    if not settings.challenger_on:
        return None, None
    try:
        wanted = challenger_key(settings)
        if not wanted:
            return None, f"{settings.challenger} names no registered version yet"
        kept = previous.challenger if previous is not None else None
        if kept is not None and kept.version == wanted:
            bundle = kept.decider.bundle
        else:
            bundle = accelerate(load_challenger(settings))
        store.check_compatible(bundle.builder.version)
    except Exception as exc:  # a bad challenger must never take the champion down
        return None, f"challenger: {type(exc).__name__}: {exc}"
    decider = Decider(bundle, stored_outputs=False).warm()  # the store's outputs: the champion's
    return Arm(CHALLENGER, decider, Explainer(bundle), bundle.version or ""), None


def _same_policy(one: Bundle, other: Bundle) -> bool:
    """Whether two bundles allow the same contacts (catalog, contact policy, consent), so one
    contact-policy mask serves both arms of a request."""
    a, b = one.config, other.config
    return (a.catalog, a.contact_policy, a.consent) == (b.catalog, b.contact_policy, b.consent)
