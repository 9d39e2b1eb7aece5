"""Point-in-time features: known answers on tiny frames, the leakage test, spines, serialisation."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest

from training.config import FeatureSettings
from training.errors import ContractError, NextbestError
from training.features.definition import FeatureBuilder, feature_descriptions, sanitize

T = datetime(2024, 3, 1)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)


def connect(
    customers: pd.DataFrame, events: pd.DataFrame, exposures: pd.DataFrame | None = None
) -> duckdb.DuckDBPyConnection:
    """A connection with the canonical views, cast to the contract's types."""
    con = duckdb.connect()
    con.register("_customers", customers)
    con.execute(
        "CREATE VIEW customers AS SELECT * REPLACE (CAST(customer_id AS VARCHAR) AS customer_id) "
        "FROM _customers"
    )
    con.register("_events", events)
    extra = ", CAST(resolved AS BOOLEAN) AS resolved" if "resolved" in events else ""
    con.execute(
        "CREATE VIEW events AS SELECT CAST(customer_id AS VARCHAR) AS customer_id, "
        "CAST(ts AS TIMESTAMP) AS ts, CAST(channel AS VARCHAR) AS channel, "
        f"CAST(event_type AS VARCHAR) AS event_type, CAST(value AS DOUBLE) AS value{extra} "
        "FROM _events"
    )
    if exposures is not None:
        con.register("_exposures", exposures)
        con.execute(
            "CREATE VIEW exposures AS SELECT CAST(customer_id AS VARCHAR) AS customer_id, "
            "CAST(ts AS TIMESTAMP) AS ts, CAST(action_id AS VARCHAR) AS action_id, "
            "CAST(propensity AS DOUBLE) AS propensity FROM _exposures"
        )
    return con


def events_frame(rows: list[tuple]) -> pd.DataFrame:
    """(customer_id, ts, channel, event_type, value, resolved) rows."""
    cols = ["customer_id", "ts", "channel", "event_type", "value", "resolved"]
    frame = pd.DataFrame(rows, columns=cols)
    frame["value"] = frame["value"].astype("float64")
    frame["resolved"] = frame["resolved"].astype("boolean")
    return frame


def exposures_frame(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["customer_id", "ts", "action_id"])
    return frame.assign(propensity=0.5)


@pytest.fixture
def tiny() -> duckdb.DuckDBPyConnection:
    """Customer a with hand-placed events around T; customer b with nothing at all."""
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "age": [40, 55],
            "plan": ["gold", "basic"],
            "vip": [True, False],
            "signup": [date(2024, 2, 20), date(2024, 3, 5)],  # b signs up after T
        }
    )
    events = events_frame(
        [
            ("a", T, "phone", "call", 5.0, True),  # exactly at T: excluded
            ("a", T - 30 * DAY + SECOND, "phone", "call", 10.0, False),  # inside 30d
            ("a", T - 30 * DAY, "phone", "call", 20.0, True),  # on the edge: inside 30d
            ("a", T - 30 * DAY - SECOND, "chat", "chat", 30.0, None),  # outside 30d, inside 90d
            ("a", T - 1 * DAY, "web", "complaint", None, None),
            ("a", T - 10 * DAY, "web", "purchase", 100.0, None),
            ("a", T - 100 * DAY, "web", "purchase", 50.0, None),
            ("a", T - 200 * DAY, "email", "nps", 5.0, None),
            ("a", T - 100 * DAY, "email", "nps", 7.0, None),
            ("a", T - 10 * DAY, "email", "nps", 9.0, None),
            ("a", T - 5 * DAY, "email", "nps", None, None),  # survey sent, not answered
            ("a", T + DAY, "email", "nps", 0.0, None),  # future answer: excluded
            ("a", T - 400 * DAY, "web", "visit", None, None),
        ]
    )
    exposures = exposures_frame(
        [
            ("a", T - 10 * DAY, "discount"),
            ("a", T - 100 * DAY, "control"),
            ("a", T - 400 * DAY, "discount"),
            ("a", T, "discount"),  # exactly at T: excluded
        ]
    )
    return connect(customers, events, exposures)


def row(frame: pd.DataFrame, customer: str) -> pd.Series:
    return frame.set_index("customer_id").loc[customer]


