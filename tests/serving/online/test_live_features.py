"""Features at decision time agree with the one feature definition: a customer's live row (stored
journey + ingested events, as of now) equals what FeatureBuilder.transform (`nextbest features`)
computes on the data set with those events appended, and windows slide as the clock moves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from serving.online.events import Event
from serving.online.history import TEXT_SCORES, History, from_ipc, history_rows, with_text_scores
from serving.online.live_features import LiveFeatures, events_table
from serving.online.store import namespace_rows, rule_names
from training.data.contract import open_dataset
from training.features.definition import FeatureBuilder, to_matrix
from training.registry.bundle import Bundle

pytestmark = pytest.mark.slow
NOW = datetime(2026, 11, 5, 10, 30, tzinfo=UTC)
N_CUSTOMERS = 25


def ingested_for(customer: str, k: int) -> list[Event]:
    """A few live events: inside and outside the 7-day window, a survey, a purchase, a new type,
    and one after NOW (it must not count yet)."""
    now = NOW.replace(tzinfo=None)
    events = [
        Event(customer, now - timedelta(days=2, hours=k), "call_center", "complaint"),
        Event(
            customer, now - timedelta(hours=1), "call_center", "nps", 3.0 + k % 5, "Billed twice"
        ),
        Event(customer, now - timedelta(days=10), "web", "purchase", 20.0 + k),
        Event(customer, now - timedelta(minutes=5), "chat", "never_seen_type"),
        Event(customer, now + timedelta(hours=2), "call_center", "complaint"),
    ]
    return events[: 2 + k % 4] + events[4:]


@pytest.fixture(scope="module")
def journeys(small_world: Path) -> dict[str, History]:
    with open_dataset(small_world).connect() as con:
        ids = [r[0] for r in con.execute(
            f"SELECT DISTINCT customer_id FROM events ORDER BY 1 LIMIT {N_CUSTOMERS}").fetchall()]  # fmt: skip
        return {
            c: History(from_ipc(a), from_ipc(b), from_ipc(x))
            for c, a, b, x in history_rows(con, ids)
        }


def offline(
    bundle: Bundle, small_world: Path, extra: list[Event], when: datetime, tmp: Path
) -> pd.DataFrame:
    """`nextbest features` on the data set with the events appended: the one definition, in batch."""
    data = tmp / f"appended-{when:%Y%m%d%H%M}"
    data.mkdir()
    for table in ("customers", "exposures"):
        pd.read_parquet(small_world / f"{table}.parquet").to_parquet(data / f"{table}.parquet")
    events = pd.read_parquet(small_world / "events.parquet")
    appended = pd.DataFrame(
        {
            "customer_id": [e.customer_id for e in extra],
            "ts": pd.to_datetime([e.ts for e in extra]).astype(events["ts"].dtype),
            "channel": [e.channel for e in extra],
            "event_type": [e.event_type for e in extra],
            "value": [e.value for e in extra],
        }
    )
    pd.concat([events, appended], ignore_index=True).to_parquet(data / "events.parquet")
    with open_dataset(data).connect() as con:
        return bundle.builder.transform(con, as_of=when.replace(tzinfo=None))


@pytest.mark.parametrize("shift_days", [0, 8])
def test_live_rows_equal_the_batch_definition_with_events_appended(
    uplift_bundle: Bundle,
    small_world: Path,
    journeys: dict[str, History],
    tmp_path: Path,
    shift_days: int,
) -> None:
    when = NOW + timedelta(days=shift_days)
    live = LiveFeatures(uplift_bundle)
    ingested = {c: ingested_for(c, k) for k, c in enumerate(journeys)}
    rows = {c: live.row(journeys[c], ingested[c], when) for c in journeys}
    batch = offline(
        uplift_bundle, small_world, [e for es in ingested.values() for e in es], when, tmp_path
    )
    batch = batch.set_index("customer_id").loc[list(journeys)].reset_index()
    names = list(uplift_bundle.builder.feature_names_)
    expected = to_matrix(uplift_bundle.prepare(batch), names)
    spaces = namespace_rows(batch, rule_names(uplift_bundle))
    for k, customer in enumerate(journeys):
        np.testing.assert_array_equal(
            rows[customer].vector, expected[k].astype(np.float32), err_msg=customer
        )
        assert rows[customer].namespace == spaces[k]
        # the rows came from the one-customer path, and the DuckDB reference gives the same
        history = journeys[customer]
        events = pa.concat_tables(
            [history.events, events_table(ingested[customer], history.events.schema)]
        )
        assert live.fast.unsupported(history.customers, events, history.exposures) is None
        reference = live.reference_row(history, events, when)
        np.testing.assert_array_equal(rows[customer].vector, reference.vector, err_msg=customer)
        assert reference.namespace == spaces[k]
    live.close()


def test_windows_slide_and_live_events_count(
    uplift_bundle: Bundle, journeys: dict[str, History]
) -> None:
    live = LiveFeatures(uplift_bundle)
    names = list(uplift_bundle.builder.feature_names_)
    week, nps = names.index("complaints_7d"), names.index("nps_last")
    customer = next(iter(journeys))
    complaint = Event(
        customer, NOW.replace(tzinfo=None) - timedelta(days=1), "call_center", "complaint"
    )
    survey = Event(customer, NOW.replace(tzinfo=None) - timedelta(hours=1), "app", "nps", 2.0)
    before = live.row(journeys[customer], [], NOW).vector
    now = live.row(journeys[customer], [complaint, survey], NOW).vector
    later = live.row(journeys[customer], [complaint, survey], NOW + timedelta(days=7)).vector
    assert now[week] == before[week] + 1, "the complaint of yesterday counts"
    assert now[nps] == 2.0, "the survey answer of an hour ago is the last one"
    # a week later the stored data (ending 2026-11-01) and yesterday's complaint are out of 7 days
    assert later[week] == 0
    assert later[nps] == 2.0
    live.close()


def test_a_kept_row_moves_with_the_clock_and_equals_a_row_computed_then(
    uplift_bundle: Bundle, journeys: dict[str, History]
) -> None:
    """The row kept for a customer's event sequence, moved to a later request's time, equals the
    row computed anew then (vector and rule inputs), from a second to weeks later; past the end
    of its span it is refused (and computed anew), and a new event sequence never reads it."""
    live, fresh = LiveFeatures(uplift_bundle), LiveFeatures(uplift_bundle)
    steps = [timedelta(seconds=s) for s in (0, 1, 59, 3600, 3 * 3600, 86400 * 2, 86400 * 9)]
    moved = anew = 0
    for k, customer in enumerate(journeys):
        events = ingested_for(customer, k)
        live.row(journeys[customer], events, NOW, (customer, 3))
        for step in steps:
            when = NOW + step
            row = live.kept(customer, 3, when)
            if row is None:
                anew += 1
                row = live.row(journeys[customer], events, when, (customer, 3))
            else:
                moved += 1
            expected = fresh.row(journeys[customer], events, when)
            np.testing.assert_array_equal(row.vector, expected.vector, err_msg=f"{customer} {step}")
            assert row.namespace == expected.namespace
        assert live.kept(customer, 4, NOW + steps[-1]) is None  # another event came since
        live.forget(customer)
        assert live.kept(customer, 3, NOW + steps[-1]) is None  # erased: nothing kept
    assert moved >= 2 * len(journeys) and anew >= len(journeys)
    live.close()
    fresh.close()


def test_a_kept_row_ends_where_a_window_drops_an_event(
    uplift_bundle: Bundle, journeys: dict[str, History]
) -> None:
    """A complaint 7 days minus a minute before NOW: a minute and a microsecond later it has left
    the 7-day window, and the kept row is refused there, not moved."""
    live = LiveFeatures(uplift_bundle)
    week = list(uplift_bundle.builder.feature_names_).index("complaints_7d")
    customer = next(iter(journeys))
    edge = NOW.replace(tzinfo=None) - timedelta(days=7) + timedelta(minutes=1)
    events = [Event(customer, edge, "call_center", "complaint")]
    inside = live.row(journeys[customer], events, NOW, (customer, 1))
    last_in = NOW + timedelta(minutes=1)
    kept = live.kept(customer, 1, last_in)
    assert kept is not None and kept.vector[week] == inside.vector[week]
    out = last_in + timedelta(microseconds=1)
    assert live.kept(customer, 1, out) is None
    assert live.row(journeys[customer], events, out).vector[week] == inside.vector[week] - 1
    live.close()


def test_an_exported_event_in_the_stored_journey_counts_once(
    uplift_bundle: Bundle, journeys: dict[str, History]
) -> None:
    """An ingested event that was exported into the data set and materialized since is in the
    stored journey and still in the event store: the live row counts it once (by its id), which
    is the row of the journey alone; events without a matching id still count."""
    live = LiveFeatures(uplift_bundle)
    customer, history = next(iter(journeys.items()))
    now = NOW.replace(tzinfo=None)
    mine = [
        Event(customer, now - timedelta(hours=2), "call_center", "complaint", None, None, "crm-1"),
        Event(customer, now - timedelta(hours=1), "web", "purchase", 30.0, None, "nextbest:seq:7"),
    ]
    stored = history.events
    if "event_id" not in stored.column_names:
        stored = stored.append_column("event_id", pa.nulls(len(stored), pa.string()))
    rows = events_table(mine, stored.schema)
    rows = rows.set_column(
        rows.schema.get_field_index("event_id"), "event_id", pa.array([e.event_id for e in mine])
    )
    exported = History(history.customers, pa.concat_tables([stored, rows]), history.exposures)
    once = live.row(exported, mine, NOW).vector
    np.testing.assert_array_equal(once, live.row(exported, [], NOW).vector)
    plain = History(history.customers, stored, history.exposures)
    np.testing.assert_array_equal(once, live.row(plain, mine, NOW).vector)  # the same events
    unnamed = [Event(e.customer_id, e.ts, e.channel, e.event_type, e.value) for e in mine]
    assert not np.array_equal(once, live.row(exported, unnamed, NOW).vector, equal_nan=True)
    assert not np.array_equal(once, live.row(plain, [], NOW).vector, equal_nan=True)
    live.close()


def test_a_journey_stored_with_its_text_scores_is_not_scored_again(
    uplift_bundle: Bundle, small_world: Path
) -> None:
    """`materialize` stores each event's text scores beside it: the live row reads them (the text
    model scores only texts that arrive live) and equals the row of the journey scored anew."""
    from tests.training.features.test_text_features import fitted

    model = fitted.__wrapped__()[0]  # type: ignore[attr-defined]
    with open_dataset(small_world).connect() as con:
        builder = FeatureBuilder().fit(con).with_text(model)
        ids = [r[0] for r in con.execute(
            "SELECT customer_id FROM events WHERE text IS NOT NULL GROUP BY 1 ORDER BY 1 LIMIT 5"
        ).fetchall()]  # fmt: skip
        scored = {c: History(*map(from_ipc, blobs)) for c, *blobs in history_rows(con, ids, model)}
        plain = {c: History(*map(from_ipc, blobs)) for c, *blobs in history_rows(con, ids)}
    bundle = Bundle(builder, uplift_bundle.config, {})
    asked: list[str] = []

    class Counted:  # the same model, its scored texts counted
        per_customer, digest = False, model.digest

        def score(self, texts: list[str], customer_ids: object = None) -> object:
            asked.extend(texts)
            return model.score(texts)

    live, fresh = LiveFeatures(bundle), LiveFeatures(bundle)
    live.fast.text_model = Counted()  # type: ignore[assignment]
    for customer in ids:
        history = scored[customer]
        assert history.events.column(TEXT_SCORES[0]).null_count < history.events.num_rows
        said = Event(customer, NOW.replace(tzinfo=None), "app", "complaint", None, "so cold here")
        got = live.row(history, [said], NOW + timedelta(hours=1)).vector
        assert asked in ([], ["so cold here"]), "only the live text is scored"
        expected = fresh.row(plain[customer], [said], NOW + timedelta(hours=1)).vector
        np.testing.assert_array_equal(got, expected, err_msg=customer)
        asked.clear()
    live.close()
    fresh.close()


def test_a_journey_extended_event_by_event_equals_the_row_of_all_events_at_once(
    uplift_bundle: Bundle, journeys: dict[str, History]
) -> None:
    """The service reads only the events stored since the journey it kept: extending it one
    batch at a time (events out of time order too) gives the row computed from all of them."""
    live, fresh = LiveFeatures(uplift_bundle), LiveFeatures(uplift_bundle)
    for k, (customer, history) in enumerate(journeys.items()):
        events = ingested_for(customer, k)
        batches = [events[:2], events[2:3], events[3:]]  # the later batches hold older events
        seq, journey = 0, None
        for batch in batches:
            new = [(seq + i + 1, e) for i, e in enumerate(batch)]
            seq += len(batch)
            got = live.extended(customer, history, journey, new, NOW + timedelta(hours=3))
            journey = live.journey(customer)
            assert journey is not None and journey.seq == seq
        expected = fresh.row(history, events, NOW + timedelta(hours=3))
        np.testing.assert_array_equal(got.vector, expected.vector, err_msg=customer)
        assert live.kept(customer, seq, NOW + timedelta(hours=3)) is not None
        live.forget(customer)
        assert live.journey(customer) is None
    live.close()
    fresh.close()


def test_a_kept_journey_holds_its_events_in_its_columns_alone(
    uplift_bundle: Bundle, journeys: dict[str, History]
) -> None:
    """A worker keeps a thousand journeys: their events are in their columns only, not kept as
    objects too, which every garbage collection would walk until they were old."""
    live = LiveFeatures(uplift_bundle)
    customer, history = next(iter(journeys.items()))
    events = list(enumerate(ingested_for(customer, 0), 1))
    live.extended(customer, history, None, events, NOW + timedelta(hours=3))
    journey = live.journey(customer)
    assert journey is not None and journey.columns is not None
    assert journey.ingested == ()
    live.close()


def test_an_event_the_columns_refuse_reads_every_event_again(
    uplift_bundle: Bundle, journeys: dict[str, History]
) -> None:
    """A value that is not finite is refused by the one-customer path; the journey kept holds
    the earlier events in columns only, so every event is read again, by the reference."""
    live, fresh = LiveFeatures(uplift_bundle), LiveFeatures(uplift_bundle)
    customer, history = next(iter(journeys.items()))
    events = ingested_for(customer, 1)
    odd = Event(customer, NOW.replace(tzinfo=None) - timedelta(hours=2), "web", "nps", np.inf)
    stored = list(enumerate([*events, odd], 1))
    when = NOW + timedelta(hours=3)
    live.extended(customer, history, None, stored[:-1], when)
    base = live.journey(customer)
    with pytest.raises(ValueError, match="every event"):
        live.extended(customer, history, base, stored[-1:], when)
    got = live.extended(customer, history, base, stored[-1:], when, lambda: stored)
    expected = fresh.row(history, [*events, odd], when)
    np.testing.assert_array_equal(got.vector, expected.vector)
    journey = live.journey(customer)
    assert journey is not None and journey.columns is None
    assert journey.ingested == (*events, odd)
    live.close()
    fresh.close()


def test_a_journey_without_a_text_to_score_is_stored_as_it_is() -> None:
    """No text, or only blank ones: nothing is scored (a model asked for no text refuses) and
    the events keep their columns."""

    class NeverAsked:
        per_customer, digest = False, "d"

        def score(self, texts: list[str]) -> object:
            raise AssertionError(f"asked to score {texts}")

    events = pa.table({"customer_id": ["a", "a"], "text": pa.array([None, "  "], pa.string())})
    assert with_text_scores(events, NeverAsked()).equals(events)  # type: ignore[arg-type]
