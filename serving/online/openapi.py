"""The service's published API documentation: the OpenAPI document at /docs.json and the Swagger
UI page at /docs (docs/api.md is the same contract in prose).

BentoML 1.4 generates the document from the pydantic models (`Service.openapi_spec`) but fills
`info` with its own placeholder text and "version None", and its spec classes have no place for a
security scheme or examples. `DocumentedService` (passed as `service_class=` to
`@bentoml.service`) keeps BentoML's paths and schemas and rewrites the rest as plain JSON in
`document`, a pure function: the package's real version, a description, the API-key scheme named
after the configured header, request and response examples, and the 4xx answers the guards and the
service really give (`{"error": ...}`, see serving/online/http_guards.py).
"""

from __future__ import annotations

import copy
import re
from importlib import metadata
from typing import Any

import bentoml
import yaml
from bentoml._internal.service.openapi.specification import OpenAPISpecification
from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from serving.online.deadline import FORMS
from serving.online.deadline import HEADER as DEADLINE_HEADER
from serving.online.http_guards import API_PATHS

TITLE = "nextbest"
DESCRIPTION = """\
Next-best-action decisions for one customer at a time: scores (churn probability, satisfaction,
lifetime value), and the catalog's actions ranked by expected incremental value net of cost, each
with its uplift per outcome and short reasons an agent can read out.

* `POST /recommend` makes a decision and logs it before answering; report what happened to a shown
  action with `POST /feedback` (an accepted action then counts against its contact limits).
* `POST /events` stores live events (all or nothing); decisions then see them.
* `POST /score` gives the scores alone; `GET /metadata` says which bundle and store are served.
* `GET /healthz`, `/readyz` (503 until a bundle is loaded) and `/metrics` (Prometheus) are for the
  platform; `GET /` is the agent-desktop page.

Bodies are JSON. Every client error is one JSON object `{"error": "<what is wrong>"}`; bad input is
never answered with a 5xx. When the service runs with `NEXTBEST_API_KEY` set, every call except the
pages, health, metrics and this document needs the key in the API-key header (see *Authorize*).
A client may send its deadline in `X-Request-Deadline` (optional; needs synchronized clocks): once it
has passed, the service answers 408 and decides and stores nothing.
The full contract, with curl examples: docs/api.md in the nextbest repository.
"""

SCHEME = "ApiKey"
ERROR_SCHEMA = "ClientError"
JSON = "application/json"

# request and response examples (the demo's catalog and channels); tests validate them against
# the API models and send them to a running service
EXAMPLES: dict[str, dict[str, Any]] = {
    "/recommend": {
        "request": {
            "customer_id": "C00000002",
            "channel": "call_center",
            "context": {"call_reason": "billing"},
            "max_actions": 2,
            "exclude": ["loyalty_upgrade"],
        },
        "response": {
            "decision_id": "5f0c6f4e2b7d4c1f9a3e8b6d2c1a0f9e",
            "customer_id": "C00000002",
            "model_version": "3",
            "scores": {"churn_probability": 0.142, "satisfaction": 6.8, "ltv": 412.5},
            "actions": [
                {
                    "action_id": "apology_credit",
                    "name": "Apology credit",
                    "script": "I am sorry for the trouble last month; I have added a credit to "
                    "your next bill.",
                    "expected_value": 11.9,
                    "cost": 4.0,
                    "roi": 2.98,
                    "uplift": {"churn": -0.031, "satisfaction": 0.42, "value": 2.1, "visit": 0.01},
                    "reasons": [
                        "Churn risk 14%, raised most by 2 unresolved contacts in the last 30 days.",
                        "Its expected effect depends most on 2 complaints in the last 30 days.",
                        "Expected to add 11.90 EUR after its 4.00 EUR cost.",
                    ],
                }
            ],
            "cold_start": False,
            "control_group": False,
            "explored": False,
            "propensity": 0.95,
            "currency": "EUR",
            "reason": None,
        },
    },
    "/score": {
        "request": {"customer_id": "C00000002"},
        "response": {
            "customer_id": "C00000002",
            "model_version": "3",
            "scores": {"churn_probability": 0.142, "satisfaction": 6.8, "ltv": 412.5},
            "cold_start": False,
        },
    },
    "/feedback": {
        "request": {
            "decision_id": "5f0c6f4e2b7d4c1f9a3e8b6d2c1a0f9e",
            "action_id": "apology_credit",
            "outcome": "accepted",
        },
        "response": {"decision_id": "5f0c6f4e2b7d4c1f9a3e8b6d2c1a0f9e", "stored": True},
    },
    "/events": {
        "request": {
            "events": [
                {
                    "customer_id": "C00000002",
                    "ts": "2026-11-02T10:15:00Z",
                    "channel": "call_center",
                    "event_type": "complaint",
                    "event_id": "crm-88121",
                },
                {
                    "customer_id": "C00000002",
                    "ts": "2026-11-02T10:21:00Z",
                    "channel": "call_center",
                    "event_type": "nps",
                    "value": 3,
                    "text": "Billed twice this month.",
                    "event_id": "crm-88122",
                },
            ]
        },
        "response": {"accepted": 2, "duplicates": 0},
    },
}

