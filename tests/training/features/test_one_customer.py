"""The one-customer path equals FeatureBuilder.transform (the DuckDB reference) bit for bit: on
random histories with fractional values, at several as-of times (windows sliding, events at and
after the as-of time, empty windows, customers with nothing), with missing values and static
attributes of every kind; and it refuses the inputs it would read differently."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tests.training.features.test_definition import T, connect, events_frame, random_data
from training.features.definition import FeatureBuilder, to_matrix
from training.features.one_customer import OneCustomer, instant

AS_OFS = [
    T,
    T + timedelta(days=8, hours=3, microseconds=250),  # windows slide past the last events
    T - timedelta(days=200, seconds=1),
    T + timedelta(days=800),  # everything old: empty windows
]


def varied(seed: int, extra: pd.DataFrame | None = None) -> duckdb.DuckDBPyConnection:
    """`random_data` with fractional values, missing values and every attribute kind (plus
    `extra` customers rows)."""
    customers, events, exposures = random_data(seed, n_customers=120, n_events=3000)
    rng = np.random.default_rng(seed + 1)
    n = len(customers)
    customers["vip"] = pd.array(rng.random(n) < 0.3, dtype="boolean")
    customers.loc[rng.random(n) < 0.1, "vip"] = None
    customers.loc[rng.random(n) < 0.1, "age"] = np.nan
    customers["tenure"] = rng.integers(0, 100, n)  # an integer attribute
    customers["last_login"] = pd.Timestamp(T) - pd.to_timedelta(rng.integers(-9, 90, n), "h")
    plans = customers["plan"].astype(object)
    plans[rng.random(n) < 0.1] = None
    customers["plan"] = plans
    valued = events["value"].notna().to_numpy()
    events.loc[valued, "value"] = np.round(rng.normal(3.0, 4.0, valued.sum()), 3)
    events.loc[rng.random(len(events)) < 0.05, "value"] = np.nan
    events.loc[rng.random(len(events)) < 0.05, "channel"] = None
    resolved = events["resolved"].copy()
    resolved[rng.random(len(events)) < 0.2] = pd.NA
    events["resolved"] = resolved
    if extra is not None:
        customers = pd.concat([customers, extra], ignore_index=True)
    return connect(customers, events, exposures)


def tables(con: duckdb.DuckDBPyConnection) -> dict[str, pa.Table]:
    return {t: con.sql(f"SELECT * FROM {t}").to_arrow_table() for t in ("customers", "events", "exposures")}  # fmt: skip


def own(table: pa.Table, customer: str) -> pa.Table:
    return table.filter(pa.compute.equal(table.column("customer_id"), customer))


@pytest.mark.parametrize("seed", [3, 4])
def test_one_customer_rows_equal_the_reference(seed: int) -> None:
    con = varied(seed)
    builder = FeatureBuilder().fit(con)
    one, data = OneCustomer(builder), tables(con)
    categorical = [s.name for s in builder.static_ if s.kind == "categorical"]
    assert categorical and {"vip", "tenure", "days_since_last_login"} <= set(builder.feature_names_)
    for as_of in AS_OFS:
        reference = builder.transform(con, as_of=as_of)
        expected = to_matrix(reference, builder.feature_names_)
        for k, customer in enumerate(reference["customer_id"]):
            customers = own(data["customers"], customer)
            # half of the rows get the whole events table: the path keeps the customer's own
            events = data["events"] if k % 2 else own(data["events"], customer)
            assert one.unsupported(customers, events, data["exposures"]) is None
            got = one.row(customers, events, data["exposures"], as_of)
            np.testing.assert_array_equal(got.vector, expected[k], err_msg=f"{customer} {as_of}")
            for name in categorical:
                text = reference[name].iloc[k]
                assert got.categories[name] == (None if pd.isna(text) else text)


def test_a_customer_with_nothing_and_no_exposures_table() -> None:
    builder = FeatureBuilder().fit(varied(5))
    con = varied(5, pd.DataFrame({"customer_id": ["nobody"], "plan": ["platinum"]}))
    con.execute("DROP VIEW exposures")
    reference = builder.transform(con, as_of=T)
    expected = to_matrix(reference, builder.feature_names_)[
        list(reference["customer_id"]).index("nobody")
    ]
    data = {t: con.sql(f"SELECT * FROM {t}").to_arrow_table() for t in ("customers", "events")}  # fmt: skip
    got = OneCustomer(builder).row(own(data["customers"], "nobody"), data["events"], None, T)
    np.testing.assert_array_equal(got.vector, expected)
    assert got.categories["plan"] is None  # an unseen category is missing, as in the reference
    assert np.isnan(got.vector[builder.feature_names_.index("days_since_last_event")])


def test_purchase_days_equal_the_reference() -> None:
    """Several orders on one day, days straddling midnight and the window edges: the one-customer
    path counts the same purchase days as the SQL."""
    stamps = [T - timedelta(days=d, seconds=s) for d, s in
              [(1, 0), (1, 1), (2, -1), (7, 0), (7, 1), (7, 2), (30, 0), (30, 1), (364, 5)]]  # fmt: skip
    events = events_frame([("a", ts, "web", "purchase", 1.5, None) for ts in stamps])
    con = connect(pd.DataFrame({"customer_id": ["a"]}), events)
    builder = FeatureBuilder().fit(con)
    expected = to_matrix(builder.transform(con, as_of=T), builder.feature_names_)[0]
    data = {t: con.sql(f"SELECT * FROM {t}").to_arrow_table() for t in ("customers", "events")}  # fmt: skip
    got = OneCustomer(builder).row(data["customers"], data["events"], None, T)
    np.testing.assert_array_equal(got.vector, expected)
    days = [expected[builder.feature_names_.index(f"purchase_days_{w}d")] for w in (7, 30, 365)]
    assert days == [3, 5, 7]  # days 0, 1, 6 | + 7, 29 | + 30, 364 (day k: ages in (k, k + 1])


def test_inputs_read_differently_are_refused() -> None:
    con = varied(6)
    one, data = OneCustomer(FeatureBuilder().fit(con)), tables(con)
    customers, events = own(data["customers"], "c0001"), data["events"]
    assert one.unsupported(data["customers"], events, None) is not None  # not one row
    as_text = customers.set_column(
        customers.column_names.index("age"), "age", pa.array(["40"], pa.string())
    )
    assert "age" in str(one.unsupported(as_text, events, None))
    nan = events.set_column(
        events.column_names.index("value"), "value", pa.array([float("nan")] * len(events))
    )
    assert "non-finite" in str(one.unsupported(customers, nan, None))
    ns = events.set_column(1, "ts", events.column("ts").cast(pa.timestamp("ns")))
    assert "ts" in str(one.unsupported(customers, ns, None))


def test_microseconds_of_the_as_of_time_count() -> None:
    """An event one microsecond before the as-of time is in; the reference agrees."""
    con = varied(7)
    builder = FeatureBuilder().fit(con)
    data = tables(con)
    customer = "c0002"
    last = max(ts for ts in own(data["events"], customer).column("ts").to_pylist() if ts < T)
    for as_of in (last, last + timedelta(microseconds=1), datetime.fromisoformat(f"{last}")):
        reference = builder.transform(con, as_of=as_of).set_index("customer_id")
        k = list(reference.index).index(customer)
        expected = to_matrix(reference.reset_index(), builder.feature_names_)[k]
        got = OneCustomer(builder).row(own(data["customers"], customer), data["events"], data["exposures"], as_of)  # fmt: skip
        np.testing.assert_array_equal(got.vector, expected)


def _instant(us: int) -> datetime:
    return datetime(1970, 1, 1) + timedelta(microseconds=us)


@pytest.mark.parametrize("seed", [8, 9])
def test_a_row_moved_in_time_equals_the_row_computed_then(seed: int) -> None:
    """`OneRow.at` (features that are days since an instant recomputed, the rest kept) equals a
    row computed from scratch anywhere in the row's `valid` span, up to its last microsecond,
    and refuses the first microsecond after it (a row entering a window or a day bucket)."""
    con = varied(seed)
    one, data = OneCustomer(FeatureBuilder().fit(con)), tables(con)
    rng = np.random.default_rng(seed)
    moved = hits = 0
    for customer in [f"c{k:04d}" for k in range(0, 120, 6)]:
        customers = own(data["customers"], customer)
        start = T + timedelta(
            hours=float(rng.uniform(-48, 48)), microseconds=int(rng.integers(1e6))
        )
        base = one.row(customers, data["events"], data["exposures"], start)
        first, end = base.valid
        assert first <= base.now < end
        probes = [end - 1, end, first, first - 1, base.now + 1]
        probes += [base.now + int(x) for x in rng.uniform(-3e11, 3e11, 6)]  # +- 3.5 days
        for us in probes:
            later = base.at(us)
            if not first <= us < end:
                assert later is None
                continue
            assert later is not None
            hits += 1
            fresh = one.row(customers, data["events"], data["exposures"], _instant(us))
            np.testing.assert_array_equal(later.vector, fresh.vector, err_msg=f"{customer} {us}")
            assert later.categories == fresh.categories and later.valid == fresh.valid
            moved += int(not np.array_equal(later.vector, base.vector, equal_nan=True))
    assert hits >= 40 and moved >= 20  # the spans are real and the clock moves the features


@dataclass(frozen=True)
class Posted:
    """A posted event's fields, as the service passes them to `OneCustomer.extend`."""

    ts: datetime
    channel: str | None
    event_type: str | None
    value: float | None
    text: str | None = None


