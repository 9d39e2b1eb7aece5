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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from training.config import CONSENT_PREFIX, Cap, Catalog, Config

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


# --- the whole policy, vectorised: one function for one customer online and a chunk in batch ---

#: the outcomes of the contact history that make a contact: an offer accepted through /feedback,
#: a batch send recorded by `nextbest score --record-contacts`
RECEIVED = ("accepted", "sent")
DECLINED = "declined"
OPT_IN, OPT_OUT = "opt_in", "opt_out"
HISTORY_COLUMNS = ("customer_id", "action_id", "channel", "ts", "outcome")
_DAY_US = 86_400_000_000
_NO_LIMIT = np.iinfo(np.int64).max


@dataclass(frozen=True)
class ContactRules:
    """A configuration's contact policy and consent as arrays in catalog order (built once)."""

    action_ids: tuple[str, ...]
    action_channels: tuple[tuple[str, ...] | None, ...]
    cooldown_us: NDArray[np.int64]  # (k,) 0: no cool-down
    max_per_90: NDArray[np.int64]  # (k,) _NO_LIMIT: no cap
    decline_count: NDArray[np.int64]  # (k,) _NO_LIMIT: never suppressed
    decline_us: NDArray[np.int64]  # (k,) the declines' window
    channel_caps: dict[str, tuple[Cap, ...]]
    total_caps: tuple[Cap, ...]
    consent: dict[str, str]  # channel -> customer attribute
    lookback: timedelta
    channels: tuple[str, ...]  # every channel the catalog, the caps or consent name

    @classmethod
    def of(cls, config: Config) -> ContactRules:
        actions = config.catalog.actions
        declines = [a.suppress_after_declines for a in actions]
        caps = {c: p.caps for c, p in config.contact_policy.channels.items() if p.caps}
        total = config.contact_policy.total_caps
        windows = [c.days for cs in caps.values() for c in cs] + [c.days for c in total]
        longest = max([0, *windows])
        return cls(
            action_ids=config.catalog.ids,
            action_channels=tuple(a.channels for a in actions),
            cooldown_us=np.array([(a.cooldown_days or 0) * _DAY_US for a in actions], np.int64),
            max_per_90=np.array([a.max_per_90_days or _NO_LIMIT for a in actions], np.int64),
            decline_count=np.array([d.count if d else _NO_LIMIT for d in declines], np.int64),
            decline_us=np.array([d.days * _DAY_US if d else 0 for d in declines], np.int64),
            channel_caps=caps,
            total_caps=total,
            consent=dict(config.consent),
            lookback=max(lookback(config.catalog), timedelta(days=longest)),
            channels=config.policy_channels,
        )

    def evaluated(self, channel: str) -> tuple[str, ...]:
        """The channels a decision on `channel` is checked on: that one, or for "" (any channel)
        every channel the policy knows (at least "": no channel caps, no consent)."""
        if channel:
            return (channel,)
        return self.channels or ("",)

    def offered(self, channels: Sequence[str]) -> NDArray[np.bool_]:
        """(k, c): the action may be offered on the channel ("": any channel, so every action)."""
        return np.array(
            [
                [cs is None or ch == "" or ch in cs for ch in channels]
                for cs in self.action_channels
            ],
            dtype=bool,
        ).reshape(len(self.action_ids), len(channels))


@dataclass(frozen=True)
class History:
    """Contacts and declines of a block of n customers, as arrays (`history_arrays`)."""

    customer: NDArray[np.intp]  # the customer's row in the block
    action: NDArray[np.intp]  # catalog index; -1: an action the catalog no longer has
    channel: NDArray[np.object_]
    ts_us: NDArray[np.int64]  # microseconds since the epoch, UTC
    received: NDArray[np.bool_]  # True: a contact; False: a decline

    @classmethod
    def empty(cls) -> History:
        none = np.empty(0, dtype=np.intp)
        return cls(none, none, np.empty(0, object), np.empty(0, np.int64), np.empty(0, bool))


def to_us(ts: pd.Series | pd.DatetimeIndex) -> NDArray[np.int64]:
    """Timestamps (naive: UTC) as int64 microseconds since the epoch."""
    stamps = pd.to_datetime(ts, utc=True, format="ISO8601")
    return np.asarray(stamps.astype("datetime64[us, UTC]").astype("int64"), dtype=np.int64)