def test_windows_exclude_t_and_include_the_window_edge(tiny: duckdb.DuckDBPyConnection) -> None:
    a = row(FeatureBuilder().fit_transform(tiny, as_of=T), "a")
    assert a["call_count_7d"] == 0
    assert a["call_count_30d"] == 2  # T - 30d + 1s and T - 30d; the call at T is excluded
    assert a["contacts_30d"] == 2
    assert a["contacts_90d"] == 3
    assert a["contact_minutes_30d"] == 30.0
    assert a["events_7d"] == 2  # complaint at T-1d, unanswered nps at T-5d
    assert a["events_365d"] == 10  # 13 minus the one at T, the future one and the old visit
    assert a["complaints_7d"] == 1
    assert a["days_since_last_complaint"] == pytest.approx(1.0)
    assert a["revenue_30d"] == 100.0
    assert a["revenue_365d"] == 150.0
    assert a["purchases_365d"] == 2
    assert a["days_since_last_purchase"] == pytest.approx(10.0)
    assert a["purchase_value_mean_365d"] == 75.0
    assert a["days_since_last_event"] == pytest.approx(1.0)
    assert a["days_since_first_event"] == pytest.approx(400.0)
    assert a["days_since_last_call"] == pytest.approx(30 - 1 / 86400, abs=1e-4)


def test_purchase_days_count_days_not_orders() -> None:
    """Orders on one calendar day are one purchase day; day edges fall on the window edges."""
    events = events_frame(
        [
            ("a", T - 2 * DAY + SECOND, "web", "purchase", 10.0, None),  # day 2 before T
            ("a", T - DAY - SECOND, "web", "purchase", 20.0, None),  # day 2 again
            ("a", T - DAY, "web", "purchase", 5.0, None),  # midnight: day 1 (the day before T)
            ("a", T - 7 * DAY, "web", "purchase", 1.0, None),  # day 7: inside 7d
            ("a", T - 7 * DAY - SECOND, "web", "purchase", 1.0, None),  # day 8: outside 7d
            ("a", T - 3 * DAY, "web", "visit", None, None),  # not a purchase
            ("a", T - 400 * DAY, "web", "purchase", 1.0, None),
        ]
    )
    con = connect(pd.DataFrame({"customer_id": ["a", "b"]}), events)
    frame = FeatureBuilder().fit_transform(con, as_of=T)
    a, b = row(frame, "a"), row(frame, "b")
    assert (a["purchases_7d"], a["purchase_days_7d"]) == (4, 3)
    assert (a["purchases_30d"], a["purchase_days_30d"]) == (5, 4)
    assert a["purchase_days_365d"] == 4
    assert a["days_since_first_purchase"] == pytest.approx(400.0)
    assert b["purchase_days_365d"] == 0 and np.isnan(b["days_since_first_purchase"])


def test_surveys_resolution_and_exposures(tiny: duckdb.DuckDBPyConnection) -> None:
    frame = FeatureBuilder().fit_transform(tiny, as_of=T)
    a, b = row(frame, "a"), row(frame, "b")
    assert (a["nps_last"], a["nps_prev"], a["nps_trend"]) == (9.0, 7.0, 2.0)
    assert a["nps_mean_365d"] == 7.0
    assert a["days_since_last_nps"] == pytest.approx(10.0)
    assert np.isnan(a["csat_last"]) and np.isnan(b["nps_last"])
    assert a["unresolved_contacts_30d"] == 1
    assert a["resolution_rate_30d"] == 0.5
    assert a["resolution_rate_90d"] == 0.5  # the chat has no known outcome
    assert np.isnan(b["resolution_rate_30d"]) and b["contacts_30d"] == 0
    assert (a["exposures_90d"], a["exposures_365d"]) == (1, 2)
    assert a["days_since_last_exposure"] == pytest.approx(10.0)
    assert (a["discount_exposures_365d"], a["control_exposures_365d"]) == (1, 1)
    assert a["days_since_discount"] == pytest.approx(10.0)
    assert a["days_since_control"] == pytest.approx(100.0)
    assert b["exposures_365d"] == 0 and np.isnan(b["days_since_last_exposure"])


def test_static_attributes_and_output_types(tiny: duckdb.DuckDBPyConnection) -> None:
    builder = FeatureBuilder().fit(tiny)
    frame = builder.transform(tiny, as_of=date(2024, 3, 1))
    a, b = row(frame, "a"), row(frame, "b")
    assert a["days_since_signup"] == pytest.approx(10.0)
    assert np.isnan(b["days_since_signup"])  # signs up after T
    assert (a["age"], a["vip"], b["vip"]) == (40.0, 1.0, 0.0)
    assert list(frame.columns) == ["customer_id", "as_of", *builder.feature_names_]
    assert list(frame["customer_id"]) == ["a", "b"]
    assert frame["plan"].dtype == pd.CategoricalDtype(["basic", "gold"])
    numeric = frame.drop(columns=["customer_id", "as_of", "plan"])
    assert set(numeric.dtypes) == {np.dtype("float32")}
    assert (frame["as_of"] == pd.Timestamp(T)).all()


