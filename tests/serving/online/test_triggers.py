"""Which catalog actions an event fires, and the cheap pre-check that skips computing features for
events no trigger can fire on."""

from __future__ import annotations

from datetime import datetime

from serving.online.events import Event
from serving.online.triggers import event_inputs, fired, may_fire, may_fire_each
from training.config import Action, Catalog

CATALOG = Catalog(
    actions=(
        Action(id="credit", name="C", cost=1, trigger="event_type == 'complaint' and churn > 0.1"),
        Action(id="call", name="K", cost=1, trigger="channel == 'app' and value <= 6"),
        Action(id="none", name="N", cost=1),
    )
)
TS = datetime(2026, 11, 5, 10)


def test_fired_reads_the_event_and_the_customer() -> None:
    complaint = Event("c", TS, "call_center", "complaint")
    assert fired(CATALOG, event_inputs(complaint) | {"churn": 0.3}).tolist() == [True, False, False]
    assert fired(CATALOG, event_inputs(complaint) | {"churn": 0.05}).tolist() == [False] * 3
    survey = Event("c", TS, "app", "nps", 4.0)
    assert fired(CATALOG, event_inputs(survey) | {"churn": None}).tolist() == [False, True, False]


def test_may_fire_skips_only_events_no_trigger_can_fire_on() -> None:
    assert may_fire(CATALOG, Event("c", TS, "call_center", "complaint"))  # depends on churn
    assert may_fire(CATALOG, Event("c", TS, "app", "nps", 3.0))
    assert not may_fire(CATALOG, Event("c", TS, "call_center", "visit"))
    assert not may_fire(CATALOG, Event("c", TS, "app", "nps", 9.0))
    tested = Catalog(actions=(Action(id="a", name="A", cost=1, trigger="isnull(nps_last)"),))
    assert may_fire(tested, Event("c", TS, "web", "visit"))  # not monotone: always computed


def test_may_fire_each_answers_as_may_fire_for_every_event_of_a_batch() -> None:
    kinds = [("call_center", "complaint", None), ("app", "nps", 3.0), ("app", "nps", 9.0),
             ("call_center", "visit", None)]  # fmt: skip
    batch = [Event(f"c{i}", TS, *kinds[(i * 7) % 4]) for i in range(40)]
    assert may_fire_each(CATALOG, batch) == [may_fire(CATALOG, e) for e in batch]
    assert any(may_fire_each(CATALOG, batch)) and not all(may_fire_each(CATALOG, batch))