def now_us(now: datetime) -> int:
    """`now` (naive: UTC) in microseconds since the epoch, exactly."""
    aware = now if now.tzinfo is not None else now.replace(tzinfo=UTC)
    delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def history_arrays(
    frame: pd.DataFrame, customer_ids: Sequence[str] | pd.Index, rules: ContactRules
) -> History:
    """The rows of a contact-history frame (HISTORY_COLUMNS; outcome `accepted` / `sent` count as
    contacts, `declined` as declines, any other is ignored) that concern `customer_ids`."""
    if len(frame) == 0:
        return History.empty()
    rows = pd.Index(customer_ids).get_indexer(pd.Index(frame["customer_id"]))
    outcome = frame["outcome"].to_numpy(dtype=object)
    received = np.isin(outcome, RECEIVED)
    keep = (rows >= 0) & (received | (outcome == DECLINED))
    action = pd.Index(rules.action_ids).get_indexer(pd.Index(frame["action_id"]))
    return History(
        customer=rows[keep].astype(np.intp),
        action=action[keep].astype(np.intp),
        channel=frame["channel"].to_numpy(dtype=object)[keep],
        ts_us=to_us(frame["ts"])[keep],
        received=received[keep],
    )


def history_of_rows(
    rows: Sequence[tuple[str, str, str, str | datetime, str]],
    customer_ids: Sequence[str],
    rules: ContactRules,
) -> History:
    """`history_arrays` of plain rows (customer_id, action_id, channel, ts, outcome), in pure
    Python: the service's few rows of one customer, without pandas on the hot path."""
    row_of = {c: i for i, c in enumerate(customer_ids)}
    action_of = {a: j for j, a in enumerate(rules.action_ids)}
    kept = [
        (row_of[c], action_of.get(a, -1), ch, _us(ts), o in RECEIVED)
        for c, a, ch, ts, o in rows
        if c in row_of and (o in RECEIVED or o == DECLINED)
    ]
    if not kept:
        return History.empty()
    customer, action, channel, ts, received = zip(*kept, strict=True)
    return History(
        np.array(customer, dtype=np.intp),
        np.array(action, dtype=np.intp),
        np.array(channel, dtype=object),
        np.array(ts, dtype=np.int64),
        np.array(received, dtype=bool),
    )


def _us(ts: str | datetime) -> int:
    return now_us(datetime.fromisoformat(ts) if isinstance(ts, str) else ts)


@dataclass(frozen=True)
class PolicyMask:
    """What the policy allows for n customers, by part; `allowed()` is (n, k, c)."""

    per_action: NDArray[np.bool_]  # (n, k) cool-down, 90-day cap, declines
    channel_ok: NDArray[np.bool_]  # (n, c) under every cap of the channel
    total_ok: NDArray[np.bool_]  # (n,) under every cap across actions and channels
    consent: NDArray[np.bool_]  # (n, c)
    channels: tuple[str, ...]

    def allowed(self) -> NDArray[np.bool_]:
        channel = self.channel_ok & self.consent & self.total_ok[:, None]
        return self.per_action[:, :, None] & channel[:, None, :]


