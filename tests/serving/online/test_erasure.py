"""`nextbest forget`: after it, no file and no table holds a trace of the customer (the online
store, the contact history's decisions, feedback and consent on SQLite and on PostgreSQL, the
event store and its outbox, exported exposures and feedback), other customers are untouched, and
the erasure log names the customer by a salted hash only."""

from __future__ import annotations

import json
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from serving.history.engine import history_url
from serving.history.exports import export_exposures, export_feedback
from serving.history.log import DecisionLog
from serving.online.erasure import hashed
from serving.online.events import Event, EventStore
from serving.online.outbox import append, claim, ensure_schema
from tests.serving.conftest import World
from tests.serving.history.test_log import record
from training.cli import app

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
SALT = "a-test-salt-not-a-secret"


def two_customers(store: Path) -> tuple[str, str]:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as con:
        ids = [r[0] for r in con.execute("SELECT customer_id FROM features ORDER BY customer_id")]
    con.close()
    return ids[len(ids) // 2], ids[len(ids) // 2 + 1]


def fill_history(source: str | Path, customers: tuple[str, ...]) -> None:
    log = DecisionLog(source)
    for customer in customers:
        shown = record(customer, ("retention_discount", "apology_credit"))
        log.record(shown)
        log.feedback(shown.decision_id, "retention_discount", "accepted", NOW)
        log.record_consent([(customer, datetime(2026, 11, 1, 8), "email", "opt_out")], NOW)
    log.close()


def fill_events(path: Path, customers: tuple[str, ...]) -> None:
    events = EventStore(path)
    ensure_schema(events)
    for customer in customers:
        done = events.ingest(
            [Event(customer, datetime(2026, 11, 1, 8), "app", "complaint", None, "too slow")],
            NOW,
        )
        seq = done.stored[0][0]
        assert claim(events, customer, seq, NOW, timedelta(minutes=5))
        append(events, customer, seq, ["apology_credit"], NOW, {"customer_id": customer}, [seq])
    events.close()


def traces(root: Path, customer: str) -> list[str]:
    """Every file under `root` whose bytes hold the id."""
    needle = customer.encode()
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def rows_mentioning(url: str, customer: str) -> int:
    engine = create_engine(history_url(url))
    with engine.connect() as con:
        found = sum(
            int(
                con.execute(
                    text(f"SELECT count(*) FROM {table} AS t WHERE t::text LIKE :id"),  # noqa: S608
                    {"id": f"%{customer}%"},
                ).scalar_one()
            )
            for table in ("decisions", "feedback", "consent")
        )
    engine.dispose()
    return found


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_forget_leaves_no_trace_of_the_customer(
    backend: str,
    world: World,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "out"
    root.mkdir()
    store = root / "online_store.sqlite"
    shutil.copy(world.store, store)
    gone, kept = two_customers(store)
    assert traces(root, gone)  # the store holds the customer (features and journey)
    history: str | Path = (
        root / "decision_log.sqlite" if backend == "sqlite" else request.getfixturevalue("pg_url")
    )
    fill_history(history, (gone, kept))
    fill_events(root / "event_store.sqlite", (gone, kept))
    exports = root / "exports"
    export_exposures(history, exports)
    export_feedback(history, exports)
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(f"{gone}\n\n")
    monkeypatch.setenv("NEXTBEST_ERASURE_SALT", SALT)
    before = {p: p.read_bytes() for p in (exports / "exposures.parquet",)}
    assert all(gone.encode() in b for b in before.values())

    url = ["--database-url", str(history)] if backend == "postgresql" else ["--log", str(history)]
    result = CliRunner().invoke(
        app,
        ["forget", "--customers-file", str(ids_file), *url, "--store", str(store),
         "--events", str(root / "event_store.sqlite"), "--exports", str(exports),
         "--erasure-log", str(root / "erasures.jsonl")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert gone not in result.output

    assert traces(root, gone) == []
    if backend == "postgresql":
        assert rows_mentioning(str(history), gone) == 0
        assert rows_mentioning(str(history), kept) == 3
    with sqlite3.connect(store) as con:
        assert (
            con.execute("SELECT count(*) FROM features WHERE customer_id = ?", (kept,)).fetchone()[
                0
            ]
            == 1
        )
    con.close()
    assert pd.read_parquet(exports / "exposures.parquet")["customer_id"].tolist() == [kept]
    assert len(DecisionLog(history).contacts(kept, NOW - timedelta(days=1))) == 1
    entry = json.loads((root / "erasures.jsonl").read_text())
    assert entry["customers_hmac_sha256"] == [hashed(gone, SALT.encode())]
    assert entry["removed"]["decisions"] == 1 and entry["removed"]["event_store"] == 3
    assert entry["removed"]["consent"] == 1


def test_forget_without_a_customer_is_a_user_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["forget", "--log", str(tmp_path / "log.sqlite")])
    assert result.exit_code == 2 and "--customer" in result.output
