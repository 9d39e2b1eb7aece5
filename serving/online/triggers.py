"""Triggers ("if this, then that"): which catalog actions an ingested event fires.

An action's `trigger` is a rule (training.rules) over the incoming event's `event_type`, `channel`
and `value` and the customer's features and scores after it, e.g.
``event_type == 'complaint' and churn_probability > 0.1``. Pure: the service computes the inputs,
claims the customer's cool-down, decides and appends to the outbox (serving.online.outbox).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

from serving.online.events import Event
from training.config import Catalog
from training.rules import Rule, compile_rule


def has_triggers(catalog: Catalog) -> bool:
    return any(a.trigger_rule is not None for a in catalog.actions)


def event_inputs(event: Event) -> dict[str, object]:
    """What a trigger reads from the event itself."""
    return {"event_type": event.event_type, "channel": event.channel, "value": event.value}


def fired(catalog: Catalog, namespace: Mapping[str, object]) -> NDArray[np.bool_]:
    """(k,) True for every action whose trigger is true on `namespace` (unknown: not fired)."""
    mask = np.zeros(len(catalog.actions), dtype=bool)
    for j, action in enumerate(catalog.actions):
        if action.trigger_rule is not None:
            mask[j] = bool(action.trigger_rule.evaluate(namespace))
    return mask


def may_fire(catalog: Catalog, event: Event) -> bool:
    """False when no trigger can be true for this event whatever the customer's features and
    scores: each is false (not unknown) with only the event's names known, which for a monotone
    rule (training.rules.Rule.monotone) means false for every customer; those need no features."""
    inputs = event_inputs(event)
    for action in catalog.actions:
        rule = action.trigger_rule
        if rule is None:
            continue
        if not rule.monotone:
            return True
        namespace = {name: inputs.get(name) for name in rule.names}
        if not _negation(rule.text).evaluate(namespace):  # not surely false: it may fire
            return True
    return False


def may_fire_each(catalog: Catalog, events: Sequence[Event]) -> list[bool]:
    """`may_fire` of each event, evaluated once per distinct (event_type, channel, value): a
    batch repeats a few kinds of events."""
    seen: dict[tuple[object, ...], bool] = {}
    out = []
    for event in events:
        key = (event.event_type, event.channel, event.value)
        if key not in seen:
            seen[key] = may_fire(catalog, event)
        out.append(seen[key])
    return out


@lru_cache(maxsize=256)
def _negation(text: str) -> Rule:
    """`not (rule)`: true exactly where the rule is false, not where it is unknown."""
    return compile_rule(f"not ({text})")
