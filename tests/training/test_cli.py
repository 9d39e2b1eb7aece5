"""The `nextbest` program end to end, as a user runs it: exit codes, one-line errors, outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from tests.training.data.test_contract import append_row, broken, set_cell
from training.cli import app

NEXTBEST = str(Path(sys.executable).with_name("nextbest"))


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NEXTBEST, *map(str, args)], capture_output=True, text=True, timeout=300, check=False
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.mark.slow
def test_synth_validate_features_on_the_demo_config(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    proc = run("synth", "--customers", 1200, "--seed", 5, "--out", data)
    assert proc.returncode == 0, proc.stderr
    assert "1,200 customers" in proc.stdout
    assert (tmp_path / "demo_truth" / "manifest.json").exists()

    proc = run("validate", "--data", data, "--config", "training/demo/config.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "OK: valid (data and config agree)" in proc.stdout

    out = tmp_path / "features.parquet"
    proc = run("features", "--data", data, "--as-of", "2026-08-03", "--out", out)
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_parquet(out)
    assert len(frame) == 1200 and frame.customer_id.is_unique
    assert {"complaints_30d", "unresolved_contacts_30d", "days_since_signup_date"} <= set(frame)
    assert (frame.as_of == pd.Timestamp("2026-08-03")).all()


def test_validate_names_the_unknown_action_of_the_catalog(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "customers.csv").write_text("customer_id,plan\nA,basic\nB,premium\n")
    (data / "events.csv").write_text("customer_id,ts,channel,event_type,value\n")
    (data / "exposures.csv").write_text(
        "customer_id,ts,action_id,propensity\nA,2026-01-01,control,0.5\nB,2026-01-01,sms_blast,0.5\n"
    )
    before = sorted(p.name for p in data.iterdir())
    proc = run("validate", "--data", data, "--config", "training/demo/config.yaml")
    assert_one_line_error(proc, "exposures.csv", "action_id", "sms_blast")
    assert sorted(p.name for p in data.iterdir()) == before


def test_validate_rejects_a_bad_config_in_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "outcomes:\n  churn: {role: churn, kind: avg, event_types: [churn], horizon_days: 90}\n"
        "objective: {value_outcome: churn}\n"
    )
    assert_one_line_error(run("validate", "--config", cfg), "config.yaml", "outcomes.churn.kind")


def test_validate_rejects_an_unknown_rule_name(tmp_path: Path) -> None:
    data = tmp_path / "d"
    data.mkdir()
    (data / "customers.csv").write_text("customer_id,plan\nA,basic\n")
    (data / "events.csv").write_text(
        "customer_id,ts,channel,event_type,value\nA,2026-01-01,web,visit,\n"
    )
    (tmp_path / "actions.yaml").write_text(
        "actions:\n  - {id: gift, name: Gift, cost: 1, eligibility: 'complaints_300d > 0'}\n"
    )
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "outcomes:\n  churn: {role: churn, kind: any, event_types: [churn], horizon_days: 90}\n"
        "objective: {value_outcome: churn}\nactions: actions.yaml\n"
    )
    proc = run("validate", "--data", data, "--config", cfg)
    assert_one_line_error(proc, "actions.yaml", "gift", "complaints_300d")


def test_bad_date_and_missing_data_dir_are_user_errors(tmp_path: Path) -> None:
    proc = run("features", "--data", tmp_path / "nowhere", "--as-of", "2026-13-01", "--out", "x")
    assert_one_line_error(proc, "--as-of", "2026-13-01")
    proc = run("validate", "--data", tmp_path / "nowhere")
    assert_one_line_error(proc, "nowhere")


# Every rule of docs/data.md through the command line: exit 2, one line naming file/column/example,
# no traceback, nothing written. (The per-rule details live in test_contract.py; this is the
# user's view of the same rules.)
CONTRACT_CASES = {
    "duplicate customer_id": (
        append_row("customers", customer_id="C2", age=1, plan="gold", vip=False),
        ("customers.csv", "customer_id", "C2"),
    ),
    "event for an unknown customer": (
        append_row("events", customer_id="ZZ9", ts="2026-03-05", channel="web", event_type="visit"),
        ("events.csv", "customer_id", "ZZ9"),
    ),
    "exposure for an unknown customer": (
        append_row(
            "exposures", customer_id="ZZ8", ts="2026-02-01", action_id="control", propensity=1
        ),
        ("exposures.csv", "customer_id", "ZZ8"),
    ),
    "propensity above 1": (
        set_cell("exposures", 1, "propensity", 1.5),
        ("exposures.csv", "propensity", "C2"),
    ),
    "propensity of 0": (set_cell("exposures", 0, "propensity", 0.0), ("propensity", "0042")),
    "timestamp that does not parse": (
        set_cell("events", 2, "ts", "yesterday"),
        ("events.csv", "ts", "C3"),
    ),
    "value that is not a number": (
        set_cell("events", 1, "value", "twelve"),
        ("events.csv", "value", "C2"),
    ),
    "empty customer id": (set_cell("events", 3, "customer_id", " "), ("events.csv", "customer_id")),
    "missing column": (
        lambda frames: frames.__setitem__("events", frames["events"].drop(columns="channel")),
        ("events.csv", "channel"),
    ),
    "missing table": (lambda frames: frames.pop("events"), ("events", "missing")),
}


@pytest.mark.parametrize("case", sorted(CONTRACT_CASES))
def test_validate_rejects_each_contract_violation(tmp_path: Path, case: str) -> None:
    edit, fragments = CONTRACT_CASES[case]
    data = broken(tmp_path, "csv", edit)
    before = sorted(p.name for p in data.iterdir())
    result = CliRunner().invoke(app, ["validate", "--data", str(data)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert sorted(p.name for p in data.iterdir()) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "file"), [("telco", "Telco-Customer-Churn.csv"), ("hillstrom", "hillstrom.csv")]
)
def test_imported_public_data_validates_with_its_own_config(
    tmp_path: Path, command: str, file: str
) -> None:
    from tests.conftest import shared_dataset

    src = shared_dataset(file)
    out = tmp_path / command
    imported = CliRunner().invoke(app, ["import", command, "--src", str(src), "--out", str(out)])
    assert imported.exit_code == 0, imported.output
    proc = run("validate", "--data", out, "--config", out / "config.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "OK: valid (data and config agree)" in proc.stdout
