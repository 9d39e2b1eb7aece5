"""The decision log: decisions and feedback committed durably, read back by the contact policy and
exported as contract exposures; several processes write one log without losing a record. Every
test runs on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import insert, select

from serving.history.exports import export_exposures, export_feedback
from serving.history.log import (
    ContactConflictError,
    DecisionLog,
    DecisionRecord,
    NotOfferedError,
    UnknownDecisionError,
)
from serving.history.schema import decisions, feedback
from training.errors import NextbestError

NOW = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def source(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new empty history: an SQLite file path, or a database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return str(tmp_path / "log.sqlite")
    return str(request.getfixturevalue("pg_url"))


def record(
    customer: str = "C1", actions: tuple[str, ...] = ("credit",), **kw: object
) -> DecisionRecord:
    values: dict = dict(
        decision_id=uuid.uuid4().hex,
        ts=NOW,
        customer_id=customer,
        channel="call_center",
        model_version="3",
        action_id=actions[0] if actions else "control",
        propensity=0.9,
        control_group=False,
        explored=False,
        cold_start=False,
        actions=actions,
        context={"call_reason": "billing"},
    )
    return DecisionRecord(**(values | kw))


def test_feedback_on_shown_actions_becomes_contacts(source: str) -> None:
    log = DecisionLog(source)
    first = record(actions=("credit", "call"))
    log.record(first)
    log.feedback(first.decision_id, "call", "accepted", NOW + timedelta(minutes=1))
    log.feedback(first.decision_id, "credit", "declined", NOW + timedelta(minutes=1))
    contacts = log.contacts("C1", NOW - timedelta(days=90))
    assert [(c.action_id, c.ts) for c in contacts] == [("call", NOW + timedelta(minutes=1))]
    assert log.contacts("C2", NOW - timedelta(days=90)) == []
    assert log.contacts("C1", NOW + timedelta(days=1)) == []


def test_only_the_latest_feedback_on_a_shown_action_counts(source: str) -> None:
    log = DecisionLog(source)
    retried, corrected = record(), record()
    for decision in (retried, corrected):
        log.record(decision)
        log.feedback(decision.decision_id, "credit", "accepted", NOW + timedelta(minutes=1))
    log.feedback(retried.decision_id, "credit", "accepted", NOW + timedelta(minutes=2))
    log.feedback(corrected.decision_id, "credit", "declined", NOW + timedelta(minutes=2))
    contacts = log.contacts("C1", NOW - timedelta(days=90))
    assert [(c.action_id, c.ts) for c in contacts] == [("credit", NOW + timedelta(minutes=2))]


def test_feedback_must_name_a_logged_decision_and_a_shown_action(source: str) -> None:
    log = DecisionLog(source)
    shown = record()
    log.record(shown)
    with pytest.raises(UnknownDecisionError):
        log.feedback("nope", "credit", "accepted", NOW)
    with pytest.raises(NotOfferedError):
        log.feedback(shown.decision_id, "call", "accepted", NOW)


def _write(path: str, n: int) -> None:
    log = DecisionLog(path)
    for _ in range(n):
        log.record(record())
    log.close()


def test_concurrent_processes_lose_no_record(source: str) -> None:
    path = source
    DecisionLog(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_write, args=(path, 150)) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    assert DecisionLog(path).count() == 450


def test_export_writes_contract_exposures_without_cold_starts(source: str, tmp_path: Path) -> None:
    log = DecisionLog(source)
    log.record(record("C1", ("credit",), propensity=0.95))
    log.record(record("C2", (), control_group=True, propensity=0.06))
    log.record(record("new", ("credit",), cold_start=True))
    rows, path = export_exposures(source, tmp_path / "out")
    frame = pd.read_parquet(path)
    assert rows == 2
    assert frame[["customer_id", "action_id", "propensity"]].values.tolist() == [
        ["C1", "credit", 0.95],
        ["C2", "control", 0.06],
    ]
    assert frame["ts"].iloc[0] == pd.Timestamp("2026-11-02 09:30")
    rows, _ = export_exposures(source, tmp_path / "out", include_cold_start=True)
    assert rows == 3


def test_export_feedback_keeps_the_latest_outcome_per_shown_action(
    source: str, tmp_path: Path
) -> None:
    log = DecisionLog(source)
    first, second, cold = (
        record("C1", ("credit", "call")),
        record("C2", ("credit",)),
        record("new", ("credit",), cold_start=True),
    )
    for decision in (first, second, cold):
        log.record(decision)
    log.feedback(first.decision_id, "credit", "accepted", NOW + timedelta(minutes=1))
    log.feedback(first.decision_id, "credit", "declined", NOW + timedelta(minutes=2))  # corrected
    log.feedback(first.decision_id, "call", "ignored", NOW + timedelta(minutes=3))
    log.feedback(second.decision_id, "credit", "declined", NOW + timedelta(minutes=4))
    log.feedback(cold.decision_id, "credit", "accepted", NOW + timedelta(minutes=5))
    rows, path = export_feedback(source, tmp_path / "out")
    frame = pd.read_parquet(path)
    assert rows == 3
    assert frame[["customer_id", "action_id", "outcome"]].values.tolist() == [
        ["C1", "credit", "declined"],
        ["C1", "call", "ignored"],
        ["C2", "credit", "declined"],
    ]
    assert frame["ts"].iloc[0] == pd.Timestamp("2026-11-02 09:32")
    assert export_feedback(source, tmp_path / "out", True)[0] == 4


def test_shadow_decisions_are_stored_but_never_exposures_feedback_or_contacts(
    source: str, tmp_path: Path
) -> None:
    """A shadow decision (the arm not shown, decided beside the shown one) is kept with its arm,
    refused as a target of feedback, and left out of both exports, even with feedback rows on it
    (written here beneath the log's API, as no code path of it does)."""
    log = DecisionLog(source)
    shown = record("C1", ("credit",), propensity=0.8)
    hidden = record("C1", ("call",), arm="challenger", shadow=True, model_version="4")
    log.record(shown)
    log.record(hidden)
    assert log.count() == 2
    with log.engine.connect() as con:
        stored = con.execute(
            select(decisions.c.decision_id, decisions.c.arm, decisions.c.shadow)
        ).all()
    assert sorted(map(tuple, stored)) == sorted(
        [(shown.decision_id, "champion", 0), (hidden.decision_id, "challenger", 1)]
    )
    with pytest.raises(UnknownDecisionError):
        log.feedback(hidden.decision_id, "call", "accepted", NOW + timedelta(minutes=1))
    log.feedback(shown.decision_id, "credit", "accepted", NOW + timedelta(minutes=1))
    with log.engine.begin() as con:
        row = {"decision_id": hidden.decision_id, "customer_id": "C1", "action_id": "call"}
        con.execute(insert(feedback), [row | {"outcome": "accepted", "ts": NOW.isoformat()}])
    exposures = pd.read_parquet(export_exposures(source, tmp_path / "out", True)[1])
    assert exposures[["action_id", "propensity"]].values.tolist() == [["credit", 0.8]]
    answers = pd.read_parquet(export_feedback(source, tmp_path / "out", True)[1])
    assert answers["decision_id"].tolist() == [shown.decision_id]
    log.close()


def test_forget_removes_every_row_of_a_customer(source: str) -> None:
    log = DecisionLog(source)
    kept, gone = record("keep-me"), record("forget-me-7", ("credit", "call"))
    for decision in (kept, gone, record("forget-me-7")):
        log.record(decision)
    log.feedback(gone.decision_id, "credit", "accepted", NOW)
    log.feedback(kept.decision_id, "credit", "accepted", NOW)
    naive = NOW.replace(tzinfo=None)
    log.record_consent([("forget-me-7", naive, "email", "opt_out"),
                        ("keep-me", naive, "email", "opt_out")], NOW)  # fmt: skip
    assert log.forget(["forget-me-7"]) == (2, 1, 1)
    assert [c for c, *_ in log.consent_events()] == ["keep-me"]
    assert log.contacts("forget-me-7", NOW - timedelta(days=1)) == []
    assert log.count() == 1 and len(log.contacts("keep-me", NOW - timedelta(days=1))) == 1
    later = record("keep-me")  # the log goes on taking decisions and feedback
    log.record(later)
    log.feedback(later.decision_id, "credit", "declined", NOW)
    assert log.count() == 2
    log.close()


def test_consent_events_are_stored_once_and_read_back_as_of_a_time(source: str) -> None:
    log = DecisionLog(source)
    t0 = datetime(2026, 11, 1, 9, 30)  # naive: UTC, as events in the data
    events = [("C1", t0, "email", "opt_out"), ("C2", t0, "sms", "opt_out"),
              ("C1", t0 + timedelta(days=2), "email", "opt_in")]  # fmt: skip
    assert log.record_consent(events, NOW) == 3
    assert log.record_consent(events[:2] + [("C1", t0, "sms", "opt_out")], NOW) == 1  # a retry
    assert log.consent_events(["C1"]) == [events[0], ("C1", t0, "sms", "opt_out"), events[2]]
    assert log.consent_events(until=(t0 + timedelta(days=1)).replace(tzinfo=UTC)) == [
        events[0],
        events[1],
        ("C1", t0, "sms", "opt_out"),
    ]
    frame = log.consent_frame(until=NOW + timedelta(days=30))
    assert frame.columns.tolist() == ["customer_id", "ts", "channel", "event_type"]
    assert len(frame) == 4 and frame["ts"].iloc[-1] == pd.Timestamp(t0 + timedelta(days=2))
    assert log.record_consent([], NOW) == 0
    log.close()


def test_one_customers_policy_history_is_both_reads_in_one(source: str) -> None:
    log = DecisionLog(source)
    first = record("C1", ("credit", "call"), ts=NOW - timedelta(days=3))
    log.record(first)
    log.feedback(first.decision_id, "credit", "accepted", NOW - timedelta(days=3))
    log.feedback(first.decision_id, "call", "declined", NOW - timedelta(days=2))
    log.record(record("C2"))
    t0 = datetime(2026, 10, 1, 8)
    log.record_consent([("C1", t0 + timedelta(days=2), "email", "opt_in"),
                        ("C1", t0, "email", "opt_out"), ("C2", t0, "sms", "opt_out")], NOW)  # fmt: skip
    since = NOW - timedelta(days=30)
    rows, given = log.customer_policy_history("C1", since)
    assert sorted(rows) == sorted(log.contact_history(since, customers=["C1"])) and len(rows) == 2
    assert given == log.consent_events(["C1"]) == [("C1", t0, "email", "opt_out"),
                                                   ("C1", t0 + timedelta(days=2), "email", "opt_in")]  # fmt: skip
    assert log.customer_policy_history("C3", since) == ([], [])
    log.close()


def batch_sends(customers: list[str], actions: list[str], ts: datetime) -> pd.DataFrame:
    """A batch run's recorded decisions (BATCH_COLUMNS): "control" holds the customer out."""
    return pd.DataFrame(
        {
            "decision_id": [f"batch-{uuid.uuid4().hex[:8]}-{i}" for i in range(len(customers))],
            "ts": pd.Timestamp(ts),
            "customer_id": customers,
            "channel": "email",
            "model_version": "3",
            "action_id": actions,
            "propensity": [0.8 if a != "control" else 0.2 for a in actions],
            "control_group": [a == "control" for a in actions],
            "context": '{"source": "batch"}',
        }
    )


def test_batch_contacts_are_recorded_and_read_back_as_the_policy_history(source: str) -> None:
    log = DecisionLog(source)
    online = record("B2", ("call",), ts=NOW - timedelta(days=2))
    log.record(online)
    log.feedback(online.decision_id, "call", "accepted", NOW - timedelta(days=2))
    sends = batch_sends(["B1", "B2", "B3", "C9"], ["credit", "credit", "control", "call"], NOW)
    assert log.record_contacts(sends) == 4
    assert log.count() == 5
    # an acceptance of a sent action later does not replace the send: both are in the history
    log.feedback(sends["decision_id"][0], "credit", "accepted", NOW + timedelta(hours=1))
    rows = sorted(log.contact_history(NOW - timedelta(days=7)))
    assert sorted((c, a, ch, o) for c, a, ch, _, o in rows) == [
        ("B1", "credit", "email", "accepted"),
        ("B1", "credit", "email", "sent"),
        ("B2", "call", "call_center", "accepted"),
        ("B2", "credit", "email", "sent"),
        ("C9", "call", "email", "sent"),
    ]  # the control group is a decision without a contact
    sent_at = [ts for c, _, _, ts, o in rows if c == "B2" and o == "sent"][0]
    assert datetime.fromisoformat(sent_at) == NOW
    assert {r[0] for r in log.contact_history(NOW - timedelta(days=1))} == {"B1", "B2", "C9"}
    assert {r[0] for r in log.contact_history(NOW - timedelta(days=7), ["B2", "C9"])} == {
        "B2",
        "C9",
    }
    assert log.contact_history(NOW, []) == []
    ranged = log.contact_history_frame(NOW - timedelta(days=7), id_range=("B2", "C"))
    assert list(ranged["customer_id"]) == ["B2", "B2"]
    assert str(ranged["ts"].dt.tz) == "UTC"
    # the acceptance check of another decision sees the batch's sends, with their channel
    seen: list[tuple[list[tuple[str, str, str, str, str]], str]] = []
    later = record("B2", ("credit",), ts=NOW + timedelta(hours=2), channel="email")
    log.record(later)
    with pytest.raises(ContactConflictError):
        log.feedback(later.decision_id, "credit", "accepted", NOW + timedelta(hours=2),
                     lambda others, channel: seen.append((others, channel)) is not None)  # fmt: skip
    assert seen[0][1] == "email"
    assert sorted((a, o) for _, a, _, _, o in seen[0][0]) == [
        ("call", "accepted"),
        ("credit", "sent"),
    ]
    log.close()


def test_export_feedback_holds_responses_not_batch_sends(source: str, tmp_path: Path) -> None:
    """A send is an exposure, not a response: a sent action without a response is absent from
    the feedback export, and one the customer answered shows the answer."""
    log = DecisionLog(source)
    sends = batch_sends(["B1", "B2"], ["credit", "call"], NOW)
    log.record_contacts(sends)
    log.feedback(sends["decision_id"][0], "credit", "accepted", NOW + timedelta(hours=1))
    frame = pd.read_parquet(export_feedback(source, tmp_path / "out")[1])
    assert frame[["customer_id", "action_id", "outcome"]].values.tolist() == [
        ["B1", "credit", "accepted"]
    ]
    log.close()


def test_a_batch_that_cannot_be_recorded_records_nothing(source: str) -> None:
    log = DecisionLog(source)
    first = batch_sends(["B1"], ["credit"], NOW)
    log.record_contacts(first)
    clash = pd.concat([batch_sends(["B2", "B3"], ["credit", "call"], NOW), first])
    with pytest.raises(NextbestError, match="nothing was recorded"):
        log.record_contacts(clash)  # the last row's decision is stored already
    assert log.count() == 1
    assert [r[0] for r in log.contact_history(NOW - timedelta(days=1))] == ["B1"]
    with pytest.raises(NextbestError, match="missing columns"):
        log.record_contacts(first.drop(columns=["channel"]))
    log.close()
