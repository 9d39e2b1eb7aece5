"""The contact policy and consent, online and in batch on the same fixtures: one contact history
(a real decision log), one bundle whose config caps contacts per action, per channel and across
actions and asks consent for e-mail, the real service over HTTP on 127.0.0.1 and the real batch
job. The same customers must lose the same actions in both, and nothing else may change.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest

from serving.batch.contacts import ContactSources
from serving.batch.job import score_bundle
from serving.history.exports import exposures_frame
from serving.history.log import DecisionLog, DecisionRecord
from serving.online.events import events_frame
from tests.serving.conftest import AS_OF, Server, World, start_server, stop_server
from training.config import Catalog, Config
from training.errors import NextbestError
from training.registry.bundle import Bundle

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("server")]
NOW = datetime(2026, 11, 5, 10, 30, tzinfo=UTC)
CHANNELS = ("email", "call_center")
POLICY: dict[str, Any] = {
    "contact_policy": {
        "max_contacts_per_30_days": 2,
        "channels": {"email": {"max_per_7_days": 1}},
    },
    "consent": {"email": "paperless"},
}
SUPPRESS = {"suppress_after_declines": {"count": 1, "days": 30}}
RULED = "loyalty_upgrade"  # its rule reads consent: no upgrade offered without e-mail consent
CONSENT_RULE = {"eligibility": "days_since_signup_date > 365 and consent_email"}


def policy_bundle(
    bundle: Bundle, policy: dict[str, Any], suppress: bool = True, control: float = 0.0
) -> Bundle:
    """The bundle with exploration off, a control group of `control`, every action suppressed
    after one decline (`suppress`), and `policy` in its config."""
    actions = [a.model_dump(mode="json") | (SUPPRESS if suppress else {})
               | (CONSENT_RULE if a.id == RULED and "consent" in policy else {})
               for a in bundle.config.catalog.actions]  # fmt: skip
    base = bundle.config.model_dump(mode="json", warnings=False)
    config = Config.model_validate(
        base
        | policy
        | {
            "decisioning": base["decisioning"] | {"exploration": 0.0, "control_share": control},
            "catalog": Catalog.model_validate({"actions": actions}).model_dump(mode="json"),
        }
    )
    return Bundle(bundle.builder, config, bundle.models, bundle.metadata, bundle.uplift)


def ranked(actions: pd.DataFrame) -> dict[str, list[str]]:
    """customer -> the actions worth more than nothing, best first (what /recommend shows)."""
    worth = actions[actions["expected_value"] > 0].sort_values(["customer_id", "rank"])
    grouped = worth.groupby("customer_id")["action_id"].agg(list)
    return {str(c): list(a) for c, a in grouped.items()}


def batch(
    data: Path, bundle: Bundle, out: Path, channel: str, log: Path | None, events: Path | None
) -> dict[str, list[str]]:
    history = DecisionLog(log) if log is not None else None
    sources = ContactSources(
        now=NOW,
        history=history,
        events=events_frame(events) if events is not None else None,
        channel=channel,
    )
    score_bundle(data, AS_OF, out, bundle, contacts=sources)
    if history is not None:
        history.close()
    return ranked(pd.read_parquet(out / "actions.parquet"))


@dataclass
class Fixtures:
    """Who was given which history, and the baseline (no policy, no history) each one had."""

    cooled: tuple[str, str]  # (customer, action accepted 10 days ago: cool-down)
    declined: tuple[str, str]  # (customer, action declined 5 days ago)
    emailed: str  # one e-mail 2 days ago: e-mail closed for a week
    busy: str  # two contacts in 30 days: nothing anywhere
    no_consent: str  # paperless false: nothing on e-mail
    opted_out: str  # paperless, then opt_out on e-mail through /events
    opted_back: str  # opt_out then opt_in through /events
    opted_all: str  # opt_out on every channel through /events
    data_out: str  # opt_out on e-mail in the data set
    data_back: str  # opt_out then opt_in on e-mail in the data set
    data: Path  # the small world with those events
    store: Path  # its online store
    log: Path
    events: Path
    baseline: dict[str, dict[str, list[str]]]  # channel -> customer -> ranked actions
    others: list[str]
    consents: dict[str, bool]  # paperless: consent to e-mail


def paperless(world: World) -> dict[str, bool]:
    customers = pd.read_parquet(
        world.data / "customers.parquet", columns=["customer_id", "paperless"]
    )
    return dict(zip(customers["customer_id"], customers["paperless"].astype(bool), strict=True))


def write_history(log: Path, fx: dict[str, Any]) -> None:
    """The fixtures' history through the decision log's own API (decisions, then feedback)."""
    history = DecisionLog(log, "FULL")

    def contact(customer: str, action: str, channel: str, days: float, outcome: str) -> None:
        ts = NOW - timedelta(days=days)
        decision = f"fixture-{customer}-{action}-{days}"
        history.record(
            DecisionRecord(
                decision,
                ts,
                customer,
                channel,
                "0",
                action,
                1.0,
                False,
                False,
                False,
                (action,),
                {},
            )  # fmt: skip
        )
        history.feedback(decision, action, outcome, ts + timedelta(minutes=1))

    customer, action = fx["cooled"]
    contact(customer, action, "call_center", 10, "accepted")
    customer, action = fx["declined"]
    contact(customer, action, "call_center", 5, "declined")
    contact(
        fx["emailed"], "old_offer", "email", 2, "accepted"
    )  # not in the catalog: still a contact
    contact(fx["busy"], "old_offer", "call_center", 20, "accepted")
    contact(fx["busy"], "older_offer", "call_center", 25, "accepted")
    history.close()


def with_consent_events(world: World, root: Path, out: str, back: str) -> tuple[Path, Path]:
    """The small world plus consent events in its data (an opt-out; an opt-out then an opt-in),
    and its online store (materialized with the world's champion)."""
    from serving.online.store import materialize

    data = root / "data"
    shutil.copytree(world.data, data)
    events = pd.read_parquet(data / "events.parquet")
    added = pd.DataFrame(
        {
            "customer_id": [out, back, back],
            "ts": pd.to_datetime(["2026-10-20 09:00", "2026-10-10 09:00", "2026-10-20 09:00"]),
            "channel": "email",
            "event_type": ["opt_out", "opt_out", "opt_in"],
        }
    )
    for column in events.columns.difference(added.columns):  # value, resolved, text: empty
        added[column] = pd.Series([None] * len(added), dtype=events[column].dtype)
    merged = pd.concat([events, added], ignore_index=True).sort_values(["customer_id", "ts"])
    schema = pq.read_schema(data / "events.parquet")
    merged.astype(events.dtypes.to_dict()).to_parquet(
        data / "events.parquet", index=False, schema=schema
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", world.tracking_uri)
        patch.chdir(world.root)
        store = materialize(data, AS_OF, root / "online_store.sqlite").path
    return data, store


@pytest.fixture(scope="module")
def fixtures(
    world: World, uplift_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory
) -> Fixtures:
    root = tmp_path_factory.mktemp("policy")
    plain = policy_bundle(uplift_bundle, {}, suppress=False)
    baseline = {
        ch: batch(world.data, plain, root / f"baseline_{ch}", ch, None, None) for ch in CHANNELS
    }
    email, call = baseline["email"], baseline["call_center"]
    consents = paperless(world)
    both = sorted(c for c in email if consents.get(c) and c in call)
    cooling = next(c for c in both if "retention_discount" in email[c])
    picks = iter(c for c in both if c != cooling)
    declined, emailed, busy, opted_out, opted_back, opted_all, data_out, data_back = (
        next(picks) for _ in range(8)
    )
    no_consent = next(c for c in sorted(email) if not consents.get(c) and c in call)
    fx: dict[str, Any] = {
        "cooled": (cooling, "retention_discount"),
        "declined": (declined, call[declined][0]),
        "emailed": emailed,
        "busy": busy,
    }
    write_history(root / "decision_log.sqlite", fx)
    chosen = {cooling, declined, emailed, busy, no_consent, opted_out, opted_back, opted_all,
              data_out, data_back}  # fmt: skip
    data, store = with_consent_events(world, root, data_out, data_back)
    others = [c for c in sorted(set(email) | set(call)) if c not in chosen][:40]
    return Fixtures(
        **fx,
        no_consent=no_consent,
        opted_out=opted_out,
        opted_back=opted_back,
        opted_all=opted_all,
        data_out=data_out,
        data_back=data_back,
        data=data,
        store=store,
        log=root / "decision_log.sqlite",
        events=root / "event_store.sqlite",
        baseline=baseline,
        others=others,
        consents=consents,
    )


@pytest.fixture(scope="module")
def service(
    world: World,
    uplift_bundle: Bundle,
    fixtures: Fixtures,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    folder = policy_bundle(uplift_bundle, POLICY).save(tmp_path_factory.mktemp("b") / "bundle")
    running = start_server(
        world,
        fixtures.log,
        NEXTBEST_ONLINE_STORE=str(fixtures.store),
        NEXTBEST_BUNDLE_DIR=str(folder),
        NEXTBEST_EVENT_STORE=str(fixtures.events),
        NEXTBEST_NOW=NOW.isoformat(),
    )
    consent_events = [
        (fixtures.opted_out, 3, "opt_out"),
        (fixtures.opted_back, 3, "opt_out"),
        (fixtures.opted_back, 1, "opt_in"),
    ]
    try:
        every = ["email", "call_center", "chat", "app", "store"]
        for customer, days, kind, channel in [
            *((c, d, k, "email") for c, d, k in consent_events),
            *((fixtures.opted_all, 2, "opt_out", ch) for ch in every),
        ]:
            ts = (NOW - timedelta(days=days)).replace(tzinfo=None).isoformat()
            event = {"customer_id": customer, "ts": ts, "channel": channel, "event_type": kind}
            status, answer = running.call("POST", "/events", {"events": [event]})
            assert status == 200, answer
    except BaseException:
        stop_server(running)  # a fixture failing before its yield is not torn down
        raise
    yield running
    stop_server(running)


def online(server: Server, customer: str, channel: str) -> dict[str, Any]:
    status, answer = server.call(
        "POST", "/recommend", {"customer_id": customer, "channel": channel, "max_actions": 5}
    )
    assert status == 200, answer
    return answer


def shown(answer: dict[str, Any]) -> list[str]:
    return [a["action_id"] for a in answer["actions"]]


@pytest.fixture(scope="module")
def policed(
    world: World, uplift_bundle: Bundle, fixtures: Fixtures, service: Server,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, dict[str, list[str]]]:  # fmt: skip
    """The batch under the policy, from the same history, per channel. The consent events
    posted to the service reach the e-mail run through the shared history alone; the call-centre
    run also reads the service's event store (`--event-store`), which holds them a second time."""
    root = tmp_path_factory.mktemp("policed")
    bundle = policy_bundle(uplift_bundle, POLICY)
    events = {"email": None, "call_center": fixtures.events}
    return {
        ch: batch(fixtures.data, bundle, root / ch, ch, fixtures.log, events[ch]) for ch in CHANNELS
    }


def test_each_rule_suppresses_the_same_customers_online_and_in_batch(
    service: Server, fixtures: Fixtures, policed: dict[str, dict[str, list[str]]]
) -> None:
    fx, base = fixtures, fixtures.baseline
    answers = {ch: {c: online(service, c, ch) for c in [*fx.others, fx.cooled[0], fx.declined[0],
               fx.emailed, fx.busy, fx.no_consent]} for ch in CHANNELS}  # fmt: skip
    # exactly the same ranking online and in batch for every customer without live events
    for ch in CHANNELS:
        for customer, answer in answers[ch].items():
            assert shown(answer) == policed[ch].get(customer, []), (ch, customer)
    # per action: cool-down after an acceptance, suppression after a decline, on every channel
    for customer, action in (fx.cooled, fx.declined):
        assert any(action in base[ch][customer] for ch in CHANNELS)
        assert all(action not in policed[ch].get(customer, []) for ch in CHANNELS)
    # per channel: one e-mail two days ago closes e-mail, not the call centre
    assert base["email"][fx.emailed] and not policed["email"].get(fx.emailed)
    assert policed["call_center"][fx.emailed] == without_ruled(
        base["call_center"][fx.emailed], True
    )
    assert "on email" in answers["email"][fx.emailed]["reason"]
    # across actions: two contacts in 30 days, nothing anywhere, and the answer says why
    for ch in CHANNELS:
        assert base[ch][fx.busy] and not policed[ch].get(fx.busy)
        assert "across all actions" in answers[ch][fx.busy]["reason"]
    # consent attribute: no e-mail without it, the call centre untouched
    assert base["email"][fx.no_consent] and not policed["email"].get(fx.no_consent)
    assert answers["email"][fx.no_consent]["reason"] == "no consent to be contacted on email"
    assert answers["call_center"][fx.no_consent]["reason"] is None
    # the others lost only what consent takes (non-paperless customers on e-mail)
    consents = fx.consents
    for customer in fx.others:
        expected = base["email"].get(customer, []) if consents[customer] else []
        assert policed["email"].get(customer, []) == expected, customer
        expected = without_ruled(base["call_center"].get(customer, []), consents[customer])
        assert policed["call_center"].get(customer, []) == expected, customer
    # the rule reading consent_email took the upgrade from the call centre of some, online and batch
    ruled = [c for c, acts in base["call_center"].items() if RULED in acts and not fx.consents[c]]
    assert ruled and not any(RULED in policed["call_center"].get(c, []) for c in ruled)


def without_ruled(actions: list[str], consent: bool) -> list[str]:
    """The baseline's ranking once the consent rule applies: no upgrade without e-mail consent."""
    return actions if consent else [a for a in actions if a != RULED]


def test_consent_events_take_effect_at_once_online_and_in_the_next_batch(
    service: Server, fixtures: Fixtures, policed: dict[str, dict[str, list[str]]]
) -> None:
    out, back = fixtures.opted_out, fixtures.opted_back
    for customer in (out, back, fixtures.data_out, fixtures.data_back):
        assert fixtures.baseline["email"][customer]
    assert shown(online(service, out, "email")) == [] and not policed["email"].get(out)
    assert online(service, out, "email")["reason"] == "no consent to be contacted on email"
    # the opt-out was for e-mail only: the call centre keeps its consent (its upgrade is gone all
    # the same, as its rule reads consent_email)
    assert online(service, out, "call_center")["reason"] is None
    assert shown(online(service, back, "email")) and policed["email"].get(back)  # opted in again
    # the same from the data set's own events
    assert shown(online(service, fixtures.data_out, "email")) == []
    assert not policed["email"].get(fixtures.data_out)
    assert shown(online(service, fixtures.data_back, "email"))
    assert policed["email"].get(fixtures.data_back)
    # opted out of everything: nothing anywhere, and the answer says why
    everything = fixtures.opted_all
    assert fixtures.baseline["call_center"][everything]
    for ch in CHANNELS:
        answer = online(service, everything, ch)
        assert shown(answer) == [] and not policed[ch].get(everything)
        assert answer["reason"] == "no consent: the customer has opted out of every channel"


def test_a_failed_recording_records_nothing_and_publishes_nothing(
    world: World, uplift_bundle: Bundle, fixtures: Fixtures, tmp_path: Path
) -> None:
    log = tmp_path / "log.sqlite"
    log.write_bytes(fixtures.log.read_bytes())
    with sqlite3.connect(log) as con:  # the store fails after 10 sends (a full disk, say)
        con.execute(
            "CREATE TRIGGER full BEFORE INSERT ON feedback WHEN (SELECT count(*) FROM feedback "
            "WHERE outcome = 'sent') >= 10 BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
        before = con.execute("SELECT count(*) FROM decisions").fetchone()[0]
    sources = ContactSources(now=NOW, history=DecisionLog(log), record=True)
    with pytest.raises(NextbestError, match="disk full.*nothing was recorded"):
        score_bundle(fixtures.data, AS_OF, tmp_path / "out", policy_bundle(uplift_bundle, POLICY),
                     contacts=sources)  # fmt: skip
    assert sources.history is not None
    sources.history.close()
    assert not (tmp_path / "out").exists()
    with sqlite3.connect(log) as con:
        assert con.execute("SELECT count(*) FROM decisions").fetchone()[0] == before


def test_batch_sends_become_contacts_for_the_service_the_next_batch_and_exposures(
    world: World, uplift_bundle: Bundle, fixtures: Fixtures, service: Server, tmp_path: Path,
    policed: dict[str, dict[str, list[str]]],
) -> None:  # fmt: skip
    """Last of the module: it records into the history the service reads."""
    log = fixtures.log
    bundle = policy_bundle(uplift_bundle, POLICY, control=0.2)
    live = {fixtures.opted_out, fixtures.opted_back}
    # e-mail decisions shown before the run, accepted after it (below)
    pending: dict[str, tuple[str, str]] = {}
    for customer in [c for c in policed["email"] if c not in live][:40]:
        answer = online(service, customer, "email")
        if shown(answer):
            pending[customer] = (answer["decision_id"], shown(answer)[0])
    exposed_before = len(exposures_frame(log))
    store = DecisionLog(log)
    sources = ContactSources(now=NOW, history=store, record=True, channel="email")
    summary = score_bundle(fixtures.data, AS_OF, tmp_path / "out", bundle, contacts=sources)
    sent = pd.read_parquet(tmp_path / "out" / "actions.parquet", filters=[("selected", "==", True)])
    scores = pd.read_parquet(tmp_path / "out" / "scores.parquet")
    recorded = len(sent) + int(scores["control_group"].sum())
    assert len(sent) > 100 and summary.stats is not None and summary.stats.recorded == recorded
    manifest = json.loads((tmp_path / "out" / "_nextbest.json").read_text())
    assert manifest["contacts_recorded"] == recorded
    history = store.contact_history_frame(NOW - timedelta(days=1))
    sends = history[history["outcome"] == "sent"]
    assert sorted(sends["customer_id"]) == sorted(sent["customer_id"])
    assert (sends["channel"] == "email").all()
    # an acceptance of an earlier e-mail decision now breaks the e-mail cap: 409, not recorded;
    # a customer the run did not send to (the control group) may still accept
    refused = accepted = 0
    for customer, (decision_id, action) in pending.items():
        status, answer = service.call(
            "POST", "/feedback",
            {"decision_id": decision_id, "action_id": action, "outcome": "accepted"},
        )  # fmt: skip
        was_sent = customer in set(sent["customer_id"])
        assert status == (409 if was_sent else 200), (customer, answer)
        refused, accepted = refused + was_sent, accepted + (not was_sent)
    assert refused >= 5
    # the service sees them at once: the e-mail cap (one a week) closes e-mail for them
    for customer in [c for c in sent["customer_id"] if c not in live and c not in pending][:5]:
        answer = online(service, customer, "email")
        assert shown(answer) == [] and "on email" in answer["reason"]
    # and so does the next batch: nobody left to e-mail this week
    later = ContactSources(now=NOW + timedelta(hours=1), history=sources.history, channel="email")
    again = score_bundle(fixtures.data, AS_OF, tmp_path / "again", bundle, contacts=later)
    assert again.stats is not None and again.stats.selected == 0
    # exposures: sends with propensity 1 - control share, the control group with theirs (the
    # service's own decisions here have exploration and the control group off: propensity 1)
    exposures = exposures_frame(log)
    assert len(exposures) == exposed_before + recorded + 5
    p = exposures["propensity"].round(9)
    assert (p == 0.8).sum() == len(sent)
    assert set(exposures[p == 0.8]["customer_id"]) == set(sent["customer_id"])
    held = (exposures["action_id"] == "control") & (p == 0.2)
    assert 1 <= held.sum() <= int(scores["control_group"].sum())
    store.close()
