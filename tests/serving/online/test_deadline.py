"""The client's deadline, X-Request-Deadline: parsed strictly (a malformed value is a 400 naming the
header), and over real HTTP on 127.0.0.1 a request whose deadline has passed, on arrival or while
its body was still arriving, gets a 408 and nothing of it is decided, logged or stored; a future
deadline changes nothing.
"""

from __future__ import annotations

import http.client
import json
import re
import sqlite3
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from serving.online.deadline import (
    HEADER,
    BadDeadlineError,
    expired_message,
    parse_deadline,
    passed,
)
from tests.serving.conftest import API_KEY, Server, World

# --- parsing (no server) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (b"1793614503", 1793614503.0),
        (b"1793614503.25", 1793614503.25),
        (b" 1793614503.000001 ", 1793614503.000001),
        (b"2026-11-02T10:15:03.25Z", 1793614503.25),
        (b"2026-11-02T11:15:03.25+01:00", 1793614503.25),
        (b"2026-11-02 10:15:03Z", 1793614503.0),  # RFC 3339 allows the space
    ],
)
def test_epoch_seconds_and_rfc3339_times_are_deadlines(value: bytes, seconds: float) -> None:
    assert parse_deadline([value]) == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize(
    "value",
    [b"", b"soon", b"-5", b"1e9", b"nan", b"inf", b"0x10", b"3 s", b"1793614503.", b"2026-11-02",
     b"2026-11-02T10:15:03", b"2026-11-02T10:15:03 UTC", b"\xff\xfe"],
)  # fmt: skip
def test_anything_else_is_refused_naming_the_header_not_the_value(value: bytes) -> None:
    with pytest.raises(BadDeadlineError) as caught:
        parse_deadline([value])
    message = str(caught.value)
    assert message.startswith(f"{HEADER}: ") and "epoch seconds" in message


def test_one_deadline_or_none() -> None:
    assert parse_deadline([]) is None
    with pytest.raises(BadDeadlineError, match="sent 2 times"):
        parse_deadline([b"1793614503", b"1793614504"])
    with pytest.raises(BadDeadlineError) as caught:
        parse_deadline([b"MARKER-7731"])
    assert "MARKER" not in str(caught.value)  # the value is not echoed


def test_a_deadline_has_passed_from_its_instant_on() -> None:
    assert not passed(None, 1e12)
    assert not passed(100.0, 99.999)
    assert passed(100.0, 100.0) and passed(100.0, 100.5)
    assert "passed 0.500 s" in expired_message(100.0, 100.5)


# --- over real HTTP ----------------------------------------------------------------------------


def epoch(offset_seconds: float) -> str:
    return f"{time.time() + offset_seconds:.6f}"


def ask(customer: str, rid: str) -> dict[str, object]:
    return {"customer_id": customer, "channel": "call_center", "context": {"rid": rid}}


def logged_rids(server: Server, rid: str) -> int:
    """Decisions of the log whose context carries this request id."""
    with sqlite3.connect(server.log) as con:
        rows = con.execute("SELECT context FROM decisions WHERE context LIKE ?", (f"%{rid}%",))
        return sum(1 for (context,) in rows if json.loads(context).get("rid") == rid)


def first_customer(world: World) -> str:
    with sqlite3.connect(world.store) as con:
        return str(con.execute("SELECT min(customer_id) FROM features").fetchone()[0])


def shown_decision(server: Server, world: World) -> tuple[str, str]:
    """(decision_id, action_id) of a fresh decision that shows an action."""
    with sqlite3.connect(world.store) as con:
        customers = [r[0] for r in con.execute("SELECT customer_id FROM features LIMIT 40")]
    for customer in customers:
        status, answer = server.call("POST", "/recommend", ask(customer, uuid.uuid4().hex))
        assert status == 200, answer
        if answer["actions"]:
            return answer["decision_id"], answer["actions"][0]["action_id"]
    pytest.fail("no action shown among 40 customers")


def seconds_passed(message: str) -> float:
    found = re.fullmatch(rf"{HEADER} passed ([0-9]+\.[0-9]{{3}}) s before .* nothing .*", message)
    assert found, message
    return float(found.group(1))


def slow_post(
    server: Server, path: str, body: object, deadline: str, pause: float
) -> tuple[int, dict]:
    """POST whose body arrives in two chunks `pause` seconds apart (the headers, with the
    deadline, first): the request reaches the service in time and its body after the deadline."""
    raw = json.dumps(body).encode()

    def chunks() -> Iterator[bytes]:
        yield raw[:5]
        time.sleep(pause)
        yield raw[5:]

    url = urllib.parse.urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {"Content-Type": "application/json", "X-API-Key": API_KEY, HEADER: deadline}
    try:
        conn.request("POST", path, chunks(), headers, encode_chunked=True)
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def expired_count(server: Server, endpoint: str, stage: str) -> float:
    text = server.call("GET", "/metrics")[1]
    prefix = f'nextbest_requests_expired_total{{endpoint="{endpoint}",stage="{stage}"}}'
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix))  # fmt: skip