# the client errors each API can answer, as (status, description, example message)
_COMMON = [
    (
        400,
        "the body is not valid: malformed JSON, a missing or unknown field, a wrong type",
        "max_actions: Input should be greater than or equal to 1",
    ),
    (
        413,
        "the body is larger than NEXTBEST_MAX_REQUEST_BYTES",
        "request body larger than 65536 bytes",
    ),
    (
        415,
        "the body is a form or multipart upload, not JSON",
        "send the body as JSON (Content-Type: application/json), not multipart/form-data",
    ),
]
_DEADLINE_BAD = (
    400,
    f"`{DEADLINE_HEADER}` is malformed or sent more than once",
    f"{DEADLINE_HEADER}: not a deadline; send {FORMS}",
)
_DEADLINE_PASSED = (
    408,
    f"the client's deadline (`{DEADLINE_HEADER}`) passed before the service could answer: "
    "nothing was decided or stored",
    f"{DEADLINE_HEADER} passed 0.412 s before the service could answer (its clock); "
    "nothing was decided or stored",
)
_AUTH = (401, "the API key is missing or wrong (only when NEXTBEST_API_KEY is set)", "")
_NOT_READY = (503, "no model bundle is loaded yet (see GET /readyz)", "no bundle loaded yet")
ERRORS: dict[str, list[tuple[int, str, str]]] = {
    "/recommend": [
        *_COMMON,
        _DEADLINE_BAD,
        (400, "an unknown channel", "unknown channel 'fax' (channels: app, call_center, chat)"),
        (400, "an unknown action id in `exclude`", "unknown action id(s) in exclude: nope"),
        _AUTH,
        _NOT_READY,
        _DEADLINE_PASSED,
    ],
    "/score": [*_COMMON, _DEADLINE_BAD, _AUTH, _NOT_READY, _DEADLINE_PASSED],
    "/feedback": [
        *_COMMON,
        _DEADLINE_BAD,
        (
            400,
            "the action was not shown by that decision",
            "action 'loyalty_upgrade' was not offered in decision 5f0c6f4e2b7d4c1f9a3e8b6d2c1a0f9e",
        ),
        (404, "no decision has this decision_id", "unknown decision_id 'd0e5'"),
        _AUTH,
        _DEADLINE_PASSED,
    ],
    "/events": [
        *_COMMON,
        _DEADLINE_BAD,
        (400, "a bad event: the message names its index and field", "events.3.ts: Value error"),
        _AUTH,
        _DEADLINE_PASSED,
    ],
    "/metadata": [_AUTH],
}
PROTECTED = (*API_PATHS, "/metadata")
DEADLINE_PARAMETER = {
    "name": DEADLINE_HEADER,
    "in": "header",
    "required": False,
    "description": "When the client stops waiting: Unix epoch seconds (fractions allowed) or an "
    "RFC 3339 time with its UTC offset. Once it has passed the service answers 408 and neither "
    "decides nor stores anything. Optional; relies on the client's and the service's clocks "
    "agreeing (NTP).",
    "schema": {"type": "string"},
    "example": "1793614503.25",
}


def package_version() -> str:
    """The installed nextbest distribution's version (pyproject.toml), or "unknown" uninstalled."""
    try:
        return metadata.version("nextbest")
    except metadata.PackageNotFoundError:
        return "unknown"