def policy_mask(
    rules: ContactRules,
    history: History,
    n: int,
    now: datetime,
    channels: Sequence[str],
    consent: NDArray[np.bool_] | None = None,
) -> PolicyMask:
    """The contact policy for n customers at `now` on each of `channels`: per action (cool-down,
    `max_per_90_days`, `suppress_after_declines`), per channel (`max_per_<N>_days`), across
    everything (`max_contacts_per_<N>_days`) and consent ((n, c), None: given everywhere).

    Windows count what is younger than the window (`now - ts < days`), a cool-down holds until it
    has fully passed, and declines count from `now` back: exactly `allowed_mask` and
    `declines_allowed`, which the service applied alone before."""
    k, t = len(rules.action_ids), now_us(now)
    age = t - history.ts_us
    contact, decline = history.received, ~history.received
    known = history.action >= 0
    per_action = np.ones((n, k), dtype=bool)
    sel = contact & known
    if sel.any():
        cell = history.customer[sel] * k + history.action[sel]
        last = np.full(n * k, np.iinfo(np.int64).min, dtype=np.int64)
        np.maximum.at(last, cell, history.ts_us[sel])
        seen = last > np.iinfo(np.int64).min
        gap = t - np.where(seen, last, t)  # no overflow for the never-received
        cooldown = np.tile(rules.cooldown_us, n)
        per_action &= (~seen | (cooldown == 0) | (gap >= cooldown)).reshape(n, k)
        recent = sel & (age < 90 * _DAY_US)
        counts = np.bincount(
            history.customer[recent] * k + history.action[recent], minlength=n * k
        ).reshape(n, k)
        per_action &= counts < rules.max_per_90[None, :]
    sel = decline & known
    if sel.any():
        window = rules.decline_us[history.action[sel]]
        recent = (age[sel] >= 0) & (age[sel] < window)
        cells = (history.customer[sel] * k + history.action[sel])[recent]
        counts = np.bincount(cells, minlength=n * k).reshape(n, k)
        per_action &= counts < rules.decline_count[None, :]
    channel_ok = np.ones((n, len(channels)), dtype=bool)
    for c, name in enumerate(channels):
        for cap in rules.channel_caps.get(name, ()):
            hit = contact & (history.channel == name) & (age < cap.days * _DAY_US)
            channel_ok[:, c] &= np.bincount(history.customer[hit], minlength=n) < cap.limit
    total_ok = np.ones(n, dtype=bool)
    for cap in rules.total_caps:
        hit = contact & (age < cap.days * _DAY_US)
        total_ok &= np.bincount(history.customer[hit], minlength=n) < cap.limit
    given = np.ones((n, len(channels)), dtype=bool) if consent is None else consent
    return PolicyMask(per_action, channel_ok, total_ok, given, tuple(channels))


def on_any_channel(
    allowed: NDArray[np.bool_], offered: NDArray[np.bool_]
) -> tuple[NDArray[np.bool_], NDArray[np.intp]]:
    """(n, k) allowed on at least one channel the action is offered on, and the first such
    channel's index (−1: none), from an (n, k, c) mask and the (k, c) `offered`."""
    usable = allowed & offered[None, :, :]
    first = np.where(usable.any(axis=2), usable.argmax(axis=2), -1)
    return np.asarray(usable.any(axis=2), dtype=bool), first.astype(np.intp)


# --- consent -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentEvents:
    """`opt_in` / `opt_out` events of a block of customers, as arrays."""

    customer: NDArray[np.intp]
    channel: NDArray[np.object_]
    opt_in: NDArray[np.bool_]
    ts_us: NDArray[np.int64]

    @classmethod
    def of_rows(
        cls, rows: Sequence[tuple[str, str | datetime, str, str]], customer_ids: Sequence[str]
    ) -> ConsentEvents:
        """`of` plain rows (customer_id, ts, channel, event_type), in pure Python (online)."""
        row_of = {c: i for i, c in enumerate(customer_ids)}
        kept = [
            (row_of[c], ch, kind == OPT_IN, _us(ts))
            for c, ts, ch, kind in rows
            if c in row_of and kind in (OPT_IN, OPT_OUT)
        ]
        customer, channel, opt_in, ts = zip(*kept, strict=True) if kept else ((), (), (), ())
        return cls(
            np.array(customer, dtype=np.intp),
            np.array(channel, dtype=object),
            np.array(opt_in, dtype=bool),
            np.array(ts, dtype=np.int64),
        )

    @classmethod
    def of(cls, frame: pd.DataFrame, customer_ids: Sequence[str] | pd.Index) -> ConsentEvents:
        """The consent events of `frame` (customer_id, ts, channel, event_type; other event
        types are ignored) that concern `customer_ids`."""
        if len(frame) == 0:
            none = np.empty(0, dtype=np.intp)
            return cls(none, np.empty(0, object), np.empty(0, bool), np.empty(0, np.int64))
        kind = frame["event_type"].to_numpy(dtype=object)
        rows = pd.Index(customer_ids).get_indexer(pd.Index(frame["customer_id"]))
        keep = (rows >= 0) & np.isin(kind, (OPT_IN, OPT_OUT))
        return cls(
            rows[keep].astype(np.intp),
            frame["channel"].to_numpy(dtype=object)[keep],
            (kind == OPT_IN)[keep],
            to_us(frame["ts"])[keep],
        )


