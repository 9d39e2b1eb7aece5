"""The serving commands of the CLI: user errors are one line and exit status 2."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from training.cli import app

runner = CliRunner()


def test_serve_without_a_store_says_to_materialize(tmp_path: Path) -> None:
    result = runner.invoke(app, ["serve", "--store", str(tmp_path / "none.sqlite")])
    assert result.exit_code == 2
    assert "nextbest materialize" in result.output


def test_export_exposures_without_a_log_is_a_user_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["export-exposures", "--log", str(tmp_path / "x"), "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "no decision log" in result.output


def test_materialize_rejects_a_bad_date(tmp_path: Path) -> None:
    result = runner.invoke(app, ["materialize", "--data", str(tmp_path), "--as-of", "yesterday"])
    assert result.exit_code == 2 and "not a date" in result.output


def test_a_database_url_of_another_kind_is_a_user_error(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["export-exposures", "--database-url", "mysql://u@h/db", "--out", str(tmp_path)]
    )
    assert result.exit_code == 2 and "postgresql://" in result.output


def test_export_exposures_reads_a_postgresql_history(pg_url: str, tmp_path: Path) -> None:
    from serving.history.log import DecisionLog
    from tests.serving.history.test_log import record

    log = DecisionLog(pg_url)
    log.record(record("C1"))
    log.close()
    result = runner.invoke(
        app, ["export-exposures", "--database-url", pg_url, "--out", str(tmp_path)]
    )
    assert result.exit_code == 0 and "wrote 1 exposures" in result.output
