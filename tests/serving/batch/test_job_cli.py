"""Whole batch jobs on a real MLflow store: byte-identical re-runs, atomic replacement, the Dask
engine on a 2-worker LocalCluster writing the same bytes, and the CLI's one-line user errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from serving.batch.job import score
from serving.batch.settings import BatchSettings
from tests.serving.conftest import AS_OF, Registry
from training.config import load_config

NEXTBEST = str(Path(sys.executable).with_name("nextbest"))
DAY = AS_OF
CHUNK = 1500  # several chunks on the small world's ~4,000 active customers
FILES = ("scores.parquet", "actions.parquet", "_nextbest.json")


def run_job(registry: Registry, out: Path, **settings: object) -> None:
    data = Path(str(settings.pop("data")))
    score(data, DAY, out, registry.version, BatchSettings(chunk_customers=CHUNK, **settings))  # type: ignore[arg-type]


def same_bytes(a: Path, b: Path) -> bool:
    return all((a / f).read_bytes() == (b / f).read_bytes() for f in FILES)


@pytest.fixture(scope="module")
def first(small_world: Path, registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("jobs") / "first"
    run_job(registry, out, data=small_world)
    return out


@pytest.mark.slow
def test_output_is_the_design_tables_plus_two_columns(first: Path) -> None:
    drift = ["_drift.json", "_profile.json"]
    partition = f"as_of={DAY.isoformat()}"
    assert sorted(p.name for p in first.iterdir()) == sorted([*FILES, *drift, partition])
    assert sorted(p.name for p in (first / partition).iterdir()) == sorted([*FILES, *drift])
    scores = pd.read_parquet(first / "scores.parquet")
    assert list(scores.columns) == [
        "customer_id",
        "churn_probability",
        "satisfaction",
        "ltv",
        "window_value",
        "model_version",
        "as_of",
        "control_group",
    ]
    manifest = json.loads((first / "_nextbest.json").read_text())
    assert manifest["customers"] == len(scores) and manifest["control_group"] > 0
    actions = pd.read_parquet(first / "actions.parquet")
    assert manifest["selected"] == actions["selected"].sum() > 0
    assert "campaign" in manifest  # the demo catalog caps retention_discount


@pytest.mark.slow
def test_rerun_is_byte_identical(small_world: Path, registry: Registry, first: Path) -> None:
    again = first.parent / "again"
    kept = first.parent / "text_scores"  # a bundle without a text model keeps nothing there
    run_job(registry, again, data=small_world, text_cache=kept)
    assert same_bytes(first, again) and not kept.exists()


@pytest.mark.slow
def test_a_failed_job_leaves_the_previous_output(
    small_world: Path, registry: Registry, first: Path
) -> None:
    out = first.parent / "replaced"
    shutil.copytree(first, out)

    class Dies:
        """A progress hook that fails after the first chunk, like a job killed mid-run."""

        def phase(self, name: str, total: int) -> None:
            pass

        def advance(self, n: int) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        score(small_world, DAY, out, registry.version, BatchSettings(chunk_customers=CHUNK), Dies())
    assert same_bytes(first, out)
    assert sorted(p.name for p in out.parent.iterdir() if p.name.startswith(".")) == []


@pytest.mark.slow
def test_dask_engine_writes_the_same_bytes_as_the_local_engine(
    small_world: Path, registry: Registry, first: Path
) -> None:
    out = first.parent / "dask"
    run_job(registry, out, data=small_world, engine="dask", workers=2)
    assert same_bytes(first, out)


@pytest.mark.slow
def test_a_budget_limits_the_campaign_spend(
    small_world: Path, registry: Registry, first: Path
) -> None:
    out = first.parent / "budget"
    run_job(registry, out, data=small_world, budget=500.0)
    actions = pd.read_parquet(out / "actions.parquet")
    chosen = actions[actions["selected"]]
    assert 0 < chosen["cost"].sum() <= 500.0 and chosen["customer_id"].is_unique
    unconstrained = pd.read_parquet(first / "actions.parquet")
    assert chosen["cost"].sum() < unconstrained.loc[unconstrained["selected"], "cost"].sum()
    manifest = json.loads((out / "_nextbest.json").read_text())
    assert manifest["campaign"]["budget"] == 500.0
    assert manifest["campaign"]["spend"] == pytest.approx(chosen["cost"].sum())


# ------------------------------------------------------------------------ CLI user errors
def cli(registry: Registry, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NEXTBEST, "score", *map(str, args)],
        env=registry.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.slow
def test_cli_errors_are_one_line(small_world: Path, registry: Registry, tmp_path: Path) -> None:
    out, version = tmp_path / "out", registry.version
    no_champion = cli(registry, "--data", small_world, "--as-of", AS_OF.isoformat(), "--out", out)
    assert_one_line_error(no_champion, "no champion yet")
    missing = cli(
        registry, "--data", small_world, "--as-of", AS_OF.isoformat(), "--out", out, "--model", "99"
    )
    assert_one_line_error(missing, "no version 99")
    early = cli(
        registry, "--data", small_world, "--as-of", "2001-01-01", "--out", out, "--model", version
    )
    assert_one_line_error(early, "--as-of 2001-01-01", "outside the data's range")
    broken = tmp_path / "broken"
    shutil.copytree(small_world, broken)
    customers = pd.read_parquet(broken / "customers.parquet")
    pd.concat([customers, customers.head(1)]).to_parquet(broken / "customers.parquet")
    invalid = cli(
        registry, "--data", broken, "--as-of", AS_OF.isoformat(), "--out", out, "--model", version
    )
    assert_one_line_error(invalid, "customers.parquet", "customer_id")
    assert not out.exists()


@pytest.mark.slow
def test_a_snapshot_export_scores_every_customer_from_its_training_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IBM Telco's shape: attributes as of the training date, churn events only after it. Every
    customer is scored on that date, and a month later every one who had not churned by then."""
    from datetime import date

    from tests.training.pipelines.test_train import static_only_churn_set
    from training.pipelines.train import train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    data = static_only_churn_set(tmp_path / "telco_like")
    version = str(train(data, data / "config.yaml").version)
    events = pd.read_csv(data / "events.csv", parse_dates=["ts"])
    first = score(data, date(2026, 1, 1), tmp_path / "first", version)
    assert first.customers == 3000
    later = score(data, date(2026, 2, 1), tmp_path / "later", version)
    scores = pd.read_parquet(tmp_path / "later" / "scores.parquet")
    churned = set(events.loc[events["ts"] < "2026-02-01", "customer_id"])
    assert len(churned) > 100 and later.customers == len(scores) == 3000 - len(churned)
    assert not churned & set(scores["customer_id"])
    assert scores["churn_probability"].between(0, 1).all()


