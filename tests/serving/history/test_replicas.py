"""Two `nextbest serve` processes on one PostgreSQL history (real BentoML, real HTTP on
127.0.0.1) enforce the contact policy together; and when PostgreSQL stops mid-run, /recommend
answers a clear 503 (never a 500), every answered decision is stored, and service resumes once
the database is back."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import create_engine, text

from serving.history.engine import history_url
from serving.history.log import DecisionLog
from tests.postgres import LocalPostgres, remove, start_local_postgres
from tests.serving.conftest import Server, World, start_server, stop_server
from tests.serving.test_contact_policy import NOW, POLICY, policy_bundle
from training.registry.bundle import Bundle

CUSTOMERS = 24


def known_customers(world: World, n: int) -> list[str]:
    with sqlite3.connect(f"file:{world.store}?mode=ro", uri=True) as con:
        rows = con.execute("SELECT customer_id FROM features ORDER BY customer_id LIMIT ?", (n,))
        ids = [r[0] for r in rows]
    con.close()
    return ids


def capped_actions() -> dict[str, tuple[int, int | None]]:
    """action -> (cooldown_days, max_per_90_days) of the demo catalog's capped actions."""
    catalog = yaml.safe_load(Path("training/demo/actions.yaml").read_text())
    return {
        a["id"]: (a.get("cooldown_days") or 0, a.get("max_per_90_days"))
        for a in catalog["actions"]
        if a.get("cooldown_days") or a.get("max_per_90_days")
    }


def cap_violations(url: str) -> int:
    """(customer, action) pairs with more accepted contacts than the caps allow: every contact of
    the test happens within minutes, so two of a capped action are one violation."""
    engine = create_engine(history_url(url))
    with engine.connect() as con:
        rows = con.execute(
            text(
                "SELECT customer_id, action_id, count(*) FROM (SELECT customer_id, action_id, "
                "outcome, row_number() OVER (PARTITION BY decision_id, action_id ORDER BY ts DESC,"
                " seq DESC) AS k FROM feedback) AS latest WHERE k = 1 AND outcome = 'accepted' "
                "GROUP BY customer_id, action_id"
            )
        ).all()
    engine.dispose()
    return sum(1 for _, action, n in rows if action in capped_actions() and n > 1)


def recommend(server: Server, customer: str) -> tuple[int, dict]:
    body = {"customer_id": customer, "channel": "call_center", "max_actions": 3}
    status, answer = server.call("POST", "/recommend", body)
    return status, answer if isinstance(answer, dict) else {"text": answer}


def accept(server: Server, decision_id: str, action_id: str) -> int:
    body = {"decision_id": decision_id, "action_id": action_id, "outcome": "accepted"}
    return server.call("POST", "/feedback", body)[0]


def decisions_in(url: str) -> set[str]:
    engine = create_engine(history_url(url))
    with engine.connect() as con:
        ids = {r[0] for r in con.execute(text("SELECT decision_id FROM decisions"))}
    engine.dispose()
    return ids


def test_two_replicas_on_one_postgres_enforce_every_cap_together(
    world: World, pg_url: str, tmp_path: Path
) -> None:
    env = {"NEXTBEST_DATABASE_URL": pg_url, "NEXTBEST_WORKERS": "1"}
    replicas = [start_server(world, tmp_path / f"replica{i}.sqlite", **env) for i in (0, 1)]
    try:
        customers = known_customers(world, CUSTOMERS)
        answered: set[str] = set()
        outcomes: Counter[str] = Counter()
        with ThreadPoolExecutor(8) as pool:
            for _ in range(3):  # rounds: what was accepted must not be offered again
                pairs = list(
                    pool.map(lambda c: [recommend(r, c) for r in replicas], customers)
                )  # each customer asks both replicas
                accepts = []
                for asked in pairs:
                    for replica, (status, answer) in zip(replicas, asked, strict=True):
                        assert status == 200, answer
                        answered.add(answer["decision_id"])
                        if answer["actions"]:
                            action = answer["actions"][0]["action_id"]
                            accepts.append((replica, answer["decision_id"], action))
                statuses = list(pool.map(lambda a: accept(*a), accepts))
                assert set(statuses) <= {200, 409}
                outcomes.update(str(s) for s in statuses)
        assert outcomes["409"] > 0, "no concurrent acceptance of one action was refused"
        assert cap_violations(pg_url) == 0
        assert decisions_in(pg_url) == answered  # every answer stored, nothing unanswered
    finally:
        for replica in replicas:
            stop_server(replica)


def post_consent(server: Server, customer: str, kind: str, hours_ago: float) -> None:
    ts = (NOW - timedelta(hours=hours_ago)).replace(tzinfo=None).isoformat()
    event = {"customer_id": customer, "ts": ts, "channel": "email", "event_type": kind}
    status, answer = server.call("POST", "/events", {"events": [event]})
    assert status == 200, answer


