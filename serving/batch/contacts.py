"""The contact policy and consent in batch scoring, and batch sends recorded as contacts.

Batch applies the service's own policy (training.policy.contact.policy_mask) to each chunk, from
the contact history as of the run: the decision log's contacts and declines of the chunk's
customers (read through `ContactSources.history`, one customer-id range per chunk) and their
opt_in / opt_out events (the data set's and those posted through /events). An action stays
eligible when some channel it is offered on (the `--channel`, or any) allows it; that channel is
the one a send is recorded on.

The history is the service's own store (serving.history, below serving.batch in the layers): one
read per chunk, and a run's sends recorded in one transaction, on SQLite or PostgreSQL alike.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from serving.batch.chunks import (
    CONSENT_COLUMN,
    CONTROL_COLUMN,
    SELECTED_COLUMN,
    candidate_column,
    greedy_actions,
    unpack,
)
from serving.batch.population import ChunkRange
from serving.history.log import DecisionLog
from training.config import CONTROL, GREEDY_COLUMN, Config
from training.errors import NextbestError
from training.policy.contact import (
    ConsentEvents,
    ContactRules,
    History,
    consent_mask,
    history_arrays,
    on_any_channel,
    policy_mask,
)

CHANNEL = "channel"  # candidate_column(action, CHANNEL): index of the channel a send goes on


@dataclass(frozen=True)
class ContactSources:
    """What batch knows of past contacts and consent, and where a run's sends are recorded."""

    now: datetime  # the run's time: the history and consent as of it
    history: DecisionLog | None = None  # None: no contact history
    events: pd.DataFrame | None = None  # posted events (customer_id, ts, channel, event_type)
    record: bool = False  # record the run's sends in `history` (--record-contacts)
    channel: str | None = None  # the campaign's channel (None: any channel an action has)


@dataclass
class ChunkPolicy:
    """The run's policy: rules, the channels checked, and the consent events of the data."""

    config: Config
    sources: ContactSources
    consent_events: pd.DataFrame | None  # None: no `consent` block, nothing to read
    rules: ContactRules = field(init=False)
    channels: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.rules = ContactRules.of(self.config)
        channel = self.sources.channel
        if channel is not None and self.rules.channels and channel not in self.rules.channels:
            known = ", ".join(self.rules.channels)
            raise NextbestError(f"--channel: unknown channel {channel!r} (channels: {known})")
        self.channels = self.rules.evaluated(channel or "")

    def with_consent(self, features: pd.DataFrame) -> pd.DataFrame:
        """The chunk's features with one `consent:<channel>` column per policy channel (the
        effective consent, as the service computes it), when the config has `consent`."""
        if not self.rules.consent:
            return features
        ids = features["customer_id"].astype(str)
        channels = self.rules.channels
        attributes = {
            a: features[a].to_numpy(dtype=np.float64) if a in features else _missing(a)
            for a in self.rules.consent.values()
        }
        assert self.consent_events is not None
        events = ConsentEvents.of(self.consent_events, pd.Index(ids))
        given = consent_mask(self.rules, len(ids), channels, attributes, events, self.sources.now)
        assert given is not None
        consent = {f"{CONSENT_COLUMN}{c}": given[:, j] for j, c in enumerate(channels)}
        return pd.concat([features, pd.DataFrame(consent, index=features.index)], axis=1)

    def apply(self, frame: pd.DataFrame, chunk: ChunkRange) -> pd.DataFrame:
        """The candidates frame with every action the policy forbids made ineligible, and the
        channel index each action would be sent on (−1: none)."""
        ids = pd.Index(frame["customer_id"].astype(str))
        history = History.empty()
        if self.sources.history is not None and len(ids):
            since = self.sources.now - self.rules.lookback
            rows = self.sources.history.contact_history_frame(
                since, id_range=(chunk.low, chunk.high)
            )
            history = history_arrays(rows, ids, self.rules)
        consent = None
        if self.rules.consent:
            consent = np.column_stack(
                [frame[f"{CONSENT_COLUMN}{c}"].to_numpy(dtype=bool) for c in self.channels]
            ) if len(self.channels) else np.ones((len(ids), 0), dtype=bool)  # fmt: skip
        mask = policy_mask(self.rules, history, len(ids), self.sources.now, self.channels, consent)
        allowed, first = on_any_channel(mask.allowed(), self.rules.offered(self.channels))
        out = frame.copy()
        for j, action in enumerate(self.rules.action_ids):
            column = candidate_column(action, "eligible")
            out[column] = out[column].to_numpy(dtype=bool) & allowed[:, j]
            out[candidate_column(action, CHANNEL)] = first[:, j].astype(np.int16)
        return out

    def frames(
        self, frames: Iterator[pd.DataFrame], chunks: list[ChunkRange]
    ) -> Iterator[pd.DataFrame]:
        """`apply` to each chunk's frame, in chunk order."""
        for frame, chunk in zip(frames, chunks, strict=True):
            yield self.apply(frame, chunk)


