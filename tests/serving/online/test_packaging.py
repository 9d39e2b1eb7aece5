"""Shipping: a bundle exported as files is served without MLflow, and `nextbest bento` builds a
Bento that `bentoml serve` runs from another directory with no MLflow store beside it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from serving.online.bento_args import bento_defaults, service_environ
from serving.online.bundle_source import served_key
from serving.online.runtime import load_runtime
from serving.online.settings import ServingSettings
from tests.serving.conftest import Server, World, free_port, stop_server
from training.errors import ConfigError, NextbestError
from training.registry.bundle import Bundle
from training.registry.mlflow_models import export_bundle, resolve_version

OPTIONAL = ("mlflow", "matplotlib", "dask", "distributed")  # the train and dask extras
BIN = Path(sys.executable).parent


def blocker(folder: Path) -> Path:
    """A folder that, first on PYTHONPATH, makes importing the train and dask extras fail."""
    for name in OPTIONAL:
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(
            f"raise ImportError('{name} is not installed (the serve extra alone)')\n"
        )
    return folder


@pytest.fixture()
def exported(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", world.tracking_uri)
    export_bundle(None, tmp_path / "bundle")
    return tmp_path / "bundle"


# ---------------------------------------------------------------------------- settings, args
def test_bento_defaults_resolve_paths_against_the_bento_folder(tmp_path: Path) -> None:
    args = {"NEXTBEST_BUNDLE_DIR": "bundle", "NEXTBEST_WORKERS": 1, "NEXTBEST_DECISION_LOG": "/x"}
    assert bento_defaults(args, tmp_path) == {
        "NEXTBEST_BUNDLE_DIR": str(tmp_path / "bundle"),
        "NEXTBEST_WORKERS": "1",
        "NEXTBEST_DECISION_LOG": "/x",
    }
    with pytest.raises(ConfigError, match="BUNDLE: not a NEXTBEST_"):
        bento_defaults({"BUNDLE": "x"}, tmp_path)


def test_outside_a_bento_the_environment_is_all() -> None:
    assert service_environ({"NEXTBEST_WORKERS": "3"}) == {"NEXTBEST_WORKERS": "3"}


def test_a_bundle_folder_and_a_registry_reference_exclude_each_other() -> None:
    env = {"NEXTBEST_MODEL": "3", "NEXTBEST_BUNDLE_DIR": "/b"}
    with pytest.raises(ConfigError, match="NEXTBEST_BUNDLE_DIR: .*NEXTBEST_MODEL, not both"):
        ServingSettings.from_env(env)
    # empty is unset: how a Bento's baked-in folder is switched off for a registry version
    assert ServingSettings.from_env(env | {"NEXTBEST_BUNDLE_DIR": ""}).bundle_dir is None


# ---------------------------------------------------------------------------- bundle folders
@pytest.mark.slow
def test_an_exported_bundle_keeps_its_version_and_serves(world: World, exported: Path) -> None:
    champion = str(resolve_version(None).version)
    assert Bundle.load(exported).version == champion
    settings = ServingSettings(bundle_dir=exported, online_store=world.store)
    runtime = load_runtime(settings)
    assert runtime.version == champion
    assert runtime.key[0] == served_key(settings)
    row = runtime.store.get(next(iter(_customers(world.store))))
    assert set(runtime.decider.scores(row)) == {
        "churn_probability",
        "satisfaction",
        "ltv",
        "window_value",
    }


@pytest.mark.slow
def test_a_re_export_changes_the_key_the_reload_compares(world: World, exported: Path) -> None:
    settings = ServingSettings(bundle_dir=exported, online_store=world.store)
    before = served_key(settings)
    export_bundle(None, exported)  # replaced whole, by rename
    assert served_key(settings) != before
    with pytest.raises(NextbestError, match="not a bundle folder"):
        served_key(ServingSettings(bundle_dir=exported / "nope", online_store=world.store))


@pytest.mark.slow
def test_the_service_imports_and_loads_a_folder_without_the_train_extra(
    world: World, exported: Path, tmp_path: Path
) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import serving.online.service
        from serving.online.runtime import load_runtime
        from serving.online.settings import ServingSettings
        runtime = load_runtime(ServingSettings(bundle_dir={str(exported)!r},
                                               online_store={str(world.store)!r}))
        assert not {{m.split(".")[0] for m in sys.modules}} & set({OPTIONAL!r})
        print(runtime.version)
        """
    )
    env = os.environ | {"PYTHONPATH": str(blocker(tmp_path / "blocked"))}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == Bundle.load(exported).version