def consent_mask(
    rules: ContactRules,
    n: int,
    channels: Sequence[str],
    attributes: Mapping[str, NDArray[np.float64]],
    events: ConsentEvents,
    now: datetime,
) -> NDArray[np.bool_] | None:
    """(n, c) consent on each channel, or None when the configuration has no `consent` block.

    A channel listed in `consent` starts from its customer attribute (true / 1; false, 0 or
    missing: no consent); any other channel starts consented. The customer's latest `opt_in` or
    `opt_out` event on the channel up to `now` overrides that (an opt-out wins a tie)."""
    if not rules.consent:
        return None
    out = np.ones((n, len(channels)), dtype=bool)
    for c, name in enumerate(channels):
        attribute = rules.consent.get(name)
        if attribute is not None:
            values = np.asarray(attributes[attribute], dtype=np.float64)
            out[:, c] = np.nan_to_num(values, nan=0.0) > 0
    if len(events.customer) == 0:
        return out
    index = {name: c for c, name in enumerate(channels)}
    column = np.array([index.get(ch, -1) for ch in events.channel], dtype=np.intp)
    keep = (column >= 0) & (events.ts_us <= now_us(now))
    # latest per (customer, channel): sort by time, opt-outs after opt-ins of the same instant
    order = np.lexsort((~events.opt_in[keep], events.ts_us[keep]))[::-1]
    rows, cols = events.customer[keep][order], column[keep][order]
    cells, first = np.unique(rows * len(channels) + cols, return_index=True)
    flat = out.reshape(-1)
    flat[cells] = events.opt_in[keep][order][first]
    return out


def consent_names(
    rules: ContactRules, channels: Sequence[str], consent: NDArray[np.bool_] | None
) -> dict[str, NDArray[np.bool_]]:
    """What eligibility rules read: `consent_<channel>` per channel ((n,) each); none without a
    `consent` block."""
    if consent is None:
        return {}
    return {f"{CONSENT_PREFIX}{ch}": consent[:, c] for c, ch in enumerate(channels) if ch}


def suppression_reason(
    mask: PolicyMask, row: int, channel: str, consent_nowhere: bool = False
) -> str | None:
    """Why a customer gets nothing on `channel` ("": any) because of consent or the caps across
    actions, in a sentence for the answer; None when neither is the cause. `consent_nowhere`:
    the customer has consent on none of the policy's channels."""
    consent = mask.consent[row]
    if consent_nowhere:
        return "no consent: the customer has opted out of every channel"
    columns = [c for c, ch in enumerate(mask.channels) if ch == channel or channel == ""]
    if columns and not consent[columns].any():
        return f"no consent to be contacted on {channel}"
    if not mask.total_ok[row]:
        return "contact limit: the customer has had the most contacts allowed across all actions"
    if columns and not mask.channel_ok[row, columns].any():
        return f"contact limit: the customer has had the most contacts allowed on {channel}"
    return None


def acceptance_allowed(
    rules: ContactRules,
    others: Sequence[tuple[str, str, str, str | datetime, str]],
    index: int,
    channel: str,
    now: datetime,
) -> bool:
    """Whether an acceptance of the `index`-th action on the decision's `channel` ("": any) may be
    recorded, given what the customer received from other decisions (history rows, accepted
    online or sent by a batch): the same `policy_mask` as at decision time, on what was received
    (declines and consent do not undo something the customer took), so of two racing acceptances
    the second is refused when it would break a cool-down, a frequency limit or a cap."""
    customer = others[0][0] if others else ""
    received = [r for r in others if r[4] in RECEIVED]
    channels = rules.evaluated(channel)
    history = history_of_rows(received, [customer], rules)
    allowed = policy_mask(rules, history, 1, now, channels).allowed()
    if channel:  # the channel it was shown on, even if the catalog no longer offers it there
        return bool(allowed[0, index, 0])
    return bool(on_any_channel(allowed, rules.offered(channels))[0][0, index])
