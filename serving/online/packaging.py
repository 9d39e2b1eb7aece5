"""`nextbest bento`: a Bento that runs on its own, with its bundle and online store inside.

It stages a build folder from the project (bentofile.yaml, requirements-serve.lock, the `training`
and `serving` packages), the bundle of a registry reference exported as files (`bundle/`) and a
copy of the online store (`online_store.sqlite`), then runs `bentoml build` on it in a fresh
interpreter. The bentofile's `args` point the service at both (serving.online.bento_args), so
`bentoml serve <tag>` and the Bento's container need neither MLflow nor a mounted store.

With a wheelhouse (`pip download -r requirements-serve.lock -d wheelhouse`), the wheels go into the
Bento and its requirements install from them alone (`--no-index`): the image builds offline.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import yaml

from serving.online.store import OnlineStore, StoreInfo
from training.errors import NextbestError
from training.registry.mlflow_models import export_bundle

BENTOFILE = "bentofile.yaml"
REQUIREMENTS = "requirements-serve.lock"
PACKAGES = ("training", "serving")
STAGED_BUNDLE = "bundle"
STAGED_STORE = "online_store.sqlite"
STAGED_WHEELS = "wheelhouse"
# where BentoML puts a Bento's `python.wheels` inside its image (BENTO_PATH/env/python/wheels)
IMAGE_WHEELS = "/home/bentoml/bento/env/python/wheels"
BUILD_SECONDS = 600


@dataclass(frozen=True)
class BuiltBento:
    """What `build_bento` made: the Bento's tag and the bundle version and store inside it."""

    tag: str
    model_version: str
    store_as_of: str
    customers: int


def project_root() -> Path:
    """The checkout the code runs from (the folder holding bentofile.yaml and the packages)."""
    return Path(__file__).resolve().parents[2]


def stage(
    folder: Path, project: Path, model: str | None, store: Path, wheelhouse: Path | None = None
) -> tuple[str, StoreInfo]:
    """Fill `folder` (empty) with everything the Bento holds; returns the bundle's version and
    the store's description (a store of other features than the bundle's is refused here)."""
    for name in (BENTOFILE, REQUIREMENTS, *PACKAGES):
        if not (project / name).exists():
            raise NextbestError(f"{project / name}: missing; build the Bento from a checkout")
    opened = OnlineStore(store)  # a missing or foreign file: a one-line error before any copying
    try:
        bundle = export_bundle(model, folder / STAGED_BUNDLE)
        opened.check_compatible(bundle.builder.version)
    finally:
        opened.close()
    shutil.copyfile(store, folder / STAGED_STORE)  # written once by rename, never in place
    for package in PACKAGES:
        shutil.copytree(
            project / package, folder / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copyfile(project / BENTOFILE, folder / BENTOFILE)
    shutil.copyfile(project / REQUIREMENTS, folder / REQUIREMENTS)
    if wheelhouse is not None:
        offline(folder, wheelhouse)
    return bundle.version or "", opened.info


def offline(folder: Path, wheelhouse: Path) -> None:
    """Put the wheelhouse's wheels into the Bento and install its requirements from them only."""
    wheels = sorted(Path(wheelhouse).glob("*.whl"))
    if not wheels:
        raise NextbestError(
            f"{wheelhouse}: no wheels; run `pip download -r {REQUIREMENTS} -d {wheelhouse}`"
        )
    (folder / STAGED_WHEELS).mkdir()
    for wheel in wheels:
        shutil.copyfile(wheel, folder / STAGED_WHEELS / wheel.name)
    lock = folder / REQUIREMENTS
    lock.write_text(
        f"--no-index\n--find-links {IMAGE_WHEELS}\n" + lock.read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    bentofile = folder / BENTOFILE
    config = yaml.safe_load(bentofile.read_text(encoding="utf-8"))
    config["python"]["wheels"] = [f"{STAGED_WHEELS}/{w.name}" for w in wheels]
    bentofile.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")


def build_bento(
    model: str | None,
    store: Path,
    project: Path | None = None,
    wheelhouse: Path | None = None,
) -> BuiltBento:
    """Stage the Bento's files in a temporary folder and `bentoml build` it (into $BENTOML_HOME)."""
    with tempfile.TemporaryDirectory(prefix="nextbest-bento-") as tmp:
        folder = Path(tmp)
        version, info = stage(folder, project or project_root(), model, Path(store), wheelhouse)
        command = [sys.executable, "-m", "bentoml", "build", str(folder), "--output", "tag"]
        # the build imports the service: this shell's serving settings must not leak into it
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTBEST_")}
        done = subprocess.run(  # noqa: S603 - our own interpreter, fixed arguments
            command, cwd=folder, env=env, capture_output=True, text=True, timeout=BUILD_SECONDS
        )
    if done.returncode != 0:
        raise NextbestError(f"bentoml build failed: {(done.stderr or done.stdout)[-2000:]}")
    tag = re.search(r"__tag__:(\S+)", done.stdout)
    if tag is None:
        raise NextbestError(f"bentoml build printed no tag: {done.stdout[-500:]}")
    return BuiltBento(tag.group(1), version, info.as_of.isoformat(), info.customers)
