"""The BentoML service over real HTTP on 127.0.0.1: the API contract of docs/api.md, bad input
answered 4xx (never 5xx), authentication, size limits, metrics, and the decision log holding exactly
one record per answered request after a concurrent burst.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import sqlite3
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from tests.serving.conftest import API_KEY, Server, World, start_server, stop_server
from training.config import load_config
from training.policy.control import in_control

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("server")]

SCORES = {"churn_probability", "satisfaction", "ltv", "window_value"}
ACTION_FIELDS = {
    "action_id",
    "name",
    "script",
    "expected_value",
    "cost",
    "roi",
    "uplift",
    "reasons",
}


def known_customers(world: World, n: int) -> list[str]:
    with sqlite3.connect(world.store) as con:
        rows = con.execute("SELECT customer_id FROM features ORDER BY customer_id LIMIT ?", (n,))
        return [r[0] for r in rows]


def feature_names(world: World) -> list[str]:
    with sqlite3.connect(world.store) as con:
        return json.loads(
            con.execute("SELECT value FROM meta WHERE key = 'feature_names'").fetchone()[0]
        )


def logged(server: Server, decision_ids: list[str]) -> int:
    """How many of these decisions the log holds (read by a second connection, as an analyst)."""
    with sqlite3.connect(server.log) as con:
        marks = ",".join("?" * len(decision_ids))
        query = f"SELECT count(*) FROM decisions WHERE decision_id IN ({marks})"
        return int(con.execute(query, decision_ids).fetchone()[0])


def recommend(server: Server, customer_id: str, **body: object) -> tuple[int, dict]:
    status, answer = server.call(
        "POST", "/recommend", {"customer_id": customer_id, "channel": "call_center", **body}
    )
    return status, answer


# --- the contract -------------------------------------------------------------------------------


def test_recommend_answers_the_documented_fields(server: Server, world: World) -> None:
    answers = [recommend(server, c)[1] for c in known_customers(world, 40)]
    for answer in answers:
        assert {"decision_id", "customer_id", "model_version", "scores", "actions"} <= set(answer)
        assert set(answer["scores"]) == SCORES
        assert 0 <= answer["scores"]["churn_probability"] <= 1
        assert not answer["cold_start"]
        assert 0 < answer["propensity"] <= 1
        assert len(answer["actions"]) <= 3
    shown = [a for answer in answers for a in answer["actions"]]
    assert shown, "some of 40 customers get an action"
    names = {n for n in feature_names(world) if "_" in n}  # "plan" is a word as well as a name
    for action in shown:
        assert set(action) == ACTION_FIELDS
        assert 2 <= len(action["reasons"]) <= 3
        words = {w.strip(".,:") for r in action["reasons"] for w in r.split()}
        assert not words & names, "reasons never show raw feature names"
        assert set(action["uplift"]) == {"churn", "satisfaction", "value", "visit"}
    greedy = [a for a in answers if not a["explored"] and not a["control_group"]]
    for answer in greedy:  # greedy answers list positive values, best first
        values = [a["expected_value"] for a in answer["actions"]]
        assert values == sorted(values, reverse=True) and all(v > 0 for v in values)


def test_answers_are_logged_before_they_are_sent(server: Server, world: World) -> None:
    status, answer = recommend(
        server, known_customers(world, 1)[0], context={"call_reason": "bill"}
    )
    assert status == 200
    assert logged(server, [answer["decision_id"]]) == 1  # visible the moment the answer arrives


def test_every_decision_logs_the_greedy_first_action(server: Server, world: World) -> None:
    """The log keeps the greedy ranking's first action of every decision, shown or not: a greedy
    answer's first action, and for a control-group customer (shown nothing) the action they
    would have received, which the impact's per-greedy-action table compares against."""
    decisioning = load_config().decisioning
    customers = known_customers(world, 600)
    held = [c for c in customers
            if in_control(c, decisioning.control_share, decisioning.control_salt)][:15]  # fmt: skip
    answers = [recommend(server, c)[1] for c in held + customers[:40]]
    ids = [a["decision_id"] for a in answers]
    with sqlite3.connect(server.log) as con:
        every = pd.read_sql_query("SELECT * FROM decisions", con)
    rows = every.set_index("decision_id").loc[ids]
    catalog = set(load_config().catalog.ids)
    assert rows["greedy_action"].notna().all()
    assert set(rows["greedy_action"]) <= catalog | {"control"}
    control = rows[rows["control_group"] == 1]
    assert len(control) >= 15 and (control["action_id"] == "control").all()
    assert (control["greedy_action"] != "control").any()  # what they would have been given
    greedy = rows[(rows["control_group"] == 0) & (rows["explored"] == 0)]
    assert len(greedy) > 20
    assert (greedy["greedy_action"] == greedy["action_id"]).all()