def test_cx_block_exists_without_those_types_or_resolved_column() -> None:
    customers = pd.DataFrame({"customer_id": ["a"]})
    events = events_frame([("a", T - DAY, "web", "visit", None, None)]).drop(columns="resolved")
    con = connect(customers, events)  # no exposures table either
    builder = FeatureBuilder().fit(con)
    a = row(builder.transform(con, as_of=T), "a")
    assert a["contacts_30d"] == 0 and a["complaints_30d"] == 0 and a["revenue_30d"] == 0
    assert np.isnan(a["unresolved_contacts_30d"]) and np.isnan(a["resolution_rate_30d"])
    assert np.isnan(a["days_since_last_purchase"]) and np.isnan(a["nps_last"])
    assert a["exposures_90d"] == 0 and np.isnan(a["days_since_last_exposure"])
    assert a["visit_count_7d"] == 1


def test_empty_events_give_zero_counts_and_nan_recency() -> None:
    con = connect(pd.DataFrame({"customer_id": ["a", "b"]}), events_frame([]))
    builder = FeatureBuilder().fit(con)
    frame = builder.transform(con, as_of=T)
    assert builder.event_types_ == [] and builder.actions_ == []
    assert frame.shape == (2, 2 + len(builder.feature_names_))
    assert (frame["events_365d"] == 0).all() and frame["days_since_last_event"].isna().all()


