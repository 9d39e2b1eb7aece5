"""Readiness: a service without a usable online store is alive but not ready, answers 503 (not a
crash), and becomes ready on its own once a store appears."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.serving.conftest import World, start_server, stop_server

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("server")]


def test_not_ready_until_a_store_is_there_then_ready(world: World, tmp_path: Path) -> None:
    store = tmp_path / "later.sqlite"
    server = start_server(
        World(world.data, world.tracking_uri, store, world.root),
        tmp_path / "log.sqlite",
        wait_for="/healthz",
        NEXTBEST_WORKERS="1",
    )
    try:
        assert server.call("GET", "/readyz")[0] == 503
        body = {"customer_id": "C1", "channel": "call_center"}
        assert server.call("POST", "/recommend", body)[0] == 503
        shutil.copy(world.store, store)
        deadline = time.monotonic() + 60
        while server.call("GET", "/readyz")[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert server.call("GET", "/readyz")[0] == 200
        assert server.call("POST", "/recommend", body)[0] == 200
    finally:
        stop_server(server)