@pytest.mark.slow
@pytest.mark.xdist_group("server")
def test_a_future_deadline_decides_and_logs_as_without_one(server: Server, world: World) -> None:
    customer = first_customer(world)
    for n, deadline in enumerate(
        [epoch(30), (datetime.now(UTC) + timedelta(seconds=30)).isoformat()]
    ):
        rid = f"future-{uuid.uuid4().hex}-{n}"
        status, answer = server.call(
            "POST", "/recommend", ask(customer, rid), headers={HEADER: deadline}
        )
        assert status == 200 and answer["customer_id"] == customer, answer
        assert logged_rids(server, rid) == 1
    status, answer = server.call(
        "POST", "/score", {"customer_id": customer}, headers={HEADER: epoch(30)}
    )
    assert status == 200 and answer["customer_id"] == customer


@pytest.mark.slow
@pytest.mark.xdist_group("server")
def test_a_past_deadline_is_a_408_and_nothing_is_logged(server: Server, world: World) -> None:
    customer = first_customer(world)
    before = expired_count(server, "/recommend", "arrival")
    rid = f"past-{uuid.uuid4().hex}"
    status, answer = server.call(
        "POST", "/recommend", ask(customer, rid), headers={HEADER: epoch(-2)}
    )
    assert status == 408, answer
    assert 2.0 <= seconds_passed(answer["error"]) < 30
    status, answer = server.call("POST", "/score", {"customer_id": customer},
                                 headers={HEADER: "2020-01-01T00:00:00Z"})  # fmt: skip
    assert status == 408 and HEADER in answer["error"]
    time.sleep(0.5)  # a decision made anyway would be committed by now
    assert logged_rids(server, rid) == 0
    assert expired_count(server, "/recommend", "arrival") == before + 1


@pytest.mark.slow
@pytest.mark.xdist_group("server")
@pytest.mark.parametrize("path", ["/recommend", "/score", "/feedback", "/events"])
def test_a_malformed_deadline_is_a_400_naming_the_header(
    server: Server, world: World, path: str
) -> None:
    rid = f"bad-{uuid.uuid4().hex}"
    bodies = {
        "/recommend": ask(first_customer(world), rid),
        "/score": {"customer_id": first_customer(world)},
        "/feedback": {"decision_id": "d", "action_id": "a", "outcome": "declined"},
        "/events": {"events": []},
    }
    for value in ("in 3 seconds", "2026-11-03T08:00:00", "-5"):
        status, answer = server.call("POST", path, bodies[path], headers={HEADER: value})
        assert status == 400 and answer["error"].startswith(f"{HEADER}: "), (value, answer)
        assert value not in answer["error"]
    assert logged_rids(server, rid) == 0


@pytest.mark.slow
@pytest.mark.xdist_group("server")
def test_a_deadline_passing_while_the_body_arrives_decides_and_logs_nothing(
    server: Server, world: World
) -> None:
    """The headers arrive in time, the body after the deadline: the service's own check (not the
    arrival's) refuses the decision, and its 408 carries the message, not BentoML's prefixed text."""
    before = expired_count(server, "/recommend", "decision")
    rid = f"slow-{uuid.uuid4().hex}"
    status, answer = slow_post(
        server, "/recommend", ask(first_customer(world), rid), epoch(0.4), 1.0
    )
    assert status == 408 and 0 < seconds_passed(answer["error"]) < 30, answer
    time.sleep(0.5)
    assert logged_rids(server, rid) == 0
    assert expired_count(server, "/recommend", "decision") == before + 1
    output = server.log.with_suffix(".out")
    assert "(408): client deadline passed" in output.read_text()
    assert "Traceback" not in output.read_text()


@pytest.mark.slow
@pytest.mark.xdist_group("server")
def test_feedback_and_events_past_their_deadline_store_nothing(
    server: Server, world: World
) -> None:
    decision_id, shown = shown_decision(server, world)
    feedback = {"decision_id": decision_id, "action_id": shown, "outcome": "declined"}
    assert slow_post(server, "/feedback", feedback, epoch(0.4), 1.0)[0] == 408

    def stored() -> int:
        with sqlite3.connect(server.log) as con:
            query = "SELECT count(*) FROM feedback WHERE decision_id = ?"
            return int(con.execute(query, (decision_id,)).fetchone()[0])

    assert stored() == 0
    assert server.call("POST", "/feedback", feedback, headers={HEADER: epoch(30)})[0] == 200
    assert stored() == 1  # the same feedback in time is stored: the 408 was the deadline's
    customer = first_customer(world)
    event_id = f"deadline-{uuid.uuid4().hex}"
    event = {"customer_id": customer, "ts": "2026-11-01T10:00:00", "channel": "web",
             "event_type": "visit", "event_id": event_id}  # fmt: skip
    assert slow_post(server, "/events", {"events": [event]}, epoch(0.4), 1.0)[0] == 408
    # not stored: the same batch in time is new, not a duplicate
    status, answer = server.call(
        "POST", "/events", {"events": [event]}, headers={HEADER: epoch(30)}
    )
    assert (status, answer) == (200, {"accepted": 1, "duplicates": 0})
    assert expired_count(server, "/events", "write") >= 1
