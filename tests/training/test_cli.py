"""The `nextbest` program end to end, as a user runs it: exit codes, one-line errors, outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

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
