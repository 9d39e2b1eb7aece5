"""Decisions in the moment, over real HTTP: eligibility rules on the request's context, and
actions suppressed after the customer declined them (`suppress_after_declines`).

The service runs a bundle folder whose catalog reads the context and suppresses after declines,
with exploration and the control group off, so every answer is the greedy ranking.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.serving.conftest import Server, World, start_server, stop_server
from tests.serving.online.test_service import known_customers
from training.config import Catalog
from training.registry.bundle import Bundle

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("server")]

CHANGES: dict[str, dict[str, Any]] = {
    "apology_credit": {"eligibility": "context_call_reason == 'billing'", "cost": 0.0},
    "retention_discount": {"suppress_after_declines": {"count": 2, "days": 30}},
}


def live_bundle(bundle: Bundle, changes: dict[str, dict[str, Any]]) -> Bundle:
    """The bundle with catalog changes, exploration and the control group off."""
    actions = [
        a.model_dump(mode="json") | changes.get(a.id, {}) for a in bundle.config.catalog.actions
    ]
    decisioning = bundle.config.decisioning.model_copy(
        update={"exploration": 0.0, "control_share": 0.0}
    )
    config = bundle.config.model_copy(
        update={"catalog": Catalog.model_validate({"actions": actions}), "decisioning": decisioning}
    )
    return Bundle(bundle.builder, config, bundle.models, bundle.metadata, bundle.uplift)


@pytest.fixture(scope="module")
def live(
    world: World, uplift_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("live")
    folder = live_bundle(uplift_bundle, CHANGES).save(root / "bundle")
    running = start_server(
        world,
        root / "decision_log.sqlite",
        NEXTBEST_BUNDLE_DIR=str(folder),
        NEXTBEST_EVENT_STORE=str(root / "event_store.sqlite"),
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
    return {a["action_id"]: a for a in answer["actions"]} | {"_decision": answer["decision_id"]}


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
    for customer in known_customers(world, 200)[100:]:
        first = shown(live, customer)
        if "retention_discount" in first:
            break
    else:
        pytest.fail("no customer is offered the retention discount")
    others = set(first) - {"retention_discount", "_decision"}
    decline = {"action_id": "retention_discount", "outcome": "declined"}
    assert live.call("POST", "/feedback", decline | {"decision_id": first["_decision"]})[0] == 200
    second = shown(live, customer)
    assert "retention_discount" in second, "one decline of two: still offered"
    assert live.call("POST", "/feedback", decline | {"decision_id": second["_decision"]})[0] == 200
    third = shown(live, customer)
    assert "retention_discount" not in third, "declined twice in 30 days: suppressed"
    assert set(third) - {"_decision"} >= others - {"retention_discount"}
    # another customer is untouched
    other = next(
        c
        for c in known_customers(world, 200)[100:]
        if c != customer and "retention_discount" in shown(live, c)
    )
    assert other
