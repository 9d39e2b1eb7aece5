"""`export-feedback --as-events`: the offers the service showed and what customers answered, as
contract events that the next training's feature definition counts per action and window, point in
time (a decline after the as-of time does not count)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from serving.history.exports import offer_events_frame
from serving.history.log import DecisionLog
from tests.serving.history.test_log import NOW, batch_sends, record
from tests.training.features.test_definition import connect, events_frame
from training.cli import app
from training.features.definition import FeatureBuilder, feature_descriptions

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)


def fill(source: str | Path) -> None:
    """C1: credit and call shown on the phone, credit declined (then declined again a week later
    on a new decision), call accepted; C2: a control-group decision, a shadow decision and a batch
    e-mail send (shown, never answered)."""
    log = DecisionLog(source)
    first = record("C1", ("credit", "call"), ts=NOW)
    log.record(first)
    log.feedback(first.decision_id, "credit", "accepted", NOW + MINUTE)
    log.feedback(first.decision_id, "credit", "declined", NOW + 2 * MINUTE)  # the latest counts
    log.feedback(first.decision_id, "call", "accepted", NOW + 2 * MINUTE)
    again = record("C1", ("credit",), ts=NOW + 7 * DAY)
    log.record(again)
    log.feedback(again.decision_id, "credit", "declined", NOW + 7 * DAY + MINUTE)
    log.record(record("C2", (), ts=NOW, control_group=True, action_id="control"))
    log.record(record("C2", ("credit",), ts=NOW, shadow=True, arm="challenger"))
    log.record_contacts(batch_sends(["C2"], ["call"], NOW + DAY))
    log.close()


def test_offers_and_their_latest_outcomes_become_events(tmp_path: Path) -> None:
    source = tmp_path / "log.sqlite"
    fill(source)
    events = offer_events_frame(source)
    assert events.columns.tolist() == ["customer_id", "ts", "channel", "event_type", "value"]
    naive = NOW.replace(tzinfo=None)
    got = sorted(zip(events["customer_id"], events["ts"], events["channel"], events["event_type"],
                     strict=True))  # fmt: skip
    assert got == sorted([
        ("C1", naive, "call_center", "offer_shown_credit"),
        ("C1", naive, "call_center", "offer_shown_call"),
        ("C1", naive + 2 * MINUTE, "call_center", "offer_declined_credit"),
        ("C1", naive + 2 * MINUTE, "call_center", "offer_accepted_call"),
        ("C1", naive + 7 * DAY, "call_center", "offer_shown_credit"),
        ("C1", naive + 7 * DAY + MINUTE, "call_center", "offer_declined_credit"),
        ("C2", naive + DAY, "email", "offer_shown_call"),  # a batch send: shown, no outcome
    ])  # fmt: skip
    assert events["value"].isna().all() and events["ts"].is_monotonic_increasing


def test_the_next_training_counts_them_per_action_and_window(tmp_path: Path) -> None:
    source = tmp_path / "log.sqlite"
    fill(source)
    result = CliRunner().invoke(
        app, ["export-feedback", "--log", str(source), "--out", str(tmp_path / "x"), "--as-events"]
    )
    assert result.exit_code == 0, result.output
    assert "7 offer events" in result.output
    offers = pd.read_parquet(tmp_path / "x" / "events.parquet").assign(resolved=None)
    naive = NOW.replace(tzinfo=None)
    journey = events_frame([("C1", naive - 30 * DAY, "web", "visit", None, None),
                            ("C2", naive - 30 * DAY, "web", "visit", None, None)])  # fmt: skip
    customers = pd.DataFrame({"customer_id": ["C1", "C2"], "age": [30, 40]})
    con = connect(customers, pd.concat([journey, offers[journey.columns]], ignore_index=True))
    builder = FeatureBuilder().fit(con)
    between = naive + 3 * DAY  # after the first decline, before the second
    frame = builder.transform(con, as_of=between).set_index("customer_id")
    assert frame.loc["C1", "offer_declined_credit_count_7d"] == 1
    assert frame.loc["C1", "offer_shown_credit_count_30d"] == 1
    assert frame.loc["C1", "offer_accepted_call_count_30d"] == 1
    assert frame.loc["C2", "offer_declined_credit_count_30d"] == 0
    assert frame.loc["C1", "days_since_last_offer_declined_credit"] == pd.Timedelta(
        between - naive - 2 * MINUTE
    ) / pd.Timedelta(days=1)
    later = builder.transform(con, as_of=naive + 10 * DAY).set_index("customer_id")
    assert later.loc["C1", "offer_declined_credit_count_30d"] == 2
    assert later.loc["C1", "offer_declined_credit_count_7d"] == 1
    assert feature_descriptions(["offer_declined_credit_count_30d"]) == {
        "offer_declined_credit_count_30d": "offers of credit declined in the last 30 days"
    }