def test_unknown_customer_gets_a_flagged_cold_start_answer(server: Server) -> None:
    status, answer = recommend(server, "never-seen-before")
    assert status == 200
    assert answer["cold_start"] is True
    assert set(answer["scores"]) == SCORES
    for action in answer["actions"]:
        assert any("unknown customer" in r for r in action["reasons"])


def test_max_actions_and_exclude_are_respected(server: Server, world: World) -> None:
    for customer in known_customers(world, 3000):  # most customers get one action or none
        _, full = recommend(server, customer, max_actions=5)
        if full["explored"] or len(full["actions"]) < 2:
            continue
        first = full["actions"][0]["action_id"]
        _, fewer = recommend(server, customer, max_actions=1, exclude=[first])
        if fewer["explored"]:
            continue
        assert len(fewer["actions"]) <= 1
        assert first not in {a["action_id"] for a in fewer["actions"]}
        return
    pytest.fail("no customer with two recommended actions among the first 3,000")


def test_score_and_metadata(server: Server, world: World) -> None:
    status, scores = server.call("POST", "/score", {"customer_id": known_customers(world, 1)[0]})
    assert status == 200 and set(scores["scores"]) == SCORES and scores["cold_start"] is False
    status, meta = server.call("GET", "/metadata")
    assert status == 200
    assert meta["model_version"] == scores["model_version"]
    assert meta["store_as_of"] == "2026-11-02"
    assert "call_center" in meta["channels"] and meta["actions"]
    assert meta["metrics"]["churn"]["roc_auc"] > 0.5


def test_feedback_is_stored_and_checked(server: Server, world: World) -> None:
    for customer in known_customers(world, 40):
        _, answer = recommend(server, customer)
        if answer["actions"]:
            break
    else:
        pytest.fail("no action among 40 customers")
    action = answer["actions"][0]["action_id"]
    body = {"decision_id": answer["decision_id"], "action_id": action, "outcome": "declined"}
    assert server.call("POST", "/feedback", body) == (
        200,
        {"decision_id": answer["decision_id"], "stored": True},
    )
    status, _ = server.call("POST", "/feedback", body | {"decision_id": "no-such-decision"})
    assert status == 404
    other = "control" if action != "control" else "x"
    assert server.call("POST", "/feedback", body | {"action_id": other})[0] == 400


def test_health_readiness_and_metrics(server: Server, world: World) -> None:
    assert server.call("GET", "/healthz")[0] == 200
    assert server.call("GET", "/readyz")[0] == 200
    for customer in known_customers(world, 5):
        assert recommend(server, customer)[0] == 200
    status, text = server.call("GET", "/metrics")
    assert status == 200
    counted = [line for line in text.splitlines() if line.startswith("nextbest_decisions_total{")]
    assert counted, text[-2000:]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) >= 5


def test_openapi_publishes_the_request_models(server: Server) -> None:
    status, spec = server.call("GET", "/docs.json")
    assert status == 200
    assert {"/recommend", "/score", "/feedback"} <= set(spec["paths"])


# --- bad input: 4xx with a message, never 5xx ---------------------------------------------------