def shown_on_email(server: Server, customer: str) -> tuple[list[str], str | None]:
    body = {"customer_id": customer, "channel": "email", "max_actions": 5}
    status, answer = server.call("POST", "/recommend", body)
    assert status == 200, answer
    return [a["action_id"] for a in answer["actions"]], answer["reason"]


def test_a_consent_event_posted_to_one_replica_holds_on_the_other(
    world: World, uplift_bundle: Bundle, pg_url: str, tmp_path: Path
) -> None:
    """Each replica has its own event store; the opt-out reaches the other through the shared
    history, at once, and so does the opt-in that follows it."""
    folder = policy_bundle(uplift_bundle, POLICY).save(tmp_path / "bundle")
    replicas = [
        start_server(
            world,
            tmp_path / f"replica{i}.sqlite",
            NEXTBEST_DATABASE_URL=pg_url,
            NEXTBEST_WORKERS="1",
            NEXTBEST_BUNDLE_DIR=str(folder),
            NEXTBEST_EVENT_STORE=str(tmp_path / f"events{i}.sqlite"),
            NEXTBEST_NOW=NOW.isoformat(),
        )  # fmt: skip
        for i in (0, 1)
    ]
    try:
        customer = next(c for c in known_customers(world, 80) if shown_on_email(replicas[1], c)[0])
        post_consent(replicas[0], customer, "opt_out", hours_ago=2)
        for replica in replicas:
            assert shown_on_email(replica, customer) == ([], "no consent to be contacted on email")
        post_consent(replicas[1], customer, "opt_in", hours_ago=1)
        assert shown_on_email(replicas[0], customer)[0]
        with sqlite3.connect(tmp_path / "events1.sqlite") as con:  # replica 1 never saw it
            assert con.execute(
                "SELECT count(*) FROM events WHERE event_type = 'opt_out'"
            ).fetchone() == (0,)
        con.close()
    finally:
        for replica in replicas:
            stop_server(replica)


@pytest.fixture
def own_postgres() -> LocalPostgres:
    """A server of this test's own: it is stopped and started again mid-run."""
    from tests.postgres import binaries

    if binaries() is None:
        pytest.skip("no PostgreSQL binaries")
    server = start_local_postgres()
    yield server  # type: ignore[misc]
    remove(server)


def test_postgres_down_is_a_503_and_nothing_answered_is_lost(
    world: World, own_postgres: LocalPostgres, tmp_path: Path
) -> None:
    url = own_postgres.new_database()
    events = tmp_path / "events.sqlite"
    server = start_server(
        world, tmp_path / "outage.sqlite", NEXTBEST_DATABASE_URL=url,
        NEXTBEST_EVENT_STORE=str(events),
    )  # fmt: skip
    customers = known_customers(world, 50)
    results: list[tuple[float, int, dict]] = []
    stop = threading.Event()

    def fire() -> None:
        i = 0
        while not stop.is_set():
            status, answer = recommend(server, customers[i % len(customers)])
            results.append((time.monotonic(), status, answer))
            i += 1
            time.sleep(0.02)

    sender = threading.Thread(target=fire)
    try:
        sender.start()
        time.sleep(2)
        down_at = time.monotonic()
        own_postgres.stop("fast")
        time.sleep(1)
        # a consent event while the history is down: 503, and not stored in the event store either
        opted = {"events": [{"customer_id": customers[0], "ts": "2026-11-01T10:00:00",
                             "channel": "email", "event_type": "opt_out"}]}  # fmt: skip
        status, answer = server.call("POST", "/events", opted)
        assert status == 503 and "contact history" in str(answer), answer
        time.sleep(2)
        own_postgres.start()
        up_at = time.monotonic()
        deadline = up_at + 30
        while time.monotonic() < deadline and not any(
            t > up_at + 1 and s == 200 for t, s, _ in results
        ):
            time.sleep(0.2)
        time.sleep(1)
        retried = server.call("POST", "/events", opted)  # the client's retry, once it is back
    finally:
        stop.set()
        sender.join()
        stop_server(server)
    statuses = Counter(s for _, s, _ in results)
    assert set(statuses) <= {200, 503}, statuses  # never a 500
    down = [a for t, s, a in results if s == 503]
    assert down, "no request saw the database down"
    assert all("contact history" in str(a) for a in down), Counter(str(a)[:120] for a in down)
    assert any(t > up_at and s == 200 for t, s, _ in results), "service did not resume"
    assert any(t < down_at and s == 200 for t, s, _ in results)
    answered = {a["decision_id"] for _, s, a in results if s == 200}
    assert answered <= decisions_in(url)  # every decision answered is stored
    assert retried[0] == 200, retried
    with sqlite3.connect(events) as con:  # stored once: by the retry, none by the refused post
        assert con.execute("SELECT event_type FROM events").fetchall() == [("opt_out",)]
    con.close()
    history = DecisionLog(url)
    assert [kind for *_, kind in history.consent_events([customers[0]])] == ["opt_out"]
    history.close()