@pytest.mark.slow
def test_cli_records_a_run_as_contacts_that_the_next_run_and_exposures_see(
    small_world: Path, registry: Registry, tmp_path: Path
) -> None:
    log, out = tmp_path / "history.sqlite", tmp_path / "out"
    run = ("--data", small_world, "--as-of", AS_OF.isoformat(), "--model", registry.version)
    assert_one_line_error(
        cli(registry, *run, "--out", out, "--record-contacts"), "--record-contacts: needs"
    )
    assert_one_line_error(cli(registry, *run, "--out", out, "--decision-log", log), "no such file")
    assert_one_line_error(
        cli(registry, *run, "--out", out, "--channel", "pigeon"), "--channel: unknown channel"
    )
    assert not out.exists() and not log.exists()
    first = cli(registry, *run, "--out", out, "--decision-log", log, "--record-contacts")
    assert first.returncode == 0, first.stderr[-2000:]
    manifest = json.loads((out / "_nextbest.json").read_text())
    recorded = manifest["contacts_recorded"]
    assert recorded == manifest["selected"] + manifest["control_group"]
    assert f"{recorded:,} decisions recorded" in first.stdout
    # the next run, from the recorded sends: every selected action is now inside its cool-down
    again = cli(registry, *run, "--out", tmp_path / "again", "--decision-log", log)
    assert again.returncode == 0, again.stderr[-2000:]
    sent = pd.read_parquet(out / "actions.parquet", filters=[("selected", "==", True)])
    after = pd.read_parquet(tmp_path / "again" / "actions.parquet")
    cooled = {a.id for a in load_config().catalog.actions if a.cooldown_days}
    pairs = set(zip(sent["customer_id"], sent["action_id"], strict=True))
    still = set(zip(after["customer_id"], after["action_id"], strict=True))
    assert {p for p in pairs if p[1] in cooled} and not {p for p in pairs if p[1] in cooled} & still
    exported = subprocess.run(
        [NEXTBEST, "export-exposures", "--log", str(log), "--out", str(tmp_path / "exp")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-2000:]
    exposures = pd.read_parquet(tmp_path / "exp" / "exposures.parquet")
    assert len(exposures) == recorded
    assert set(exposures[exposures["action_id"] != "control"]["customer_id"]) == set(
        sent["customer_id"]
    )
    # each send logs the greedy ranking's first action (rank 1 of `actions`), and each
    # control-group customer the action they would have been sent (`control`: nothing worth it)
    ranked = pd.read_parquet(out / "actions.parquet", filters=[("rank", "==", 1)])
    first = dict(zip(ranked["customer_id"], ranked["action_id"], strict=True))
    sends = exposures[exposures["action_id"] != "control"]
    assert sends["greedy_action"].tolist() == [first[c] for c in sends["customer_id"]]
    held = exposures[exposures["action_id"] == "control"]
    catalog = set(load_config().catalog.ids)
    assert set(held["greedy_action"]) <= catalog | {"control"}
    # the control group is a random share: as many of its customers had an action worth giving
    acting = (held["greedy_action"] != "control").mean()
    assert acting > 0 and abs(acting - len(first) / (manifest["customers"] - len(held))) < 0.1
    share = load_config().decisioning.control_share
    assert ((held["propensity"] == share) == (held["greedy_action"] != "control")).all()
