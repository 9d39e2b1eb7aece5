"""The closed loop of live events: exported (incrementally, `--after`), appended to the data set,
materialized, then pruned from the event store; what the journeys hold is deleted, the rest stays,
and a customer's live row is the same before and after."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from serving.online.event_retention import prune_materialized
from serving.online.events import Event, EventStore, export_events
from serving.online.live_features import LiveFeatures
from serving.online.store import OnlineStore
from tests.serving.conftest import AS_OF, World
from training.cli import app
from training.errors import NextbestError
from training.registry.mlflow_models import load_bundle

NOW = datetime(2026, 11, 3, 9, tzinfo=UTC)


def stored_customers(world: World, n: int) -> list[str]:
    store = OnlineStore(world.store)
    try:
        ids = [r[0] for r in store._con.execute("SELECT customer_id FROM features LIMIT ?", (n,))]
    finally:
        store.close()
    return ids


def appended(world: World, root: Path, exported: Path) -> Path:
    """A copy of the world's data set with the exported events appended (their ids kept)."""
    data = root / "data"
    shutil.copytree(world.data, data)
    events = pd.read_parquet(data / "events.parquet")
    new = pd.read_parquet(exported)
    for column in events.columns.difference(new.columns):  # e.g. resolved: empty
        new[column] = pd.Series([None] * len(new), dtype=events[column].dtype)
    events["event_id"] = None
    new["ts"] = new["ts"].astype(events["ts"].dtype)
    merged = pd.concat([events, new[events.columns]], ignore_index=True)
    schema = pq.read_schema(data / "events.parquet").append(
        pq.read_schema(exported).field("event_id")
    )
    merged.to_parquet(data / "events.parquet", index=False, schema=schema)
    return data


def test_exported_and_materialized_events_are_pruned_and_rows_stay_the_same(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.online.store import materialize

    first, second = stored_customers(world, 2)
    events = EventStore(tmp_path / "events.sqlite")
    day = datetime(2026, 11, 2, 8)
    events.ingest([Event(first, day, "app", "complaint", None, "slow app", "crm-1")], NOW)
    pending = events.ingest([Event(second, day, "web", "purchase", 40.0)], NOW, pending=True)
    rows, path, last = export_events(events.path, tmp_path / "export")
    assert (rows, last) == (2, 2)
    events.ingest([Event(first, day.replace(hour=9), "call_center", "call", 3.0)], NOW)  # later
    rows, _, last = export_events(events.path, tmp_path / "again", after=last)
    assert (rows, last) == (1, 3), "the next export holds only what is new"

    monkeypatch.setenv("MLFLOW_TRACKING_URI", world.tracking_uri)
    monkeypatch.chdir(world.root)
    store = materialize(appended(world, tmp_path, path), AS_OF, tmp_path / "store.sqlite").path
    online, live = OnlineStore(store), LiveFeatures(load_bundle(None))
    now = NOW.replace(tzinfo=None)
    before = {c: live.row(online.history(c), events.for_customer(c), now).vector
              for c in (first, second)}  # fmt: skip

    done = prune_materialized(events.path, store)
    assert (done.customers, done.events, done.kept) == (2, 1, 2)
    left = {c: events.for_customer(c) for c in (first, second)}
    assert [e.event_type for e in left[first]] == ["call"]  # the exported one gone, the later stays
    assert [e.event_type for e in left[second]] == ["purchase"]  # its triggers pending: stays
    for c in (first, second):
        np.testing.assert_array_equal(live.row(online.history(c), left[c], now).vector, before[c])
    events.settle([pending.stored[0][0]])
    assert prune_materialized(events.path, store).events == 1  # settled: pruned now
    assert events.for_customer(second) == []
    assert prune_materialized(events.path, store).events == 0
    online.close()
    live.close()
    events.close()


def test_prune_without_an_event_store_or_journeys_says_why(world: World, tmp_path: Path) -> None:
    with pytest.raises(NextbestError, match="no event store"):
        prune_materialized(tmp_path / "nothing.sqlite", world.store)
    EventStore(tmp_path / "events.sqlite").close()
    result = CliRunner().invoke(app, ["prune-events", "--events", str(tmp_path / "events.sqlite"),
                                      "--store", str(world.store)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "deleted 0 events" in result.output
