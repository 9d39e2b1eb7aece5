"""Fault injection on real batch runs (issue 16): two jobs finishing into one --out together while a
reader watches it, and outputs that cannot be written, refused in one line before any work."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.batch.job import score
from serving.batch.settings import BatchSettings
from tests.serving.conftest import AS_OF, Registry
from training.cli import app

pytestmark = [pytest.mark.fault, pytest.mark.slow]


def test_concurrent_runs_swap_the_output_whole_and_readers_never_miss_it(
    small_world: Path, registry: Registry, tmp_path: Path
) -> None:
    out = tmp_path / "score"
    settings = BatchSettings(chunk_customers=1500)
    score(small_world, AS_OF, out, registry.version, settings)
    misses, reads, stop = [0], [0], threading.Event()

    def reader() -> None:
        while not stop.is_set():
            reads[0] += 1
            if not (out / "_nextbest.json").is_file():
                misses[0] += 1

    failures: list[BaseException] = []

    def job() -> None:
        try:
            score(small_world, AS_OF, out, registry.version, settings)
        except BaseException as exc:
            failures.append(exc)

    watching = threading.Thread(target=reader)
    watching.start()
    jobs = [threading.Thread(target=job) for _ in range(2)]
    for thread in jobs:
        thread.start()
    for thread in jobs:
        thread.join()
    stop.set()
    watching.join()
    assert not failures, failures
    assert reads[0] > 100 and misses == [0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["score"]  # no .old-PID, no temporaries
    assert sorted(p.name for p in out.iterdir()) == [
        "_drift.json",
        "_nextbest.json",
        "_profile.json",
        "actions.parquet",
        f"as_of={AS_OF.isoformat()}",
        "scores.parquet",
    ]


@pytest.mark.parametrize("where", ["under a file", "read-only file system"])
def test_an_unwritable_out_fails_in_one_line_before_any_work(
    small_world: Path, registry: Registry, tmp_path: Path, where: str
) -> None:
    """`--model 999` names no version: the output is checked first, so its error is the one."""
    (tmp_path / "file").write_text("x")
    out = tmp_path / "file" / "score" if where == "under a file" else Path("/proc/nextbest-score")
    common = ["--data", str(small_world), "--as-of", AS_OF.isoformat(), "--model", "999"]
    runner = CliRunner()
    env = {"MLFLOW_TRACKING_URI": registry.tracking_uri}
    for command, target in (("score", out), ("materialize", out / "store.sqlite")):
        result = runner.invoke(app, [command, *common, "--out", str(target)], env=env)
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and "cannot write" in lines[0] and "999" not in lines[0]