def _missing(attribute: str) -> NDArray[np.float64]:
    raise NextbestError(
        f"consent: the customer attribute '{attribute}' is not a column of customers"
    )


@dataclass
class SendLog:
    """The run's decisions to record (`--record-contacts`): each customer's selected action on
    its channel, and each control-group customer as `control`, with the propensity the service
    would log for the same decision without exploration and the greedy ranking's first action
    (`greedy_action`: for the control group, what they would have been sent)."""

    config: Config
    channels: tuple[str, ...]
    model_version: str
    now: datetime
    parts: list[pd.DataFrame] = field(default_factory=list)

    def add(self, frame: pd.DataFrame, actions: pd.DataFrame) -> None:
        """One chunk: its candidates frame (after the policy) and its `actions` table."""
        share = self.config.decisioning.control_share
        ids = self.config.catalog.ids
        sent = actions[actions[SELECTED_COLUMN]]
        where = pd.Index(frame["customer_id"].astype(str)).get_indexer(
            pd.Index(sent["customer_id"])
        )
        greedy = greedy_actions(unpack(frame, self.config))
        action = pd.Index(ids).get_indexer(pd.Index(sent["action_id"]))
        channel_index = np.column_stack(
            [frame[candidate_column(a, CHANNEL)].to_numpy() for a in ids]
        )[where, action]
        sends = pd.DataFrame(
            {
                "customer_id": sent["customer_id"].to_numpy(dtype=object),
                "channel": np.asarray(self.channels, dtype=object)[channel_index],
                "action_id": sent["action_id"].to_numpy(dtype=object),
                "propensity": 1.0 - share,
                "control_group": False,
                GREEDY_COLUMN: greedy[where],
            }
        )
        held_out = frame[CONTROL_COLUMN].to_numpy(dtype=bool)
        control = frame[held_out]
        held = pd.DataFrame(
            {
                "customer_id": control["customer_id"].to_numpy(dtype=object),
                "channel": self.channels[0] if len(self.channels) == 1 else "",
                "action_id": CONTROL,
                # nothing worth giving: nobody would have acted (1), else the control group did (share)
                "propensity": np.where(greedy[held_out] != CONTROL, share, 1.0),
                "control_group": True,
                GREEDY_COLUMN: greedy[held_out],
            }
        )
        self.parts.append(pd.concat([sends, held], ignore_index=True))

    def batch(self, as_of: str) -> pd.DataFrame:
        """Every recorded decision (the decision log's BATCH_COLUMNS), sorted by customer."""
        frame = pd.concat(self.parts, ignore_index=True) if self.parts else _empty()
        frame = frame.sort_values("customer_id", kind="stable", ignore_index=True)
        run = uuid.uuid4().hex[:12]
        frame.insert(0, "decision_id", [f"batch-{run}-{i}" for i in range(len(frame))])
        frame["ts"] = pd.Timestamp(self.now)
        frame["model_version"] = self.model_version
        frame["context"] = json.dumps({"source": "batch", "as_of": as_of, "run": run})
        return frame


def _empty() -> pd.DataFrame:
    text = ("customer_id", "channel", "action_id", GREEDY_COLUMN)
    return pd.DataFrame(
        {c: pd.Series([], dtype=object) for c in text}
        | {"propensity": pd.Series([], dtype=float), "control_group": pd.Series([], dtype=bool)}
    )
