"""Contact policy: which catalog actions a customer may receive now, given what they received before.

An action counts as *received* when an agent reported it `accepted` through `/feedback` (the
decision log's contacts). A recommendation that was declined or never acted on is not a contact:
a customer who calls back an hour later is offered the same action again instead of being locked
out of it by an offer they never got. Two limits per action (docs/catalog.md):

- `cooldown_days`: not again until that many days after the last time it was received;
- `max_per_90_days`: at most that many receipts in any trailing 90 days (this one included).

And one on offers the customer turned down: `suppress_after_declines: {count, days}` stops
offering an action after `count` declines within the last `days` days (`declines_allowed`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from numpy.typing import NDArray

from training.config import Catalog

FREQUENCY_WINDOW = timedelta(days=90)


@dataclass(frozen=True)
class Contact:
    """One action a customer received, and when."""

    action_id: str
    ts: datetime


def lookback(catalog: Catalog) -> timedelta:
    """How far back contacts can matter: the longest cool-down, decline window or the frequency
    window."""
    longest = max((a.cooldown_days or 0 for a in catalog.actions), default=0)
    return max(timedelta(days=longest), decline_lookback(catalog), FREQUENCY_WINDOW)


def decline_lookback(catalog: Catalog) -> timedelta:
    """How far back declines can matter (zero: no action is suppressed after declines)."""
    days = [a.suppress_after_declines.days for a in catalog.actions if a.suppress_after_declines]
    return timedelta(days=max(days, default=0))


def declines_allowed(
    catalog: Catalog, declines: Iterable[Contact], now: datetime
) -> NDArray[np.bool_]:
    """(k,) False for every action the customer declined `count` times in its last `days` days
    (`suppress_after_declines`); `declines` are the offers they declined, and when."""
    counts: dict[str, list[datetime]] = {}
    for decline in declines:
        counts.setdefault(decline.action_id, []).append(decline.ts)
    allowed = np.ones(len(catalog.actions), dtype=bool)
    for j, action in enumerate(catalog.actions):
        rule = action.suppress_after_declines
        if rule is None:
            continue
        window = timedelta(days=rule.days)
        recent = sum(1 for ts in counts.get(action.id, ()) if timedelta(0) <= now - ts < window)
        allowed[j] = recent < rule.count
    return allowed


def allowed_mask(catalog: Catalog, contacts: Iterable[Contact], now: datetime) -> NDArray[np.bool_]:
    """(k,) True for every catalog action the contact policy allows at `now`."""
    last: dict[str, datetime] = {}
    recent: dict[str, int] = {}
    for contact in contacts:
        if contact.ts > last.get(contact.action_id, datetime.min.replace(tzinfo=contact.ts.tzinfo)):
            last[contact.action_id] = contact.ts
        if now - contact.ts < FREQUENCY_WINDOW:
            recent[contact.action_id] = recent.get(contact.action_id, 0) + 1
    allowed = np.ones(len(catalog.actions), dtype=bool)
    for j, action in enumerate(catalog.actions):
        seen = last.get(action.id)
        if action.cooldown_days and seen is not None:
            allowed[j] &= now - seen >= timedelta(days=action.cooldown_days)
        if action.max_per_90_days is not None:
            allowed[j] &= recent.get(action.id, 0) < action.max_per_90_days
    return allowed