def document(spec: dict[str, Any], api_key_header: str, api_key_required: bool) -> dict[str, Any]:
    """BentoML's OpenAPI document (`asdict()`) completed: info, security scheme, examples, 4xx."""
    out = copy.deepcopy(spec)
    out["info"] = {"title": TITLE, "version": package_version(), "description": DESCRIPTION}
    components = out.setdefault("components", {})
    components.setdefault("schemas", {})[ERROR_SCHEMA] = {
        "type": "object",
        "title": ERROR_SCHEMA,
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "what is wrong, in one line"},
            "detail": {
                "type": "array",
                "items": {"type": "object"},
                "description": "pydantic's validation errors, when the body failed validation",
            },
        },
    }
    components["securitySchemes"] = {
        SCHEME: {
            "type": "apiKey",
            "in": "header",
            "name": api_key_header,
            "description": "the value of NEXTBEST_API_KEY; required only when the service sets one",
        }
    }
    for path, item in out.get("paths", {}).items():
        operation = item.get("post", item.get("get"))
        if operation is None or path not in PROTECTED:
            continue
        # BentoML keys its responses by int status, FastAPI by str: one kind, as JSON has
        operation["responses"] = {str(k): v for k, v in operation.get("responses", {}).items()}
        if api_key_required:
            operation["security"] = [{SCHEME: []}]
        if path in API_PATHS:  # they honour the deadline header
            operation.setdefault("parameters", []).append(dict(DEADLINE_PARAMETER))
        _add_examples(operation, EXAMPLES.get(path))
        _add_errors(operation, ERRORS[path], api_key_header)
    return out


def _add_examples(operation: dict[str, Any], examples: dict[str, Any] | None) -> None:
    if examples is None:
        return
    request = operation.get("requestBody", {}).get("content", {}).get(JSON)
    if request is not None:
        request["example"] = examples["request"]
    response = operation.get("responses", {}).get("200", {}).get("content", {}).get(JSON)
    if response is not None:
        response["example"] = examples["response"]


def _add_errors(
    operation: dict[str, Any], errors: list[tuple[int, str, str]], api_key_header: str
) -> None:
    responses = operation.setdefault("responses", {})
    for code in [c for c in responses if re.fullmatch(r"4\d\d", c)]:
        del responses[code]  # BentoML's generic ones: the guards reshape every 4xx
    grouped: dict[str, list[tuple[str, str]]] = {}
    for status, description, message in errors:
        if status == 401:
            message = f"missing or wrong {api_key_header.lower()} header"
        grouped.setdefault(str(status), []).append((description, message))
    for code, cases in sorted(grouped.items()):
        responses[code] = {"description": "; ".join(d for d, _ in cases)}
        if code.startswith("4"):  # the guards give every 4xx this one shape
            responses[code]["content"] = {
                JSON: {
                    "schema": {"$ref": f"#/components/schemas/{ERROR_SCHEMA}"},
                    "examples": {
                        f"case{i}": {"summary": d, "value": {"error": m}}
                        for i, (d, m) in enumerate(cases)
                    },
                }
            }


class _DocumentedSpec(OpenAPISpecification):
    """BentoML's spec object whose `asdict()` (what /docs.json serves) is the completed document."""

    def asdict(self) -> dict[str, Any]:
        from serving.online.settings import ServingSettings

        settings = ServingSettings.from_env()
        return document(super().asdict(), settings.api_key_header, settings.api_key is not None)


class DocumentedService(bentoml.Service[Any]):
    """A BentoML service whose OpenAPI document is `document(...)` of the generated one."""

    @property
    def openapi_spec(self) -> OpenAPISpecification:
        spec = super().openapi_spec
        fields = (field.name for field in type(spec).__attrs_attrs__)
        return _DocumentedSpec(**{name: getattr(spec, name) for name in fields})


# `bentoml build` writes the document into the Bento with yaml.dump, which needs this for a subclass
yaml.add_representer(_DocumentedSpec, lambda dumper, spec: dumper.represent_dict(spec.asdict()))


# --- the Swagger UI page ------------------------------------------------------------------------

SWAGGER_PAGE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>nextbest API</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src="./static_content/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src="./static_content/swagger-initializer.js" charset="UTF-8"></script>
  </body>
</html>
"""

pages = APIRouter()


@pages.get("/docs", response_class=HTMLResponse, include_in_schema=False)
def swagger_ui() -> HTMLResponse:
    """Swagger UI on /docs.json, from the assets BentoML ships (works offline, no tracking tag)."""
    return HTMLResponse(SWAGGER_PAGE)
