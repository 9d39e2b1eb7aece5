"""Schema migrations: an empty database and a decision log written before migrations existed
(today's SQLite file, rows in it) both reach the latest version with every row kept, on SQLite and
on PostgreSQL, as does a history of version 2 (before arms and shadow decisions) and one of version
3 (before the greedy action was logged); a database newer than this code is refused; opening twice
is a no-op."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, inspect, select

from serving.history.engine import history_url
from serving.history.exports import exposures_frame, feedback_frame
from serving.history.log import DecisionLog
from serving.history.schema import (
    LATEST,
    MIGRATIONS,
    VERSION_TABLE,
    SchemaTooNewError,
    decisions,
)
from tests.serving.history.test_log import NOW, record

# the decision log's schema before this package: one SQLite file per host, no version table
LEGACY = """
CREATE TABLE IF NOT EXISTS decisions (
    decision_id TEXT PRIMARY KEY, ts TEXT NOT NULL, customer_id TEXT NOT NULL,
    channel TEXT NOT NULL, model_version TEXT NOT NULL, action_id TEXT NOT NULL,
    propensity REAL NOT NULL, control_group INTEGER NOT NULL, explored INTEGER NOT NULL,
    cold_start INTEGER NOT NULL, actions TEXT NOT NULL, context TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS decisions_customer ON decisions (customer_id, ts);
CREATE TABLE IF NOT EXISTS feedback (
    decision_id TEXT NOT NULL REFERENCES decisions (decision_id), customer_id TEXT NOT NULL,
    action_id TEXT NOT NULL, outcome TEXT NOT NULL, ts TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS feedback_customer ON feedback (customer_id, outcome, ts);
"""
ROWS = [
    ("d1", "2026-11-02T09:30:00.000000+00:00", "C1", "call_center", "3", "credit", 0.9, 0, 0, 0,
     '["credit", "call"]', "{}"),
    ("d2", "2026-11-02T09:31:00.000000+00:00", "C2", "call_center", "3", "control", 0.05, 1, 0, 0,
     "[]", "{}"),
]  # fmt: skip
# the same timestamp twice on d1/credit: only insertion order (SQLite's rowid) says which is last
FEEDBACK = [
    ("d1", "C1", "credit", "accepted", "2026-11-02T09:35:00.000000+00:00"),
    ("d1", "C1", "credit", "declined", "2026-11-02T09:35:00.000000+00:00"),
    ("d1", "C1", "call", "accepted", "2026-11-02T09:36:00.000000+00:00"),
]


def _history_at(
    version: int, backend: str, tmp_path: Path, request: pytest.FixtureRequest, more: str
) -> str:
    """A history as version `version` of this code left it, with one decision `d1` of C1 (its
    values of the columns that version added in `more`); returns its source."""
    source = (
        str(tmp_path / "log.sqlite") if backend == "sqlite" else request.getfixturevalue("pg_url")
    )
    engine = create_engine(history_url(source))
    with engine.begin() as con:
        for migration in MIGRATIONS[:version]:
            migration(con)
        con.exec_driver_sql(f"CREATE TABLE {VERSION_TABLE} (version INTEGER NOT NULL)")
        con.exec_driver_sql(f"INSERT INTO {VERSION_TABLE} (version) VALUES ({version})")  # noqa: S608
        con.exec_driver_sql(
            "INSERT INTO decisions VALUES ('d1', '2026-11-02T09:30:00.000000+00:00', 'C1', "
            f"'call_center', '3', 'credit', 0.9, 0, 0, 0, '[\"credit\"]', '{{}}'{more})"
        )
    engine.dispose()
    return source


def _version(source: str) -> int:
    engine = create_engine(history_url(source))
    with engine.connect() as con:
        version = int(con.exec_driver_sql(f"SELECT version FROM {VERSION_TABLE}").scalar_one())  # noqa: S608
    engine.dispose()
    return version


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_empty_database_is_migrated_to_the_latest_version(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    source = (
        str(tmp_path / "log.sqlite") if backend == "sqlite" else request.getfixturevalue("pg_url")
    )
    log = DecisionLog(source)
    log.record(record())
    log.close()
    assert _version(source) == LATEST
    engine = create_engine(history_url(source))
    assert {"decisions", "feedback", VERSION_TABLE} <= set(inspect(engine).get_table_names())
    engine.dispose()
    again = DecisionLog(source)  # a second open changes nothing
    assert again.count() == 1 and _version(source) == LATEST
    again.close()


def _legacy_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as con:
        con.executescript(LEGACY)
        con.executemany("INSERT INTO decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", ROWS)
        con.executemany("INSERT INTO feedback VALUES (?,?,?,?,?)", FEEDBACK)
    con.close()


def _legacy_postgres(url: str) -> None:
    import psycopg

    with psycopg.connect(url) as con:
        for statement in LEGACY.replace(" REAL ", " DOUBLE PRECISION ").split(";"):
            if statement.strip():
                con.execute(statement)
        with con.cursor() as cur:
            cur.executemany("INSERT INTO decisions VALUES (" + ",".join(["%s"] * 12) + ")", ROWS)
            cur.executemany("INSERT INTO feedback VALUES (%s,%s,%s,%s,%s)", FEEDBACK)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_decision_log_of_the_previous_schema_is_migrated_with_its_rows(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        source = str(tmp_path / "decision_log.sqlite")
        _legacy_sqlite(Path(source))
    else:
        source = request.getfixturevalue("pg_url")
        _legacy_postgres(source)
    log = DecisionLog(source)
    assert _version(source) == LATEST
    assert log.count() == 2
    since = NOW - timedelta(days=1)
    # the later of two same-time answers still wins after the migration (insertion order kept)
    assert [(c.action_id, c.ts) for c in log.contacts("C1", since)] == [
        ("call", datetime(2026, 11, 2, 9, 36, tzinfo=UTC))
    ]
    assert [c.action_id for c in log.declines("C1", since)] == ["credit"]
    log.record(record("C3", ts=NOW + timedelta(hours=2)))  # and it takes new rows
    log.feedback("d1", "credit", "accepted", NOW + timedelta(hours=1))
    assert {c.action_id for c in log.contacts("C1", since)} == {"call", "credit"}
    with log.engine.connect() as con:  # rows written before arms existed: the champion's, shown
        arms = con.execute(select(decisions.c.arm, decisions.c.shadow).distinct()).all()
    assert [tuple(a) for a in arms] == [("champion", 0)]
    log.close()
    exposures = exposures_frame(source)
    assert exposures["customer_id"].tolist() == ["C1", "C2", "C3"]
    assert exposures["propensity"].tolist()[:2] == [0.9, 0.05]
    assert feedback_frame(source)["outcome"].tolist() == ["accepted", "accepted"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_history_at_version_2_gains_arms_with_its_rows_kept(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Version 3 adds each decision's arm and shadow flag: a version-2 history (the release
    before challengers) keeps its rows as the champion's, shown, and takes shadow rows after."""
    source = _history_at(2, backend, tmp_path, request, "")
    log = DecisionLog(source)
    assert _version(source) == LATEST
    log.record(record("C2", arm="challenger", shadow=True))
    with log.engine.connect() as con:
        rows = con.execute(
            select(decisions.c.customer_id, decisions.c.arm, decisions.c.shadow).order_by(
                decisions.c.customer_id
            )
        ).all()
    assert [tuple(r) for r in rows] == [("C1", "champion", 0), ("C2", "challenger", 1)]
    log.feedback("d1", "credit", "accepted", NOW + timedelta(hours=1))
    log.close()
    assert exposures_frame(source)["customer_id"].tolist() == ["C1"]  # no shadow exposure


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_history_at_version_3_gains_the_greedy_action_with_its_rows_kept(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Version 4 keeps each decision's greedy first action: the rows of a version-3 history keep
    every value and read as not logged (NULL, a missing greedy_action in the export); new rows
    store theirs, a control-group decision the action it would have received."""
    source = _history_at(3, backend, tmp_path, request, ", 'challenger', 0")
    log = DecisionLog(source)
    assert _version(source) == LATEST
    log.record(record("C2", actions=(), control_group=True, propensity=0.05,
                      greedy_action="credit"))  # fmt: skip
    log.record(record("C3", greedy_action="control", explored=True))
    with log.engine.connect() as con:
        rows = con.execute(
            select(decisions.c.customer_id, decisions.c.action_id, decisions.c.arm,
                   decisions.c.greedy_action).order_by(decisions.c.customer_id)
        ).all()  # fmt: skip
    assert [tuple(r) for r in rows] == [
        ("C1", "credit", "challenger", None),
        ("C2", "control", "champion", "credit"),
        ("C3", "credit", "champion", "control"),
    ]
    log.close()
    exposures = exposures_frame(source)
    assert exposures["customer_id"].tolist() == ["C1", "C2", "C3"]
    assert exposures["greedy_action"].isna().tolist() == [True, False, False]
    assert exposures["greedy_action"].tolist()[1:] == ["credit", "control"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_history_at_version_4_gains_the_consent_table_with_its_rows_kept(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Version 5 keeps consent events posted to any replica: a version-4 history keeps its
    decisions and takes consent events after."""
    source = _history_at(4, backend, tmp_path, request, ", 'champion', 0, 'credit'")
    log = DecisionLog(source)
    assert _version(source) == LATEST == 5
    assert log.count() == 1 and log.consent_events() == []
    opt_out = ("C1", datetime(2026, 11, 2, 10, 0), "email", "opt_out")
    assert log.record_consent([opt_out, opt_out], NOW) == 1
    log.close()
    again = DecisionLog(source)  # a second replica reads it
    assert again.consent_events(["C1"]) == [opt_out]
    again.close()
    assert exposures_frame(source)["greedy_action"].tolist() == ["credit"]


def test_exports_of_a_migrated_log_equal_the_previous_code_s_queries(tmp_path: Path) -> None:
    """The exposures read by the previous code's own SQL on the legacy file, and the new export
    after migration, are the same frame (values and dtypes)."""
    path = tmp_path / "decision_log.sqlite"
    _legacy_sqlite(path)
    with sqlite3.connect(path) as con:
        before = pd.read_sql_query(
            "SELECT customer_id, ts, action_id, propensity FROM decisions WHERE cold_start = 0 "
            "ORDER BY ts",
            con,
        )
    con.close()
    before["ts"] = pd.to_datetime(before["ts"], utc=True, format="ISO8601").dt.tz_localize(None)
    after = exposures_frame(path)
    assert after["greedy_action"].isna().all()  # not logged before version 4
    pd.testing.assert_frame_equal(after.drop(columns="greedy_action"), before)


def test_a_database_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite"
    DecisionLog(path).close()
    with sqlite3.connect(path) as con:
        con.execute(f"UPDATE {VERSION_TABLE} SET version = {LATEST + 1}")  # noqa: S608
    con.close()
    with pytest.raises(SchemaTooNewError, match="upgrade nextbest"):
        DecisionLog(path)
