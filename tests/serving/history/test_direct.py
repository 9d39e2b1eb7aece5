"""A decision's statements on SQLite run past SQLAlchemy (serving.history.direct) on a connection
with the engine's pragmas, read and write what the engine's statements do, and a history they
cannot use is unavailable (a 503), never another error."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from serving.history.direct import DirectSqlite
from serving.history.engine import BUSY_TIMEOUT_MS, open_engine
from serving.history.log import DecisionLog, HistoryUnavailableError
from tests.serving.history.test_log import NOW, record


def test_the_connection_has_the_engines_pragmas(tmp_path: Path) -> None:
    direct = DirectSqlite(open_engine(tmp_path / "log.sqlite", "FULL"))
    assert direct.run("PRAGMA busy_timeout", {}) == [(BUSY_TIMEOUT_MS,)]
    assert direct.run("PRAGMA journal_mode", {}) == [("wal",)]
    assert direct.run("PRAGMA synchronous", {}) == [(2,)]  # FULL
    direct.close()
    assert direct.run("SELECT :x + 1", {"x": 41}) == [(42,)]  # opened again


def test_direct_statements_agree_with_the_engines(tmp_path: Path) -> None:
    """Decisions recorded directly are the rows the engine reads, and the one-customer history
    read directly equals the engine's read of several customers, restricted to that one."""
    log = DecisionLog(tmp_path / "log.sqlite")
    for i in range(6):
        decision = record(f"C{i % 2}", ("credit", "call") if i % 3 else ("credit",))
        log.record(decision)
        outcome = "accepted" if i % 2 else "declined"
        log.feedback(decision.decision_id, "credit", outcome, NOW + timedelta(minutes=i))
    assert log.count() == 6
    since = NOW - timedelta(days=1)
    both = log.contact_history(since, customers=["C0", "C1"])  # through the engine
    for customer in ("C0", "C1"):
        one = log.contact_history(since, customers=[customer])  # direct
        assert one and sorted(one) == sorted(r for r in both if r[0] == customer)
        rows, consent = log.customer_policy_history(customer, since)  # direct
        assert sorted(rows) == sorted(one) and consent == []


def test_a_history_the_statements_cannot_use_is_unavailable(tmp_path: Path) -> None:
    """A history whose tables are gone (damaged, or replaced by another file) is
    HistoryUnavailableError for a decision's record and reads, which the service answers 503."""
    path = tmp_path / "log.sqlite"
    log = DecisionLog(path)
    log.record(record("C1"))
    with sqlite3.connect(path) as con:
        con.execute("DROP TABLE decisions")
    with pytest.raises(HistoryUnavailableError, match="contact history"):
        log.record(record("C1"))
    with pytest.raises(HistoryUnavailableError, match="contact history"):
        log.contact_history(NOW - timedelta(days=1), customers=["C1"])


def test_threads_sharing_a_log_lose_no_record_and_erasure_reopens(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "log.sqlite")

    def write(n: int) -> None:
        for _ in range(100):
            log.record(record(f"T{n}"))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.count() == 400
    assert log.forget(["T0"])[0] == 100
    again = record("T0")
    log.record(again)  # the direct connection, closed by the erasure, opens again
    log.feedback(again.decision_id, "credit", "accepted", NOW)
    assert log.count() == 301
    assert len(log.contact_history(NOW - timedelta(days=1), customers=["T0"])) == 1