BAD_BODIES = {
    "missing customer_id": {"channel": "call_center"},
    "missing channel": {"customer_id": "C1"},
    "customer_id not a string": {"customer_id": 12, "channel": "call_center"},
    "max_actions not an integer": {
        "customer_id": "C1",
        "channel": "call_center",
        "max_actions": "x",
    },
    "max_actions zero": {"customer_id": "C1", "channel": "call_center", "max_actions": 0},
    "max_actions a boolean": {"customer_id": "C1", "channel": "call_center", "max_actions": True},
    "max_actions a numeric string": {
        "customer_id": "C1",
        "channel": "call_center",
        "max_actions": "3",
    },
    "exclude not a list": {"customer_id": "C1", "channel": "call_center", "exclude": "a"},
    "unknown field": {"customer_id": "C1", "channel": "call_center", "max_action": 2},
    "unknown channel": {"customer_id": "C1", "channel": "carrier_pigeon"},
    "unknown action in exclude": {"customer_id": "C1", "channel": "chat", "exclude": ["nope"]},
    "body is a list": [1, 2],
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_recommend_bodies_get_a_4xx_with_a_message(server: Server, case: str) -> None:
    status, answer = server.call("POST", "/recommend", BAD_BODIES[case])
    assert 400 <= status < 500, (case, status, answer)
    assert isinstance(answer, dict) and isinstance(answer["error"], str), answer
    if case.startswith("unknown"):
        assert (
            ("nope" in str(answer))
            or ("carrier_pigeon" in str(answer))
            or "max_action" in str(answer)
        )


def test_pydantic_errors_name_the_field(server: Server) -> None:
    body = {"customer_id": "C1", "channel": "call_center", "max_actions": 0}
    status, answer = server.call("POST", "/recommend", body)
    assert status == 400 and answer["error"].startswith("max_actions: ") and answer["detail"]


@pytest.mark.parametrize("path", ["/recommend", "/score", "/feedback"])
@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=XYZ",
        "application/x-www-form-urlencoded",
    ],
)
def test_form_bodies_get_a_415(server: Server, path: str, content_type: str) -> None:
    raw = b'{"customer_id": "C1", "channel": "chat"}'
    status, answer = server.call("POST", path, raw=raw, headers={"Content-Type": content_type})
    assert status == 415 and "application/json" in answer["error"], answer


def test_rejected_requests_are_logged_in_one_line_without_their_input(server: Server) -> None:
    marker = "C-NOT-IN-LOGS-7731"
    bad = [
        b'{"customer_id": "' + marker.encode() + b'"',  # truncated JSON
        json.dumps({"customer_id": marker, "channel": "chat", "max_actions": "many"}).encode(),
        json.dumps({"customer_id": marker, "channel": "carrier_pigeon"}).encode(),
    ]
    for raw in bad:
        assert 400 <= server.call("POST", "/recommend", raw=raw)[0] < 500
    output = server.log.with_suffix(".out")
    deadline = time.monotonic() + 10
    while (
        output.read_text().count("rejected /recommend") < len(bad) and time.monotonic() < deadline
    ):
        time.sleep(0.2)
    text = output.read_text()
    assert text.count("rejected /recommend [POST]") >= len(bad)
    assert marker not in text and "Traceback" not in text


def post_large(server: Server, body: bytes) -> tuple[int, dict]:
    """POST a body the server may refuse before reading it: read the answer despite the broken pipe."""
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    headers = {"Content-Type": "application/json", "X-API-Key": API_KEY}
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # answered early, closed
        conn.request("POST", "/recommend", body, headers)
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def test_malformed_json_and_a_10_mb_body_get_a_4xx(server: Server) -> None:
    assert 400 <= server.call("POST", "/recommend", raw=b'{"customer_id": ')[0] < 500
    huge = b'{"customer_id": "' + b"x" * (10 * 1024 * 1024) + b'", "channel": "chat"}'
    status, answer = post_large(server, huge)
    assert status == 413 and "larger than" in answer["error"]


def test_api_key_is_required_when_configured(server: Server) -> None:
    body = {"customer_id": "C1", "channel": "call_center"}
    status, answer = server.call("POST", "/recommend", body, headers={"X-API-Key": ""})
    assert status == 401 and "X-API-Key".lower() in answer["error"].lower()
    assert server.call("POST", "/recommend", body, headers={"X-API-Key": "wrong"})[0] == 401
    assert server.call("GET", "/healthz", headers={"X-API-Key": ""})[0] == 200


