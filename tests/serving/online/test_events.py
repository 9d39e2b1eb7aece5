"""`POST /events` over real HTTP: all-or-nothing batches, a 400 naming the bad row's index and
field, de-duplication by event_id, durability across a restart, and `nextbest export-events`
writing a table the data contract accepts.
"""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.serving.conftest import Server, World, start_server, stop_server
from training.data.contract import MAX_TEXT_CHARS, validate_dataset

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("server")]


def event(customer: str, n: int, **fields: object) -> dict[str, object]:
    body: dict[str, object] = {
        "customer_id": customer,
        "ts": f"2026-11-01T{n % 24:02d}:15:00Z",
        "channel": "call_center",
        "event_type": "complaint",
        "event_id": f"evt-{customer}-{n}",
    }
    return body | fields


def stored(path: Path) -> int:
    with sqlite3.connect(path) as con:
        return int(con.execute("SELECT count(*) FROM events").fetchone()[0])


@pytest.fixture(scope="module")
def events_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("events") / "event_store.sqlite"


@pytest.fixture(scope="module")
def live(world: World, events_path: Path) -> Iterator[Server]:
    running = start_server(
        world, events_path.parent / "decision_log.sqlite", NEXTBEST_EVENT_STORE=str(events_path)
    )
    yield running
    if running.process.poll() is None:  # the restart test stops it on purpose
        stop_server(running)


def test_a_batch_is_stored_and_a_retry_is_all_duplicates(live: Server, events_path: Path) -> None:
    batch = [event("C1", n) for n in range(5)]
    batch[2] |= {"event_type": "nps", "value": 3, "text": "Billed twice."}
    batch[3].pop("event_id")  # no id: never a duplicate
    before = stored(events_path)
    assert live.call("POST", "/events", {"events": batch}) == (
        200,
        {"accepted": 5, "duplicates": 0},
    )
    assert live.call("POST", "/events", {"events": batch}) == (
        200,
        {"accepted": 1, "duplicates": 4},
    )
    repeated = [event("C2", 1), event("C2", 1)]  # the same id twice in one batch
    assert live.call("POST", "/events", {"events": repeated})[1] == {
        "accepted": 1,
        "duplicates": 1,
    }
    assert stored(events_path) == before + 7


BAD_ROWS = {
    "ts": ({"ts": "yesterday"}, "events.2.ts"),
    "value": ({"value": "3"}, "events.2.value"),
    "event_type": ({"event_type": ""}, "events.2.event_type"),
    "unknown field": ({"colour": "red"}, "events.2.colour"),
    "text too long": ({"text": "x" * (MAX_TEXT_CHARS + 1)}, "events.2.text"),
    "customer_id": ({"customer_id": 7}, "events.2.customer_id"),
}


@pytest.mark.parametrize("case", sorted(BAD_ROWS))
def test_a_bad_row_is_a_400_naming_index_and_field_and_nothing_is_stored(
    live: Server, events_path: Path, case: str
) -> None:
    change, where = BAD_ROWS[case]
    batch = [event("C3", n) for n in range(4)]
    batch[2] = batch[2] | change
    before = stored(events_path)
    status, answer = live.call("POST", "/events", {"events": batch})
    assert status == 400, answer
    assert where in answer["error"], answer
    assert stored(events_path) == before


@pytest.mark.parametrize(
    "body", [{"events": []}, {}, {"events": {"a": 1}}, [1], {"events": [None]}]
)
def test_malformed_bodies_get_a_4xx(live: Server, body: object) -> None:
    status, answer = live.call("POST", "/events", body)
    assert 400 <= status < 500 and answer["error"]


def test_events_survive_a_restart_and_export_in_contract_form(
    world: World, events_path: Path, live: Server, tmp_path: Path
) -> None:
    batch = [event("C00000002", n, event_id=f"restart-{n}") for n in range(3)]
    assert live.call("POST", "/events", {"events": batch})[1]["accepted"] == 3
    stop_server(live)  # the module's server; the next tests of this module start their own
    again = start_server(
        world, tmp_path / "decision_log.sqlite", NEXTBEST_EVENT_STORE=str(events_path)
    )
    try:
        assert again.call("POST", "/events", {"events": batch})[1] == {
            "accepted": 0,
            "duplicates": 3,
        }
    finally:
        stop_server(again)
    out = tmp_path / "exported"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "nextbest"), "export-events", "--events", str(events_path),
         "--out", str(out)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    exported = pd.read_parquet(out / "events.parquet")
    assert len(exported) == stored(events_path)
    assert list(exported.columns[:5]) == ["customer_id", "ts", "channel", "event_type", "value"]
    assert exported["ts"].is_monotonic_increasing
    assert exported.loc[exported["event_id"] == "restart-1", "ts"].iloc[0] == pd.Timestamp(
        "2026-11-01 01:15:00"
    )
    # appended to a data set whose customers include them, the contract accepts the table
    data = tmp_path / "data"
    data.mkdir()
    customers = pd.read_parquet(world.data / "customers.parquet")
    extra = pd.DataFrame(
        {"customer_id": sorted(set(exported["customer_id"]) - set(customers["customer_id"]))}
    )
    pd.concat([customers, extra]).to_parquet(data / "customers.parquet", index=False)
    shutil.copy(out / "events.parquet", data / "events.parquet")
    summary = validate_dataset(data)
    assert summary.rows["events"] == len(exported)


def test_every_exported_event_has_an_id(tmp_path: Path) -> None:
    """An event posted without `event_id` is exported (and read back) with one made from its
    sequence number, so the service can tell it once it is in the data set too."""
    from datetime import UTC, datetime

    from serving.online.events import Event, EventStore, events_frame

    store = EventStore(tmp_path / "events.sqlite")
    ts = datetime(2026, 11, 1, 9)
    store.ingest([Event("c1", ts, "web", "visit"), Event("c1", ts, "web", "visit", event_id="x")],
                 datetime.now(UTC))  # fmt: skip
    assert [e.event_id for e in store.for_customer("c1")] == ["nextbest:seq:1", "x"]
    assert [(seq, e.event_id) for seq, e in store.after("c1", 1)] == [(2, "x")]  # only newer
    assert store.after("c2", 0) == []
    store.close()
    assert events_frame(tmp_path / "events.sqlite")["event_id"].tolist() == ["nextbest:seq:1", "x"]