# ---------------------------------------------------------------------------- the Bento
@pytest.mark.slow
def test_bento_serves_on_its_own_from_another_directory(world: World, tmp_path: Path) -> None:
    """`nextbest bento` (what `make bento` runs), then `bentoml serve <tag>` elsewhere, with an
    empty MLflow store and the train and dask extras unimportable, answers POST /recommend."""
    home = tmp_path / "bentoml"
    base = {k: v for k, v in os.environ.items() if not k.startswith("NEXTBEST_")}
    build_env = base | {"BENTOML_HOME": str(home), "MLFLOW_TRACKING_URI": world.tracking_uri}
    started = time.monotonic()
    built = subprocess.run(
        [str(BIN / "nextbest"), "bento", "--store", str(world.store)],
        cwd=world.root,
        env=build_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    build_seconds = time.monotonic() - started
    assert built.returncode == 0, built.stderr[-3000:]
    tag = built.stdout.split("built Bento ", 1)[1].split(":", 2)
    tag_text = f"{tag[0]}:{tag[1]}"
    src = home / "bentos" / tag[0] / tag[1] / "src"
    assert (src / "bundle" / "metadata.json").is_file() and (src / "online_store.sqlite").is_file()
    assert (src / "serving" / "online" / "static" / "desktop.html").is_file()
    requirements = (src.parent / "env" / "python" / "requirements.txt").read_text()
    assert "bentoml==" in requirements and "lightgbm==" in requirements
    for absent in ("mlflow", "matplotlib", "dask", "pytest", "ruff", "selenium"):
        assert f"\n{absent}==" not in requirements

    elsewhere = tmp_path / "elsewhere"
    empty_mlflow = tmp_path / "empty-mlflow"
    elsewhere.mkdir()
    empty_mlflow.mkdir()
    log = tmp_path / "decisions" / "decision_log.sqlite"
    port = free_port()
    serve_env = base | {
        "BENTOML_HOME": str(home),
        "MLFLOW_TRACKING_URI": f"sqlite:///{empty_mlflow}/mlflow.db",
        "PYTHONPATH": str(blocker(tmp_path / "blocked")),
        "NEXTBEST_DECISION_LOG": str(log),
        "NEXTBEST_WORKERS": "1",
    }
    command = [sys.executable, "-m", "bentoml", "serve", tag_text, "--host", "127.0.0.1"]
    output = tmp_path / "serve.out"
    started = time.monotonic()
    with open(output, "wb") as sink:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=elsewhere,
            env=serve_env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", log, process)
    try:
        _wait_ready(server, output)
        ready_seconds = time.monotonic() - started
        champion = _champion(world)
        answers = []
        for customer in _customers(world.store, 20):
            status, body = server.call(
                "POST", "/recommend", {"customer_id": customer, "channel": "call_center"}
            )
            assert status == 200, body
            assert body["model_version"] == champion
            assert body["customer_id"] == customer and not body["cold_start"]
            assert set(body["scores"]) == {
                "churn_probability",
                "satisfaction",
                "ltv",
                "window_value",
            }
            answers.append(body)
        assert any(body["actions"] for body in answers), "some of 20 customers get an action"
        status, meta = server.call("GET", "/metadata")
        assert status == 200 and meta["store_customers"] == _count(world.store)
    finally:
        stop_server(server)
    with sqlite3.connect(log) as con:
        assert con.execute("SELECT count(*) FROM decisions").fetchone()[0] == len(answers)
    assert not any(empty_mlflow.iterdir()), "the served Bento touched MLflow"
    assert not any(elsewhere.iterdir())
    print(f"bento build {build_seconds:.1f} s, serve to ready {ready_seconds:.1f} s")


def _wait_ready(server: Server, output: Path, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"server exited: {output.read_text()[-3000:]}")
        try:
            if server.call("GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"not ready in {seconds} s: {output.read_text()[-3000:]}")


def _customers(store: Path, n: int = 5) -> list[str]:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as con:
        rows = con.execute("SELECT customer_id FROM features ORDER BY 1 LIMIT ?", (n,))
        return [r[0] for r in rows]


def _count(store: Path) -> int:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as con:
        return int(con.execute("SELECT count(*) FROM features").fetchone()[0])


def _champion(world: World) -> str:
    env = os.environ | {"MLFLOW_TRACKING_URI": world.tracking_uri}
    code = (
        "from training.registry.mlflow_models import resolve_version as r; print(r(None).version)"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()