# --- durability under load --------------------------------------------------------------------


def test_a_concurrent_burst_leaves_exactly_one_record_per_answer(
    server: Server, world: World
) -> None:
    customers = known_customers(world, 50) * 4 + ["cold-1", "cold-2"] * 10
    with sqlite3.connect(server.log) as con:
        before = con.execute("SELECT count(*) FROM decisions").fetchone()[0]
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda c: recommend(server, c), customers))
    assert all(status == 200 for status, _ in answers)
    ids = [answer["decision_id"] for _, answer in answers]
    assert len(set(ids)) == len(customers)
    assert logged(server, ids) == len(customers)
    with sqlite3.connect(server.log) as con:
        after = con.execute("SELECT count(*) FROM decisions").fetchone()[0]
    assert after - before == len(customers)


def test_export_exposures_turns_the_log_into_contract_exposures(
    server: Server, world: World, tmp_path: Path
) -> None:
    from serving.history.exports import export_exposures
    from training.config import load_config
    from training.data.contract import validate_dataset

    rows, path = export_exposures(server.log, tmp_path / "export")
    exported = pd.read_parquet(path)
    assert rows == len(exported) > 0 and path.name == "exposures.parquet"
    assert list(exported.columns) == [
        "customer_id", "ts", "action_id", "propensity", "greedy_action"
    ]  # fmt: skip
    assert not exported["customer_id"].str.startswith("cold-").any()
    assert exported["greedy_action"].notna().all()  # every decision of this server logged it
    data = tmp_path / "data"
    shutil.copytree(world.data, data)
    old = data / "exposures.parquet"
    pd.concat([pd.read_parquet(old), exported], ignore_index=True).to_parquet(old)
    validate_dataset(data, known_actions=load_config().catalog.ids)  # the contract accepts them


# --- reload (last: it moves the champion) -------------------------------------------------------


def test_a_new_champion_is_served_without_dropping_requests(
    server: Server, world: World, small_world: Path
) -> None:
    from tests.serving.conftest import register_champion

    customer = known_customers(world, 1)[0]
    _, before = server.call("GET", "/metadata")
    statuses: list[int] = []
    stop = threading.Event()

    def keep_asking() -> None:
        while not stop.is_set():
            statuses.append(recommend(server, customer)[0])

    asker = threading.Thread(target=keep_asking)
    asker.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("MLFLOW_TRACKING_URI", world.tracking_uri)
            patch.chdir(world.root)
            version = register_champion(small_world)
        assert version != before["model_version"]
        deadline, fresh = time.monotonic() + 60, 0
        while fresh < 10 and time.monotonic() < deadline:  # both workers answer with it
            fresh = (
                fresh + 1 if server.call("GET", "/metadata")[1]["model_version"] == version else 0
            )
            time.sleep(0.1)
        assert fresh == 10, "the new champion is served within a minute"
    finally:
        stop.set()
        asker.join()
    assert statuses and set(statuses) == {200}


def test_requests_skip_tracing_unless_it_is_turned_on(
    server: Server, world: World, tmp_path: Path
) -> None:
    """By default a request skips BentoML's OpenTelemetry middleware (it makes spans even when
    none is sampled): no BentoML request id comes back. NEXTBEST_TRACING=true puts it back."""
    body = {"customer_id": known_customers(world, 1)[0], "channel": "call_center"}
    assert "x-bentoml-request-id" not in _headers(server, "/recommend", body)
    assert "x-bentoml-request-id" not in _headers(server, "/healthz", None)
    traced = start_server(world, tmp_path / "log.sqlite", NEXTBEST_TRACING="true")
    try:
        assert "x-bentoml-request-id" in _headers(traced, "/recommend", body)
    finally:
        stop_server(traced)


def _headers(server: Server, path: str, body: dict | None) -> dict[str, str]:
    """The response headers of one request (POST with a JSON body, else GET), names in lower
    case."""
    request = urllib.request.Request(
        server.url + path,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": API_KEY},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        return {k.lower(): v for k, v in response.headers.items()}
