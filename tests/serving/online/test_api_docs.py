"""The published API documentation over real HTTP: Swagger UI at /docs, the OpenAPI document at
/docs.json (real version and description, the API-key scheme, examples that the running service
accepts and answers in the documented shape, the 4xx answers), and CORS only for configured origins.
"""

from __future__ import annotations

import json
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import pytest

from serving.online.api_models import (
    EventsRequest,
    EventsResponse,
    FeedbackRequest,
    FeedbackResponse,
    RecommendRequest,
    RecommendResponse,
    ScoreRequest,
    ScoreResponse,
)
from serving.online.cors import cors_options
from serving.online.openapi import EXAMPLES, document
from serving.online.settings import ServingSettings
from tests.serving.conftest import API_KEY, Server, World, start_server, stop_server
from training.errors import ConfigError

DESK = "http://desk.example.com:8080"
MODELS = {
    "/recommend": (RecommendRequest, RecommendResponse),
    "/score": (ScoreRequest, ScoreResponse),
    "/feedback": (FeedbackRequest, FeedbackResponse),
    "/events": (EventsRequest, EventsResponse),
}


def exchange(
    server: Server, method: str, path: str, headers: dict[str, str], body: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    """(status, lower-cased headers, body) of one raw request."""
    request = urllib.request.Request(server.url + path, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, head, payload = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, head, payload = exc.code, exc.headers, exc.read()
    return status, {k.lower(): v for k, v in head.items()}, payload


# --- without a server -------------------------------------------------------------------------


@pytest.mark.parametrize("path", sorted(MODELS))
def test_the_examples_are_valid_bodies(path: str) -> None:
    request, response = MODELS[path]
    request.model_validate(EXAMPLES[path]["request"])
    response.model_validate(EXAMPLES[path]["response"])


def test_the_security_scheme_follows_the_settings() -> None:
    stock = {"info": {"title": "x", "version": "None"}, "paths": {"/score": {"post": {}}}}
    open_doc = document(stock, "X-Desk-Key", api_key_required=False)
    keyed = document(stock, "X-Desk-Key", api_key_required=True)
    for doc in (open_doc, keyed):
        assert doc["components"]["securitySchemes"]["ApiKey"]["name"] == "X-Desk-Key"
        assert doc["info"]["version"] == metadata.version("nextbest")
    assert "security" not in open_doc["paths"]["/score"]["post"]
    assert keyed["paths"]["/score"]["post"]["security"] == [{"ApiKey": []}]
    assert stock["paths"]["/score"]["post"] == {}  # the input is left alone


def test_the_service_document_has_the_examples_and_errors() -> None:
    """On the document BentoML generates for this service (no server needed)."""
    from serving.online.service import SERVICE

    spec = SERVICE.openapi_spec.asdict()
    for path in MODELS:
        operation = spec["paths"][path]["post"]
        media = operation["responses"]["200"]["content"]["application/json"]
        assert media["example"] == EXAMPLES[path]["response"]
        assert all(isinstance(code, str) for code in operation["responses"])
        assert {"400", "413", "415"} <= set(operation["responses"]), path
        # the client's deadline: an optional header, and its 408
        (deadline,) = [p for p in operation["parameters"] if p["name"] == "X-Request-Deadline"]
        assert deadline["in"] == "header" and deadline["required"] is False
        timeout = operation["responses"]["408"]["content"]["application/json"]
        assert all(e["value"]["error"] for e in timeout["examples"].values())
    assert "408" not in spec["paths"]["/metadata"]["get"]["responses"]


def test_cors_origins_are_parsed_and_checked() -> None:
    settings = ServingSettings.from_env({"NEXTBEST_CORS_ORIGINS": f" {DESK}, https://b.example "})
    assert settings.allowed_origins == (DESK, "https://b.example")
    assert cors_options(settings)["allow_origins"] == [DESK, "https://b.example"]
    assert {"x-api-key", "x-request-deadline"} <= set(cors_options(settings)["allow_headers"])
    assert ServingSettings.from_env({}).allowed_origins == ()
    for bad in ("desk.example.com", "https://desk.example.com/app", "*"):
        with pytest.raises(ConfigError, match="NEXTBEST_CORS_ORIGINS"):
            ServingSettings.from_env({"NEXTBEST_CORS_ORIGINS": bad})


# --- over real HTTP -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.xdist_group("server")
def test_docs_is_the_swagger_ui_page_and_needs_no_key(server: Server) -> None:
    status, head, page = exchange(server, "GET", "/docs", {})
    assert status == 200 and head["content-type"].startswith("text/html")
    assert b'id="swagger-ui"' in page and b"googletagmanager" not in page
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "swagger-initializer.js"):
        status, _, body = exchange(server, "GET", f"/static_content/{asset}", {})
        assert status == 200 and len(body) > 100, asset
    _, _, initializer = exchange(server, "GET", "/static_content/swagger-initializer.js", {})
    assert b'"./docs.json"' in initializer  # /docs loads /docs.json
    assert server.call("GET", "/", headers={"X-API-Key": ""})[0] == 200  # the agent page stays


@pytest.mark.slow
@pytest.mark.xdist_group("server")
def test_the_openapi_document_is_complete(server: Server) -> None:
    status, spec = server.call("GET", "/docs.json", headers={"X-API-Key": ""})
    assert status == 200
    assert spec["info"]["title"] == "nextbest"
    assert spec["info"]["version"] == metadata.version("nextbest") != "None"
    assert "next-best-action" in spec["info"]["description"].lower()
    assert "bentoml" not in json.dumps(spec["info"]).lower()
    scheme = spec["components"]["securitySchemes"]["ApiKey"]
    assert scheme == scheme | {"type": "apiKey", "in": "header", "name": "X-API-Key"}
    expected_4xx = {
        "/recommend": {"400", "401", "408", "413", "415"},
        "/score": {"400", "401", "408", "413", "415"},
        "/feedback": {"400", "401", "404", "408", "413", "415"},
    }
    for path, codes in expected_4xx.items():
        operation = spec["paths"][path]["post"]
        assert operation["security"] == [{"ApiKey": []}], path  # the fixture's server has a key
        body = operation["requestBody"]["content"]["application/json"]
        assert body["example"] == EXAMPLES[path]["request"]
        answer = operation["responses"]["200"]["content"]["application/json"]
        assert answer["example"] == EXAMPLES[path]["response"]
        documented = {c for c in operation["responses"] if c.startswith("4")}
        assert documented == codes, path
        for code in codes:
            media = operation["responses"][code]["content"]["application/json"]
            assert media["schema"]["$ref"] == "#/components/schemas/ClientError"
            assert all(e["value"]["error"] for e in media["examples"].values())
    assert "error" in spec["components"]["schemas"]["ClientError"]["required"]


@pytest.mark.slow
@pytest.mark.xdist_group("server")
def test_the_documented_examples_work_against_the_service(server: Server, world: World) -> None:
    """The example requests are answered 200 in the documented shape; the documented 4xx happen."""
    status, answer = server.call("POST", "/recommend", EXAMPLES["/recommend"]["request"])
    assert status == 200, answer
    assert set(answer) == set(EXAMPLES["/recommend"]["response"])
    status, scored = server.call("POST", "/score", EXAMPLES["/score"]["request"])
    assert status == 200 and set(scored) == set(EXAMPLES["/score"]["response"])
    with sqlite3.connect(world.store) as con:
        customers = [r[0] for r in con.execute("SELECT customer_id FROM features LIMIT 60")]
    decisions = (
        server.call("POST", "/recommend", {"customer_id": c, "channel": "call_center"})[1]
        for c in customers
    )
    decision = next((d for d in decisions if d["actions"]), None)
    assert decision is not None, "no action shown to 60 customers"
    feedback = EXAMPLES["/feedback"]["request"] | {
        "decision_id": decision["decision_id"],
        "action_id": decision["actions"][0]["action_id"],
    }
    status, stored = server.call("POST", "/feedback", feedback)
    assert status == 200 and set(stored) == set(EXAMPLES["/feedback"]["response"])
    status, missing = server.call("POST", "/feedback", feedback | {"decision_id": "d0e5"})
    assert status == 404 and missing["error"].startswith("unknown decision_id")
    status, bad = server.call("POST", "/recommend", {"customer_id": "C1", "channel": "fax"})
    assert status == 400 and bad["error"].startswith("unknown channel 'fax'")


@pytest.mark.slow
@pytest.mark.xdist_group("server")
def test_cross_origin_calls_are_off_by_default(server: Server) -> None:
    preflight = {
        "Origin": DESK,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key",
    }
    status, head, _ = exchange(server, "OPTIONS", "/recommend", preflight)
    assert "access-control-allow-origin" not in head
    assert status >= 400


@pytest.fixture(scope="module")
def cors_server(world: World) -> Iterator[Server]:
    """A second service, one worker, that lets the desk's origin call it from a browser."""
    running = start_server(
        world,
        world.root / "decision_log_cors.sqlite",
        NEXTBEST_CORS_ORIGINS=DESK,
        NEXTBEST_WORKERS="1",
    )
    yield running
    stop_server(running)


@pytest.mark.slow
@pytest.mark.xdist_group("server")
def test_cors_preflight_is_allowed_only_for_configured_origins(cors_server: Server) -> None:
    asked = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key",
    }
    status, head, _ = exchange(cors_server, "OPTIONS", "/recommend", asked | {"Origin": DESK})
    assert status == 200  # answered before the API key is checked: a preflight carries none
    assert head["access-control-allow-origin"] == DESK
    assert "x-api-key" in head["access-control-allow-headers"].lower()
    assert "POST" in head["access-control-allow-methods"]
    other = asked | {"Origin": "https://evil.example"}
    status, head, _ = exchange(cors_server, "OPTIONS", "/recommend", other)
    assert status == 400 and "access-control-allow-origin" not in head

    body = json.dumps({"customer_id": "C00000001", "channel": "call_center"}).encode()
    call: dict[str, Any] = {"Content-Type": "application/json", "Origin": DESK}
    status, head, payload = exchange(
        cors_server, "POST", "/recommend", call | {"X-API-Key": API_KEY}, body
    )
    assert status == 200 and head["access-control-allow-origin"] == DESK
    status, head, payload = exchange(cors_server, "POST", "/recommend", call, body)
    assert status == 401 and head["access-control-allow-origin"] == DESK  # the page reads why
    assert "x-api-key" in json.loads(payload)["error"]
    status, head, _ = exchange(
        cors_server, "POST", "/recommend", call | {"Origin": "https://evil.example"}, body
    )
    assert status == 401 and "access-control-allow-origin" not in head
