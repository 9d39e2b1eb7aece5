"""Decisions in the moment, over real HTTP: eligibility rules on the request's context, and
actions suppressed after the customer declined them (`suppress_after_declines`).

The service runs a bundle folder whose catalog reads the context and suppresses after declines,
with exploration and the control group off, so every answer is the greedy ranking.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.online.events import Event, EventStore
from serving.online.outbox import ensure_schema
from tests.serving.conftest import Server, World, start_server, stop_server
from tests.serving.online.test_live_features import ingested_for, offline
from tests.serving.online.test_service import known_customers
from training.config import Catalog
from training.features.definition import to_matrix
from training.registry.bundle import Bundle

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("server")]
NOW = datetime(2026, 11, 5, 10, 30, tzinfo=UTC)

CHANGES: dict[str, dict[str, Any]] = {
    "apology_credit": {"eligibility": "context_call_reason == 'billing'", "cost": 0.0},
    "proactive_service_call": {
        "trigger": "event_type == 'complaint' and churn_probability > 0",
        "eligibility": None,
        "cost": 0.0,
    },
}


SUPPRESS = {"suppress_after_declines": {"count": 2, "days": 30}}  # every action


def live_bundle(bundle: Bundle, changes: dict[str, dict[str, Any]]) -> Bundle:
    """The bundle with catalog changes (every action suppressed after 2 declines in 30 days),
    exploration and the control group off."""
    actions = [
        a.model_dump(mode="json") | SUPPRESS | changes.get(a.id, {})
        for a in bundle.config.catalog.actions
    ]
    decisioning = bundle.config.decisioning.model_copy(
        update={"exploration": 0.0, "control_share": 0.0}
    )
    config = bundle.config.model_copy(
        update={"catalog": Catalog.model_validate({"actions": actions}), "decisioning": decisioning}
    )
    return Bundle(bundle.builder, config, bundle.models, bundle.metadata, bundle.uplift)


@pytest.fixture(scope="module")
def live_folder(uplift_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return live_bundle(uplift_bundle, CHANGES).save(tmp_path_factory.mktemp("bundle") / "bundle")


@pytest.fixture(scope="module")
def live(
    world: World, live_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("live")
    folder = live_folder
    running = start_server(
        world,
        root / "decision_log.sqlite",
        NEXTBEST_BUNDLE_DIR=str(folder),
        NEXTBEST_EVENT_STORE=str(root / "event_store.sqlite"),
        NEXTBEST_NOW=NOW.isoformat(),
        # these tests check what a post precomputes, not its time budget, which a loaded
        # machine can spend before a post's last customer
        NEXTBEST_LIVE_PRECOMPUTE_MS="10000",
    )
    yield running
    stop_server(running)


def shown(server: Server, customer: str, **body: object) -> dict[str, Any]:
    status, answer = server.call(
        "POST",
        "/recommend",
        {"customer_id": customer, "channel": "call_center", "max_actions": 5} | body,
    )
    assert status == 200, answer
    assert not answer["explored"] and not answer["control_group"]
    by_id: dict[str, Any] = {a["action_id"]: a for a in answer["actions"]}
    return by_id | {"_decision": answer["decision_id"], "_scores": answer["scores"]}


def test_a_rule_reads_the_request_context(live: Server, world: World) -> None:
    found = 0
    for customer in known_customers(world, 60):
        billing = shown(live, customer, context={"call_reason": "billing"})
        assert "apology_credit" not in shown(live, customer, context={"call_reason": "moving"})
        assert "apology_credit" not in shown(live, customer)  # a missing key is missing: false
        assert "apology_credit" not in shown(live, customer, context={"other": "billing"})
        if "apology_credit" in billing:
            found += 1
            reasons = billing["apology_credit"]["reasons"]
            assert any("call reason: billing" in r for r in reasons), reasons
            assert 2 <= len(reasons) <= 3
    assert found >= 5, "a free action with a billing call reason is shown to some customers"


def test_an_action_declined_count_times_is_not_offered_again(live: Server, world: World) -> None:
    customers = known_customers(world, 1000)[100:]
    for customer in customers:  # the first customer offered a paid action (no trigger, no context)
        first = shown(live, customer)
        offered = [a for a in first if a not in {"_decision", "_scores", *CHANGES}]
        if offered:
            target = offered[0]
            break
    else:
        pytest.fail("no customer is offered an action")
    others = set(first) - {target, "_decision", "_scores"}
    decline = {"action_id": target, "outcome": "declined"}
    assert live.call("POST", "/feedback", decline | {"decision_id": first["_decision"]})[0] == 200
    second = shown(live, customer)
    assert target in second, "one decline of two: still offered"
    assert live.call("POST", "/feedback", decline | {"decision_id": second["_decision"]})[0] == 200
    third = shown(live, customer)
    assert target not in third, "declined twice in 30 days: suppressed"
    assert set(third) >= others
    # another customer is untouched
    other = next(c for c in customers if c != customer and target in shown(live, c))
    assert other


def test_scores_after_live_events_equal_the_batch_definition(
    live: Server, world: World, uplift_bundle: Bundle, tmp_path: Path
) -> None:
    """/score and /recommend of customers with ingested events are the bundle's scores of
    `nextbest features` on the data set with the events appended, as of NEXTBEST_NOW."""
    customers = known_customers(world, 400)[300:306]
    before = {c: live.call("POST", "/score", {"customer_id": c})[1]["scores"] for c in customers}
    events: list[Event] = []
    for k, customer in enumerate(customers):
        mine = ingested_for(customer, k)
        _posted(live, mine)
        events += mine
    features = offline(uplift_bundle, world.data, events, NOW, tmp_path)
    features = features.set_index("customer_id").loc[customers].reset_index()
    X = to_matrix(uplift_bundle.prepare(features), list(uplift_bundle.builder.feature_names_))
    expected = uplift_bundle.score_matrix(X)
    changed = 0
    for k, customer in enumerate(customers):
        scored = live.call("POST", "/score", {"customer_id": customer})[1]["scores"]
        decided = shown(live, customer)
        assert decided["_scores"] == scored
        for name, value in scored.items():
            assert value == pytest.approx(float(expected[name][k]), rel=1e-6, abs=1e-9), name
        changed += scored != before[customer]
    assert changed == len(customers), "a complaint and a survey answer move every customer's scores"


def _posted(server: Server, events: list[Event]) -> None:
    body = [
        {"customer_id": e.customer_id, "ts": e.ts.isoformat(), "channel": e.channel,
         "event_type": e.event_type, "value": e.value, "text": e.text}
        for e in events
    ]  # fmt: skip
    assert server.call("POST", "/events", {"events": body})[1]["accepted"] == len(events)


def test_a_new_event_replaces_the_rows_every_worker_kept(
    live: Server, world: World, uplift_bundle: Bundle, tmp_path: Path
) -> None:
    """Each worker keeps a live customer's row from their last request; an event ingested after
    that (through either worker) is in the next answer of every worker: the scores equal the
    batch definition on the data with all the events appended."""
    customers = known_customers(world, 400)[310:313]
    first = [e for k, c in enumerate(customers) for e in ingested_for(c, k)]
    _posted(live, first)
    for _ in range(4):  # both workers answer and keep the rows
        for customer in customers:
            assert live.call("POST", "/score", {"customer_id": customer})[0] == 200
            shown(live, customer)
    now = NOW.replace(tzinfo=None)
    second = [Event(c, now - timedelta(minutes=30), "call_center", "complaint") for c in customers]
    _posted(live, second)
    names = list(uplift_bundle.builder.feature_names_)
    expected = {}
    for label, events in (("first", first), ("both", first + second)):
        (tmp_path / label).mkdir()
        features = offline(uplift_bundle, world.data, events, NOW, tmp_path / label)
        features = features.set_index("customer_id").loc[customers].reset_index()
        expected[label] = uplift_bundle.score_matrix(
            to_matrix(uplift_bundle.prepare(features), names)
        )
    moved = set()
    for _ in range(4):
        for k, customer in enumerate(customers):
            scored = live.call("POST", "/score", {"customer_id": customer})[1]["scores"]
            assert shown(live, customer)["_scores"] == scored
            for name, value in scored.items():
                both = float(expected["both"][name][k])
                assert value == pytest.approx(both, rel=1e-6, abs=1e-9), name
                if value != pytest.approx(float(expected["first"][name][k]), rel=1e-6):
                    moved.add(customer)
    assert len(moved) >= 2, "the new complaint moves the scores"
    hows = ("kept", "precomputed")
    rows = {how: _counted(live, "nextbest_live_rows_total", how) for how in hows}
    assert rows["kept"] >= 8 and rows["precomputed"] >= 2 * len(customers), rows


def test_rows_computed_at_ingestion_serve_a_worker_that_never_saw_the_events(
    live: Server, world: World, uplift_bundle: Bundle, live_folder: Path, tmp_path: Path
) -> None:
    """POST /events computes its stored customers' rows and shares them (serving.online.live_rows):
    another process on the same files (a worker that never saw the events) answers from them
    without computing, with the scores of the batch definition; a damaged shared row is computed
    anew there, with the same scores."""
    customers = known_customers(world, 400)[320:324]
    events: list[Event] = []
    for k, customer in enumerate(customers):
        mine = ingested_for(customer, k)
        _posted(live, mine)
        events += mine
    event_store = live.log.parent / "event_store.sqlite"
    with sqlite3.connect(event_store) as con:
        shared = dict(con.execute("SELECT customer_id, seq FROM live_rows").fetchall())
        latest = dict(con.execute("SELECT customer_id, max(seq) FROM events GROUP BY 1").fetchall())
        con.execute("UPDATE live_rows SET vector = x'00' WHERE customer_id = ?", (customers[0],))
    assert [shared.get(c) for c in customers] == [latest[c] for c in customers]
    features = offline(uplift_bundle, world.data, events, NOW, tmp_path)
    features = features.set_index("customer_id").loc[customers].reset_index()
    names = list(uplift_bundle.builder.feature_names_)
    expected = uplift_bundle.score_matrix(to_matrix(uplift_bundle.prepare(features), names))
    other = start_server(
        world, tmp_path / "decision_log.sqlite", NEXTBEST_BUNDLE_DIR=str(live_folder),
        NEXTBEST_EVENT_STORE=str(event_store), NEXTBEST_NOW=NOW.isoformat(), NEXTBEST_WORKERS="1",
    )  # fmt: skip
    try:
        for k, customer in enumerate(customers):
            scored = other.call("POST", "/score", {"customer_id": customer})[1]["scores"]
            for name, value in scored.items():
                assert value == pytest.approx(float(expected[name][k]), rel=1e-6, abs=1e-9), name
            assert shown(other, customer)["_scores"] == scored
        rows = {h: _counted(other, "nextbest_live_rows_total", h) for h in ("shared", "computed")}
        assert rows == {"shared": len(customers) - 1, "computed": 1}, rows
    finally:
        stop_server(other)


def _counted(server: Server, metric: str, how: str) -> float:
    """A counter of /metrics (summed over workers) for one `how` label."""
    _, text = server.call("GET", "/metrics")
    lines = [line for line in text.splitlines() if line.startswith(f'{metric}{{how="{how}"')]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


def complaint(customer: str, n: int, event_type: str = "complaint") -> dict[str, object]:
    return {
        "customer_id": customer,
        "ts": f"2026-11-05T09:{n:02d}:00Z",
        "channel": "call_center",
        "event_type": event_type,
        "event_id": f"trigger-{customer}-{n}",
    }


def outbox(server: Server, after: str = "0", limit: int = 1000) -> dict[str, Any]:
    status, answer = server.call("GET", f"/outbox?after={after}&limit={limit}")
    assert status == 200, answer
    return answer


def test_a_trigger_decides_once_per_cool_down_into_the_outbox(live: Server, world: World) -> None:
    start = outbox(live)["cursor"]
    fires, quiet = known_customers(world, 420)[400:402], known_customers(world, 420)[410]
    for customer in fires:  # two complaints in one batch: one decision
        batch = [complaint(customer, 1), complaint(customer, 2)]
        assert live.call("POST", "/events", {"events": batch})[1]["accepted"] == 2
    assert live.call("POST", "/events", {"events": [complaint(quiet, 1, "visit")]})[0] == 200
    page = outbox(live, start)
    mine = [d for d in page["decisions"] if d["customer_id"] in {*fires, quiet}]
    assert [d["customer_id"] for d in mine] == fires, "one decision per complaining customer"
    for item in mine:
        assert item["triggered_by"] == ["proactive_service_call"]
        assert item["event_type"] == "complaint" and item["event_id"].endswith("-1")
        decision = item["decision"]
        assert decision["propensity"] == 1.0  # exploration and the control group are off
        assert [a["action_id"] for a in decision["actions"]] in ([], ["proactive_service_call"])
        with sqlite3.connect(live.log) as con:  # logged like any decision, with its propensity
            logged = con.execute(
                "SELECT customer_id, propensity, context FROM decisions WHERE decision_id = ?",
                (decision["decision_id"],),
            ).fetchone()
        assert logged[0] == item["customer_id"] and logged[1] == 1.0
        assert json.loads(logged[2])["trigger_event_type"] == "complaint"
    cursors = [int(d["cursor"]) for d in page["decisions"]]
    assert cursors == sorted(cursors) and page["cursor"] == str(cursors[-1])
    # inside the cool-down another complaint fires nothing; the cursor then has nothing after it
    assert live.call("POST", "/events", {"events": [complaint(fires[0], 3)]})[0] == 200
    assert outbox(live, page["cursor"]) == {"decisions": [], "cursor": page["cursor"]}
    # paging: limit 1 walks the same decisions one by one
    walked, cursor = [], start
    while True:
        step = outbox(live, cursor, limit=1)
        if not step["decisions"]:
            break
        walked += step["decisions"]
        cursor = step["cursor"]
    assert walked == page["decisions"]
    # the command line reads the same outbox from the file
    done = subprocess.run(
        [str(Path(sys.executable).parent / "nextbest"), "export-outbox", "--events",
         str(live.log.parent / "event_store.sqlite"), "--after", start],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == page


@pytest.mark.parametrize(
    "query", ["after=x", "after=-1", "limit=0", "limit=1001", "limit=abc", "after=1e3"]
)
def test_bad_outbox_queries_are_400(live: Server, query: str) -> None:
    status, answer = live.call("GET", f"/outbox?{query}")
    assert status == 400 and answer["error"], answer


def test_the_journey_shows_stored_and_live_events_newest_first(live: Server, world: World) -> None:
    customer = known_customers(world, 430)[420]
    status, before = live.call("GET", f"/customers/{customer}/journey?limit=50")
    assert status == 200 and before["known"] is True and before["events"]
    assert all(e["source"] == "stored" for e in before["events"])
    survey = {
        "customer_id": customer, "ts": "2026-11-05T10:00:00Z", "channel": "app",
        "event_type": "nps", "value": 2, "text": "Billed twice, nobody called back.",
    }  # fmt: skip
    future = survey | {"ts": "2026-11-06T10:00:00Z", "text": None}  # after NEXTBEST_NOW
    assert live.call("POST", "/events", {"events": [survey, future]})[0] == 200
    _, after = live.call("GET", f"/customers/{customer}/journey?limit=50")
    first = after["events"][0]
    assert first == {
        "ts": "2026-11-05T10:00:00", "channel": "app", "event_type": "nps", "value": 2.0,
        "text": "Billed twice, nobody called back.", "source": "live",
    }  # fmt: skip
    assert after["events"][1:] == before["events"][:49]
    stamps = [e["ts"] for e in after["events"]]
    assert stamps == sorted(stamps, reverse=True)
    _, unknown = live.call("GET", "/customers/nobody-at-all/journey")
    assert unknown["known"] is False and unknown["events"] == []
    for query in ("limit=0", "limit=201", "limit=x"):
        assert live.call("GET", f"/customers/{customer}/journey?{query}")[0] == 400


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(
    customer=st.text(min_size=0, max_size=140),
    after=st.one_of(st.none(), st.text(max_size=30), st.integers(-(10**20), 10**20).map(str)),
    limit=st.one_of(st.none(), st.text(max_size=10), st.integers(-5, 5000).map(str)),
)
def test_no_query_of_the_new_get_endpoints_gets_a_server_error(
    live: Server, customer: str, after: str | None, limit: str | None
) -> None:
    query = urllib.parse.urlencode(
        {k: v for k, v in (("after", after), ("limit", limit)) if v is not None}
    )
    path = urllib.parse.quote(customer, safe="")
    for url in (f"/outbox?{query}", f"/customers/{path}/journey?{query}"):
        status, _ = live.call("GET", url)
        assert status < 500, (url, status)


def test_events_a_killed_worker_left_pending_are_triggered_after_a_restart(
    world: World, live_folder: Path, tmp_path: Path
) -> None:
    """Events committed, then the worker died before their triggers: the next service evaluates
    them (at least once from event to outbox)."""
    customer = known_customers(world, 440)[430]
    path = tmp_path / "event_store.sqlite"
    store = EventStore(path)
    ensure_schema(store)
    complaint = Event(
        customer, datetime(2026, 11, 5, 9, 0), "call_center", "complaint", None, None, "k1"
    )
    store.ingest([complaint], datetime.now(UTC) - timedelta(minutes=5), pending=True)
    store.close()
    server = start_server(
        world, tmp_path / "decision_log.sqlite", NEXTBEST_BUNDLE_DIR=str(live_folder),
        NEXTBEST_EVENT_STORE=str(path), NEXTBEST_NOW=NOW.isoformat(),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (page := outbox(server))["decisions"] and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [d["event_id"] for d in page["decisions"]] == ["k1"]
        assert page["decisions"][0]["customer_id"] == customer
        time.sleep(2)  # two workers, each sweeping: still one decision
        assert len(outbox(server)["decisions"]) == 1
    finally:
        stop_server(server)
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT count(*) FROM events WHERE pending = 1").fetchone()[0] == 0
