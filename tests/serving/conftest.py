"""Serving fixtures: a registered champion bundle with uplift models in a real (temporary) MLflow
store, its online store as of a date, and the real BentoML server on 127.0.0.1 over HTTP; for the
batch job, that bundle and a module-scoped registry holding it.

The server tests share one server per test process; they carry `xdist_group("server")` so that,
with `--dist loadgroup` (pyproject addopts), one xdist worker runs them all.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from training.registry.bundle import Bundle

AS_OF = date(2026, 11, 2)
API_KEY = "test-key-not-a-secret"
STARTUP_SECONDS = 120


@dataclass(frozen=True)
class World:
    """A data set, the MLflow store holding its champion bundle, and that bundle's online store."""

    data: Path
    tracking_uri: str
    store: Path
    root: Path


def register_champion(small_world: Path) -> str:
    """Register the small world's bundle with uplift learners and make it the champion."""
    import mlflow

    from tests.training.registry.test_bundle import register, train_all
    from tests.training.uplift.test_fit import uplift_on
    from training.registry.bundle import Bundle
    from training.registry.mlflow_models import CHAMPION, REGISTERED_MODEL

    trained = train_all(small_world)
    base = trained.bundle()
    bundle = Bundle(
        base.builder, base.config, base.models, base.metadata, uplift_on(small_world).learners
    )
    version = register(trained, bundle)
    mlflow.MlflowClient().set_registered_model_alias(REGISTERED_MODEL, CHAMPION, version)
    return version


@pytest.fixture(scope="session")
def world(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> World:
    """The small world served: champion registered, store materialized as of AS_OF."""
    import shutil

    from serving.online.store import materialize
    from tests.training.registry.test_bundle import migrated_store

    root = tmp_path_factory.mktemp("serving")
    db = root / "mlflow.db"
    shutil.copy(migrated_store(tmp_path_factory), db)
    uri = f"sqlite:///{db}"
    with pytest.MonkeyPatch.context() as patch:  # undone before the tests run
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.chdir(root)  # artifacts (./mlruns) land beside the store
        register_champion(small_world)
        store = materialize(small_world, AS_OF, root / "online_store.sqlite").path
    return World(small_world, uri, store, root)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A running `bentoml serve` of serving.online.service:Nextbest."""

    url: str
    log: Path
    process: subprocess.Popen[bytes]

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        """(status, parsed JSON or text) of one request; the API key is sent unless overridden."""
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        sent = {"Content-Type": "application/json", "X-API-Key": API_KEY} | (headers or {})
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={k: v for k, v in sent.items() if v}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, payload = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, payload = exc.code, exc.read()
        try:
            return status, json.loads(payload)
        except ValueError:
            return status, payload.decode(errors="replace")


def start_server(
    world: World, log_path: Path, wait_for: str = "/readyz", **settings: str
) -> Server:
    """Start the service as a subprocess (its own process group) and wait until `wait_for` is 200."""
    port = free_port()
    env = (
        os.environ
        | {
            "MLFLOW_TRACKING_URI": world.tracking_uri,
            "NEXTBEST_ONLINE_STORE": str(world.store),
            "NEXTBEST_DECISION_LOG": str(log_path),
            "NEXTBEST_API_KEY": API_KEY,
            "NEXTBEST_WORKERS": "2",
            "NEXTBEST_RELOAD_SECONDS": "1",
            "OMP_NUM_THREADS": "1",
            "BENTOML_DO_NOT_TRACK": "true",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # its own BentoML home: a starting server wipes the home's Prometheus directory
            "BENTOML_HOME": str(log_path.parent / f"bentoml-{port}"),
        }
        | settings
    )
    output = log_path.with_suffix(".out")
    command = [sys.executable, "-m", "bentoml", "serve", "serving.online.service:Nextbest"]
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=world.root,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", log_path, process)
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {output.read_text()[-3000:]}")
        try:
            if server.call("GET", wait_for)[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.5)
    stop_server(server)
    raise RuntimeError(f"server not ready in {STARTUP_SECONDS} s: {output.read_text()[-3000:]}")


def stop_server(server: Server) -> None:
    """SIGTERM to the server's process group (the arbiter and its workers), then wait."""
    try:
        os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()


@pytest.fixture(scope="session")
def server(world: World) -> Iterator[Server]:
    """The service on the world's champion, API key on, 2 workers, champion polled every second."""
    running = start_server(world, world.root / "decision_log.sqlite")
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def uplift_bundle(small_world: Path) -> Bundle:
    """The three score models and the uplift learners of the small world, in one bundle."""
    from tests.training.registry.test_bundle import train_all
    from tests.training.uplift.test_fit import uplift_on

    base = train_all(small_world).bundle()
    learners = uplift_on(small_world).learners
    return Bundle(base.builder, base.config, base.models, base.metadata, learners)


@dataclass(frozen=True)
class Registry:
    """A temporary MLflow store holding `uplift_bundle` as version `version`."""

    tracking_uri: str
    version: str

    def env(self) -> dict[str, str]:
        return os.environ | {"MLFLOW_TRACKING_URI": self.tracking_uri}


@pytest.fixture(scope="module")
def registry(
    small_world: Path, uplift_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """Register the bundle once per module; MLFLOW_TRACKING_URI points at the store meanwhile."""
    import mlflow

    from tests.training.registry.test_bundle import migrated_store, register, train_all, use_store

    with pytest.MonkeyPatch.context() as patch:
        db = use_store(migrated_store(tmp_path_factory), tmp_path_factory.mktemp("store"), patch)
        version = register(train_all(small_world), uplift_bundle)
        yield Registry(f"sqlite:///{db}", version)
    mlflow.set_tracking_uri(None)
