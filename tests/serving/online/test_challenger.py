"""Challenger and shadow over real HTTP on 127.0.0.1: a configured share of customers, stable by
their id, is decided by the @challenger bundle; in shadow mode the challenger decides every request
beside the champion, logged as shadow and never shown; shadow rows stay out of export-exposures;
the challenger is loaded by the reload loop once its alias exists; /metrics carries the served
scores' PSI and KS against the training reference."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from serving.batch.population import iter_features, plan_population
from serving.history.exports import export_exposures
from tests.serving.conftest import AS_OF, Server, World, start_server, stop_server
from training.data.contract import open_dataset
from training.policy.control import hash_point

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("server")]

SALT = "nextbest-challenger"
CUSTOMERS = 160


def known_customers(world: World, n: int) -> list[str]:
    with sqlite3.connect(world.store) as con:
        rows = con.execute("SELECT customer_id FROM features ORDER BY customer_id LIMIT ?", (n,))
        return [r[0] for r in rows]


def decisions(log: Path) -> pd.DataFrame:
    with sqlite3.connect(log) as con:
        return pd.read_sql_query("SELECT * FROM decisions ORDER BY ts, shadow", con)


def settled(log: Path, rows: int, seconds: float = 30) -> pd.DataFrame:
    """The log once it holds `rows` decisions (shadow decisions are logged just after the answer)."""
    deadline = time.monotonic() + seconds
    while len(found := decisions(log)) < rows and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def recommend(server: Server, customer_id: str) -> dict:
    status, answer = server.call(
        "POST", "/recommend", {"customer_id": customer_id, "channel": "call_center"}
    )
    assert status == 200, answer
    return answer


def ready_detail(server: Server) -> dict:
    return server.call("GET", "/readyz")[1]


@pytest.fixture(scope="module")
def challenger_version(world: World, small_world: Path) -> Iterator[str]:
    """A second registered version of the small world's bundle, with a training reference, that
    the tests give the @challenger alias (removed afterwards)."""
    import mlflow

    from tests.training.registry.test_bundle import register, train_all
    from tests.training.uplift.test_fit import uplift_on
    from training.registry.bundle import Bundle
    from training.registry.mlflow_models import REGISTERED_MODEL

    trained = train_all(small_world)
    base = trained.bundle()
    bundle = Bundle(
        base.builder, base.config, base.models, base.metadata, uplift_on(small_world).learners
    )
    with open_dataset(small_world).connect() as con:
        population = plan_population(con, bundle.config, AS_OF, 10**9)
        [(_, features)] = list(iter_features(con, bundle.builder, population))
    bundle.reference = bundle.fit_reference(features)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", world.tracking_uri)
        patch.chdir(world.root)
        version = register(trained, bundle)
    yield version
    client = mlflow.MlflowClient(tracking_uri=world.tracking_uri)
    client.delete_registered_model_alias(REGISTERED_MODEL, "challenger")


def set_challenger(world: World, version: str) -> None:
    import mlflow

    from training.registry.mlflow_models import REGISTERED_MODEL

    client = mlflow.MlflowClient(tracking_uri=world.tracking_uri)
    client.set_registered_model_alias(REGISTERED_MODEL, "challenger", version)


def test_shadow_logs_the_challengers_decision_beside_the_one_shown(
    world: World, challenger_version: str, tmp_path: Path
) -> None:
    server = start_server(world, tmp_path / "log.sqlite", NEXTBEST_SHADOW="true",
                          NEXTBEST_WORKERS="1")  # fmt: skip
    try:
        customers = known_customers(world, 30)
        assert ready_detail(server)["challenger_version"] is None  # no @challenger yet
        alone = [recommend(server, c) for c in customers[:5]]
        assert len(decisions(server.log)) == 5  # the champion alone, nothing in shadow
        set_challenger(world, challenger_version)  # the reload loop picks it up
        deadline = time.monotonic() + 60
        while ready_detail(server)["challenger_version"] is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ready_detail(server)["challenger_version"] == challenger_version
        champion = alone[0]["model_version"]
        answers = [recommend(server, c) for c in customers]
        assert {a["model_version"] for a in answers} == {champion}  # the champion's answers
        log = settled(server.log, 5 + 2 * len(customers)).iloc[5:]  # shadows: after the answer
        assert len(log) == 2 * len(customers)  # two decisions per request ...
        shown, shadow = log[log["shadow"] == 0], log[log["shadow"] == 1]
        assert list(shown["decision_id"]) == [a["decision_id"] for a in answers]  # ... one shown
        assert list(shadow["customer_id"]) == customers
        assert set(shadow["model_version"]) == {challenger_version}
        assert set(shadow["arm"]) == {"challenger"} and set(shown["arm"]) == {"champion"}
        assert set(shown["model_version"]) == {champion}
        assert not set(shadow["decision_id"]) & {a["decision_id"] for a in answers}
        assert ((log["propensity"] > 0) & (log["propensity"] <= 1)).all()  # every row has one
        assert log["greedy_action"].notna().all()  # and its greedy first action, shadow or not
        free = shadow[(shadow["control_group"] == 0) & (shadow["explored"] == 0)]
        assert len(free) and (free["greedy_action"] == free["action_id"]).all()
        offered = shadow[shadow["actions"] != "[]"].iloc[0]  # an action the shadow did "show"
        feedback = {"decision_id": offered["decision_id"], "outcome": "accepted",
                    "action_id": json.loads(offered["actions"])[0]}  # fmt: skip
        assert server.call("POST", "/feedback", feedback)[0] == 404  # never shown: no feedback
        rows, path = export_exposures(server.log, tmp_path / "export")
        exported = pd.read_parquet(path)
        assert rows == len(shown) + 5  # the shadow decisions are no exposures
        assert len(exported) == rows and set(exported["customer_id"]) <= set(customers)
        _, metrics = server.call("GET", "/metrics")
        counted = [line for line in metrics.splitlines()
                   if line.startswith("nextbest_shadow_decisions_total{")]  # fmt: skip
        assert all('arm="challenger"' in line for line in counted)
        assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) == len(customers)
    finally:
        stop_server(server)


def test_the_challenger_share_routes_the_same_customers_every_time(
    world: World, challenger_version: str, tmp_path: Path
) -> None:
    set_challenger(world, challenger_version)
    server = start_server(world, tmp_path / "log.sqlite", NEXTBEST_CHALLENGER_SHARE="0.4",
                          NEXTBEST_WORKERS="1")  # fmt: skip
    try:
        customers = known_customers(world, CUSTOMERS)
        first = {c: recommend(server, c)["model_version"] for c in customers}
        again = {c: recommend(server, c)["model_version"] for c in reversed(customers)}
        assert first == again  # the same customer, the same arm
        routed = {c for c in customers if hash_point(c, SALT) < 0.4}
        assert {c for c, v in first.items() if v == challenger_version} == routed
        assert 0.25 < len(routed) / len(customers) < 0.55
        log = decisions(server.log)
        assert len(log) == 2 * len(customers) and not log["shadow"].any()
        by_arm = log.groupby("arm")["model_version"].unique()
        assert list(by_arm["challenger"]) == [challenger_version]
        assert challenger_version not in list(by_arm["champion"])
        _, metrics = server.call("GET", "/metrics")
        psi = [line for line in metrics.splitlines()
               if line.startswith("nextbest_score_psi{") and challenger_version in line]  # fmt: skip
        assert {line.split('score="')[1].split('"')[0] for line in psi} == {
            "churn_probability", "satisfaction", "ltv", "window_value"
        }  # fmt: skip
        assert all(0 <= float(line.rsplit(" ", 1)[1]) < 10 for line in psi)
        assert "nextbest_score_bin_total{" in metrics and "nextbest_score_ks{" in metrics
    finally:
        stop_server(server)