def _as_table(posted: list[Posted], customer: str, schema: pa.Schema) -> pa.Table:
    """The posted events as rows of the stored events' table (every other column missing)."""
    rows = [{"customer_id": customer, "ts": p.ts.astimezone(UTC).replace(tzinfo=None)
             if p.ts.tzinfo else p.ts, "channel": p.channel, "event_type": p.event_type,
             "value": p.value} for p in posted]  # fmt: skip
    return pa.Table.from_pylist(rows, schema=schema)


def test_posted_events_extend_a_journey_as_the_tables_would() -> None:
    """A journey encoded once and extended by posted events (out of time order, fractional and
    missing values, unknown types and channels, zoned times) gives the row the tables give with
    the events appended by time; a non-finite value is refused."""
    con = varied(10)
    one, data = OneCustomer(FeatureBuilder().fit(con)), tables(con)
    rng = np.random.default_rng(10)
    schema = data["events"].schema
    for customer in [f"c{k:04d}" for k in range(0, 120, 12)]:
        customers, events = own(data["customers"], customer), own(data["events"], customer)
        journey = one.encode(customers, events, data["exposures"])
        posted: list[Posted] = []
        for batch in range(3):
            hours = rng.uniform(-150, 30, 4)  # out of time order, many in one window
            # purchases of 1e17, 1 and -1e17 in one window: the order they are added shows
            new = [Posted(T + timedelta(hours=float(h)), c, t, v) for h, c, t, v in zip(
                hours, ["web", "kiosk", None, "app"], ["call", "nps", "never_seen", "purchase"],
                [2.25, None, 1.0, [1e17, 1.0, -1e17][batch]], strict=True)]  # fmt: skip
            if batch == 1:
                new[0] = Posted(
                    new[0].ts.replace(tzinfo=timezone(timedelta(hours=2))), "web", "call", 0.5
                )
            extended = one.extend(journey, new)
            assert extended is not None
            journey, posted = extended, posted + new
            table = pa.concat_tables([events, _as_table(posted, customer, schema)])
            order = pa.compute.array_sort_indices(
                table.column("ts").slice(len(events)).combine_chunks()
            )
            table = pa.concat_tables([events, table.slice(len(events)).take(order)])
            for as_of in (T, T + timedelta(days=3, microseconds=7)):
                expected = one.row(customers, table, data["exposures"], as_of)
                got = one.row_of(journey, instant(as_of))
                np.testing.assert_array_equal(got.vector, expected.vector, err_msg=customer)
                assert got.valid == expected.valid and got.since == expected.since
    nan = Posted(T - timedelta(hours=1), "web", "call", float("nan"))
    assert one.extend(journey, [nan]) is None
