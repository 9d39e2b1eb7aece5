"""Fuzzing the published OpenAPI schema (schemathesis): valid and invalid bodies for every POST
operation, sent to the real server; not one may get a 5xx.

The cases are drawn with the operations' hypothesis strategies inside one test (schemathesis'
lazy pytest fixture loader does not run on this pytest), derandomized so a failure reproduces.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from tests.serving.conftest import API_KEY, Server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("server")]
EXAMPLES = 60  # per operation and generation mode


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_server_error(server: Server, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(server.url + "/docs.json")
    operations = [r.ok() for r in schema.get_all_operations()]
    posts = [op for op in operations if op.method.upper() == "POST"]
    assert {op.path for op in posts} >= {"/recommend", "/score", "/feedback"}
    for operation in posts:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=server.url, headers={"X-API-Key": API_KEY}, checks=[not_a_server_error]
            )

        call()