# ----------------------------------------------------------------------------- leakage
def random_data(
    seed: int, n_customers: int = 300, n_events: int = 6000
) -> tuple[pd.DataFrame, ...]:
    """A random data set around T with integer values (sums are exact in any order)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"c{k:04d}" for k in range(n_customers)])
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "age": rng.integers(18, 80, n_customers).astype(float),
            "plan": rng.choice(["basic", "plus", "gold"], n_customers),
            "signup": pd.Timestamp(T) - pd.to_timedelta(rng.integers(-30, 900, n_customers), "D"),
        }
    )
    types = np.array(["visit", "call", "chat", "complaint", "purchase", "nps", "csat", "email"])
    start = pd.Timestamp(T) - pd.Timedelta(days=500)
    seconds = rng.integers(0, 700 * 86400, n_events)
    chosen = rng.choice(types, n_events)
    events = pd.DataFrame(
        {
            "customer_id": rng.choice(ids, n_events),
            "ts": start + pd.to_timedelta(seconds, "s"),
            "channel": rng.choice(["web", "app", "phone"], n_events),
            "event_type": chosen,
            "value": np.where(
                np.isin(chosen, ["visit", "email"]), np.nan, rng.integers(0, 11, n_events)
            ),
            "resolved": pd.array(rng.random(n_events) < 0.6, dtype="boolean"),
        }
    )
    events.loc[rng.random(n_events) < 0.03, "ts"] = pd.Timestamp(T)  # some exactly at T
    n_exp = n_events // 10
    exposures = pd.DataFrame(
        {
            "customer_id": rng.choice(ids, n_exp),
            "ts": start + pd.to_timedelta(rng.integers(0, 700 * 86400, n_exp), "s"),
            "action_id": rng.choice(["control", "discount", "call_back"], n_exp),
            "propensity": 0.5,
        }
    )
    return customers, events, exposures


def tamper_future(
    events: pd.DataFrame, exposures: pd.DataFrame, seed: int
) -> tuple[pd.DataFrame, ...]:
    """Change everything at or after T and append new rows (new types, channels, actions) there."""
    rng = np.random.default_rng(seed)
    events, exposures = events.copy(), exposures.copy()
    future = events["ts"] >= pd.Timestamp(T)
    k = int(future.sum())
    events.loc[future, "value"] = rng.integers(100, 200, k).astype(float)
    events.loc[future, "event_type"] = rng.choice(["complaint", "brand_new", "nps"], k)
    events.loc[future, "channel"] = rng.choice(["carrier_pigeon", "web"], k)
    events.loc[future, "resolved"] = False
    extra = events.sample(500, replace=True, random_state=seed).assign(
        ts=pd.Timestamp(T) + pd.to_timedelta(rng.integers(0, 90 * 86400, 500), "s"),
        event_type=rng.choice(["never_seen", "purchase", "csat"], 500),
    )
    fut = exposures["ts"] >= pd.Timestamp(T)
    exposures.loc[fut, "action_id"] = "brand_new_action"
    more = exposures.sample(100, replace=True, random_state=seed).assign(
        ts=pd.Timestamp(T) + pd.to_timedelta(rng.integers(0, 30 * 86400, 100), "s")
    )
    more.iloc[:10, more.columns.get_loc("ts")] = pd.Timestamp(T)
    return pd.concat([events, extra], ignore_index=True), pd.concat([exposures, more])


def test_no_leakage_from_events_or_exposures_at_or_after_t() -> None:
    customers, events, exposures = random_data(seed=1)
    con = connect(customers, events, exposures)
    builder = FeatureBuilder().fit(con)
    before = builder.transform(con, as_of=T)
    assert before["events_30d"].sum() > 0 and before["exposures_90d"].sum() > 0
    assert (events["ts"] >= pd.Timestamp(T)).sum() > 100
    changed_events, changed_exposures = tamper_future(events, exposures, seed=2)
    after = builder.transform(connect(customers, changed_events, changed_exposures), as_of=T)
    pd.testing.assert_frame_equal(before, after, check_exact=True)


def test_spine_rows_equal_single_date_features() -> None:
    customers, events, exposures = random_data(seed=3, n_customers=120, n_events=3000)
    times = [T - 40 * DAY, T - 7 * DAY + 3 * 3600 * SECOND, T]
    rng = np.random.default_rng(4)
    spine = pd.DataFrame(
        {"customer_id": rng.choice(customers["customer_id"], 60), "as_of": rng.choice(times, 60)}
    )
    spine = pd.concat([spine, spine.iloc[:5]], ignore_index=True)  # duplicate rows are kept
    con = connect(customers, events, exposures)
    con.register("spine", spine)
    builder = FeatureBuilder().fit(con)
    by_spine = builder.transform(con, spine="spine")
    assert list(by_spine["customer_id"]) == list(spine["customer_id"])
    assert list(by_spine["as_of"]) == list(pd.to_datetime(spine["as_of"]))
    for t in times:
        single = builder.transform(con, as_of=t).set_index("customer_id")
        mine = by_spine[by_spine["as_of"] == pd.Timestamp(t)]
        expected = single.loc[mine["customer_id"]].reset_index()
        pd.testing.assert_frame_equal(mine.reset_index(drop=True), expected, check_exact=True)


def test_chunked_queries_give_the_same_frame() -> None:
    customers, events, exposures = random_data(seed=6, n_customers=100, n_events=2000)
    con = connect(customers, events, exposures)
    con.register("spine", exposures.rename(columns={"ts": "as_of"})[["customer_id", "as_of"]])
    builder = FeatureBuilder().fit(con)
    for kwargs in ({"as_of": T}, {"spine": "spine"}):
        whole = builder.transform(con, **kwargs)  # type: ignore[arg-type]
        chunked = builder.transform(con, chunk_rows=300, **kwargs)  # type: ignore[arg-type]
        pd.testing.assert_frame_equal(whole, chunked, check_exact=True)


# ------------------------------------------------------------------ fitted state and vocab
def test_state_round_trips_through_json(tiny: duckdb.DuckDBPyConnection) -> None:
    builder = FeatureBuilder(FeatureSettings(windows=(30, 7))).fit(tiny)
    state = json.loads(json.dumps(builder.to_dict()))
    again = FeatureBuilder.from_dict(state)
    assert again.version == builder.version and again.feature_names_ == builder.feature_names_
    pd.testing.assert_frame_equal(again.transform(tiny, as_of=T), builder.transform(tiny, as_of=T))
    assert "call_count_7d" in again.feature_names_ and "events_90d" not in again.feature_names_
    with pytest.raises(NextbestError, match="definition changed"):
        FeatureBuilder.from_dict(state | {"version": "0" * 16})


def test_version_follows_the_fitted_vocabulary(tiny: duckdb.DuckDBPyConnection) -> None:
    customers, events, exposures = random_data(seed=5, n_customers=20, n_events=200)
    other = FeatureBuilder().fit(connect(customers, events, exposures))
    assert FeatureBuilder().fit(tiny).version != other.version
    assert FeatureBuilder().fit(tiny).version == FeatureBuilder().fit(tiny).version


def test_unseen_categories_types_and_channels_keep_the_columns(
    tiny: duckdb.DuckDBPyConnection,
) -> None:
    builder = FeatureBuilder().fit(tiny)
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "z"],
            "age": [1, 2],
            "plan": ["gold", "platinum"],
            "vip": [True, None],
            "signup": [date(2020, 1, 1)] * 2,
        }
    )
    events = events_frame([("z", T - DAY, "pigeon", "brand_new", 3.0, None)])
    frame = builder.transform(connect(customers, events), as_of=T)
    assert list(frame.columns) == ["customer_id", "as_of", *builder.feature_names_]
    z = row(frame, "z")
    assert pd.isna(z["plan"]) and np.isnan(z["vip"])
    assert row(frame, "a")["plan"] == "gold"
    assert z["events_7d"] == 1 and z["call_count_7d"] == 0
    assert list(frame["plan"].cat.categories) == ["basic", "gold"]


def test_vocabulary_is_capped_by_frequency(tiny: duckdb.DuckDBPyConnection) -> None:
    builder = FeatureBuilder(FeatureSettings(max_event_types=2, max_channels=1)).fit(tiny)
    assert builder.event_types_ == ["nps", "call"]
    assert builder.channels_ == ["email"]
    assert builder.value_types_ == ["nps", "call"]
    assert builder.actions_ == ["control", "discount"]
    assert "complaints_30d" in builder.feature_names_  # the CX block does not depend on the vocab
    assert len(set(builder.feature_names_)) == len(builder.feature_names_)


def test_names_are_sanitised_and_unique() -> None:
    assert sanitize("Email Open!") == "email_open_"
    assert sanitize("3d-secure") == "x3d_secure"
    customers = pd.DataFrame({"customer_id": ["a"], "Contacts 30d": [1.0], "contacts_30d": [2.0]})
    events = events_frame(
        [
            ("a", T - DAY, "Web Site", "Page View", None, None),
            ("a", T - DAY, "x", "purchase", 1, None),
        ]
    )
    builder = FeatureBuilder().fit(connect(customers, events))
    names = builder.feature_names_
    assert "page_view_count_7d" in names and "channel_web_site_count_7d" in names
    assert names[:2] == ["contacts_30d_2", "contacts_30d_3"]  # the fixed CX name wins
    assert names.count("days_since_last_purchase") == 1
    frame = builder.transform(connect(customers, events), as_of=T)
    assert row(frame, "a")["contacts_30d_3"] == 2.0


def test_default_as_of_is_the_day_after_the_last_event(tiny: duckdb.DuckDBPyConnection) -> None:
    frame = FeatureBuilder().fit_transform(tiny)
    assert (frame["as_of"] == pd.Timestamp(T + 2 * DAY)).all()


def test_bad_calls_raise_clear_errors(tiny: duckdb.DuckDBPyConnection) -> None:
    with pytest.raises(NextbestError, match="not fitted"):
        FeatureBuilder().transform(tiny, as_of=T)
    builder = FeatureBuilder().fit(tiny)
    with pytest.raises(NextbestError, match="either as_of or spine"):
        builder.transform(tiny, as_of=T, spine="spine")
    with pytest.raises(NextbestError, match="as_of"):
        builder.transform(tiny, as_of="not a date")
    tiny.register("bad_spine", pd.DataFrame({"customer_id": ["a"], "when": [T]}))
    with pytest.raises(ContractError, match="bad_spine, column 'as_of'"):
        builder.transform(tiny, spine="bad_spine")
    tiny.register("null_spine", pd.DataFrame({"customer_id": ["a"], "as_of": [pd.NaT]}))
    with pytest.raises(ContractError, match="empty"):
        builder.transform(tiny, spine="null_spine")
    lean = connect(pd.DataFrame({"customer_id": ["a"]}), events_frame([]))
    with pytest.raises(ContractError, match="'age'"):
        builder.transform(lean, as_of=T)
    unresolved = connect(
        pd.DataFrame({"customer_id": ["a"]}), events_frame([]).drop(columns="resolved")
    )
    with pytest.raises(ContractError, match="'resolved'"):
        FeatureBuilder().fit(lean).transform(unresolved, as_of=T)
    twice = connect(pd.DataFrame({"customer_id": ["a", "a"], "x": [1, 2]}), events_frame([]))
    with pytest.raises(ContractError, match="not unique"):
        FeatureBuilder().fit_transform(twice, as_of=T)
    assert not tiny.execute("SELECT * FROM duckdb_tables() WHERE temporary").fetchall()


def test_feature_descriptions_read_like_sentences() -> None:
    text = feature_descriptions(
        ["complaints_30d", "nps_trend", "channel_web_count_7d", "days_since_last_call", "x_y"]
    )
    assert text["complaints_30d"] == "complaints in the last 30 days"
    assert text["nps_trend"] == "change between the last two NPS answers"
    assert text["channel_web_count_7d"] == "events via web in the last 7 days"
    assert text["days_since_last_call"] == "days since the last call"
    assert text["x_y"] == "x y"
