"""Drift of whole batch runs on a real MLflow store: a fresh sample of the same world raises no flag
against the training reference, a shifted copy (purchase values doubled, a channel renamed) does;
runs keep their as-of partitions and compare with the previous one; `--fail-on-drift` exits 3 and
the run is logged to MLflow."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from serving.batch.job import score
from serving.batch.partitions import partition_name
from serving.batch.population import iter_features, plan_population
from serving.batch.settings import BatchSettings
from tests.serving.conftest import AS_OF, Registry
from training.data.contract import open_dataset
from training.registry.bundle import Bundle

NEXTBEST = str(Path(sys.executable).with_name("nextbest"))
CHUNK = 1500
FILES = ("scores.parquet", "actions.parquet", "_nextbest.json", "_drift.json", "_profile.json")


@pytest.fixture(scope="module")
def fresh_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another sample of the small world's population (another seed, the same parameters)."""
    from training.synth.generate import synthesize
    from training.synth.world import WorldConfig

    out = tmp_path_factory.mktemp("fresh") / "demo"
    synthesize(6000, out, seed=12, cfg=replace(WorldConfig(), chunk_size=3000, truth_reps=1))
    return out


@pytest.fixture(scope="module")
def shifted_world(fresh_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fresh sample with every purchase worth twice as much and channel 'web' renamed."""
    out = tmp_path_factory.mktemp("shifted") / "demo"
    shutil.copytree(fresh_world, out, ignore=shutil.ignore_patterns("*truth*"))
    events = pd.read_parquet(out / "events.parquet")
    purchase = events["event_type"] == "purchase"
    events.loc[purchase, "value"] = events.loc[purchase, "value"] * 2
    events["channel"] = events["channel"].replace({"web": "website"})
    events.to_parquet(out / "events.parquet", index=False)
    return out


@pytest.fixture(scope="module")
def watched_registry(
    small_world: Path, uplift_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Registry]:
    """The uplift bundle with a training reference of the small world's customers as of AS_OF,
    registered in a fresh store."""
    from tests.training.registry.test_bundle import migrated_store, register, train_all, use_store

    b = uplift_bundle
    bundle = Bundle(b.builder, b.config, b.models, b.metadata, b.uplift, b.lifetime)
    with open_dataset(small_world).connect() as con:
        population = plan_population(con, bundle.config, AS_OF, 10**9)
        [(_, features)] = list(iter_features(con, bundle.builder, population))
    bundle.reference = bundle.fit_reference(features)
    with pytest.MonkeyPatch.context() as patch:
        db = use_store(migrated_store(tmp_path_factory), tmp_path_factory.mktemp("drift"), patch)
        version = register(train_all(small_world), bundle)
        yield Registry(f"sqlite:///{db}", version)
    mlflow.set_tracking_uri(None)


def run(registry: Registry, data: Path, out: Path, day=AS_OF, keep: int = 7):  # type: ignore[no-untyped-def]
    settings = BatchSettings(chunk_customers=CHUNK, keep_runs=keep)
    return score(data, day, out, registry.version, settings)


@pytest.mark.slow
def test_a_fresh_sample_of_the_same_world_raises_no_flag(
    fresh_world: Path, watched_registry: Registry, tmp_path: Path
) -> None:
    summary = run(watched_registry, fresh_world, tmp_path / "out")
    assert summary.drift is not None and summary.drift.reference is not None
    reference = summary.drift.reference
    assert len(reference.features) > 100 and len(reference.scores) == 4
    assert reference.flagged == [], reference.to_dict()["flagged"]
    assert max(c.psi for c in reference.features) < 0.1
    assert not summary.drift.flagged
    manifest = json.loads((tmp_path / "out" / "_nextbest.json").read_text())
    assert manifest["drift"]["flagged"] is False and manifest["drift"]["against_reference"] == []


@pytest.mark.slow
def test_a_shifted_copy_is_flagged_on_the_features_that_moved(
    shifted_world: Path, watched_registry: Registry, tmp_path: Path
) -> None:
    summary = run(watched_registry, shifted_world, tmp_path / "out")
    assert summary.drift is not None and summary.drift.reference is not None
    flagged = set(summary.drift.reference.flagged)
    expected = {
        "channel_web_count_30d",
        "channel_web_count_90d",
        "revenue_90d",
        "ltv",
        "window_value",
    }
    assert expected <= flagged, flagged
    moved = ("channel_web", "revenue", "purchase", "value", "ltv", "spend")
    others = [n for n in flagged if not any(word in n for word in moved)]
    assert others == []  # the rest of the world did not move
    report = json.loads((tmp_path / "out" / "_drift.json").read_text())
    assert report["flagged"] is True and report["reference"]["flagged"] == sorted(
        report["reference"]["flagged"], key=summary.drift.reference.flagged.index
    )
    lines = summary.drift.lines()
    assert lines and lines[0].startswith("drift against the training reference")


@pytest.mark.slow
def test_runs_keep_their_partitions_and_compare_with_the_previous_one(
    fresh_world: Path, shifted_world: Path, watched_registry: Registry, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    days = [AS_OF - timedelta(days=14), AS_OF - timedelta(days=7), AS_OF]
    first = run(watched_registry, fresh_world, out, days[0], keep=2)
    assert first.drift is not None and first.drift.previous is None
    run(watched_registry, fresh_world, out, days[1], keep=2)
    last = run(watched_registry, shifted_world, out, days[2], keep=2)
    kept = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert kept == [partition_name(days[1]), partition_name(days[2])]  # keep 2: the oldest went
    for name in FILES:  # the newest run is at the old paths too, the same file
        assert (out / name).read_bytes() == (out / partition_name(days[2]) / name).read_bytes()
    assert sorted(p.name for p in (out / partition_name(days[1])).iterdir()) == sorted(FILES)
    assert last.drift is not None and last.drift.previous is not None
    assert last.drift.previous.against == days[1].isoformat()
    assert any(n.startswith("channel_web_count") for n in last.drift.previous.flagged)
    manifest = json.loads((out / "_nextbest.json").read_text())
    assert manifest["as_of"] == AS_OF.isoformat()
    assert manifest["drift"]["previous_as_of"] == days[1].isoformat()
    assert last.drift.mix is not None and set(last.drift.mix.after) >= {"none"}
    assert sum(last.drift.mix.after.values()) == pytest.approx(1.0)


def cli(registry: Registry, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            NEXTBEST,
            "score",
            "--model",
            registry.version,
            "--chunk-size",
            str(CHUNK),
            *map(str, args),
        ],
        env=registry.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_fail_on_drift_exits_3_for_schedulers_and_the_run_is_in_mlflow(
    fresh_world: Path, shifted_world: Path, watched_registry: Registry, tmp_path: Path
) -> None:
    common = ("--as-of", AS_OF.isoformat(), "--fail-on-drift")
    calm = cli(watched_registry, "--data", fresh_world, "--out", tmp_path / "calm", *common)
    assert calm.returncode == 0, calm.stderr[-2000:]
    assert "drift: none against the training reference" in calm.stdout
    moved = cli(watched_registry, "--data", shifted_world, "--out", tmp_path / "moved", *common)
    assert moved.returncode == 3, moved.stderr[-2000:]
    assert "drift against the training reference" in moved.stdout
    assert "drift flagged" in moved.stderr
    assert (tmp_path / "moved" / "scores.parquet").is_file()  # the output is written all the same
    client = mlflow.MlflowClient(tracking_uri=watched_registry.tracking_uri)
    runs = client.search_runs(
        [client.get_experiment_by_name("nextbest").experiment_id],
        filter_string="tags.`nextbest.kind` = 'batch'",
    )
    flags = sorted(r.data.tags["drift.flagged"] for r in runs)
    assert flags == ["false", "true"]
    assert all("drift.reference.score.churn_probability.psi" in r.data.metrics for r in runs)
