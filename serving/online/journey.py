"""The customer's recent journey for the agent: their last events, newest first, from the online
store's history (serving.online.history) and the events ingested since (serving.online.events),
so a complaint posted a minute ago is on the agent's screen with the survey comment that came
with it. Pure: the service reads the two stores and passes them in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from serving.online.events import Event
from serving.online.history import History

DEFAULT_LIMIT = 20
MAX_LIMIT = 200


def journey(
    history: History | None, live: Sequence[Event], now: datetime, limit: int
) -> list[dict[str, Any]]:
    """Up to `limit` events before `now` (naive UTC), newest first; `source` says whether an
    event came with the nightly data (`stored`) or through POST /events (`live`)."""
    rows = [_row(e.ts, e.channel, e.event_type, e.value, e.text, "live") for e in live]
    if history is not None:
        events = history.events
        texts = (
            events.column("text").to_pylist() if "text" in events.column_names else [None] * len(events)
        )  # fmt: skip
        columns = zip(
            events.column("ts").to_pylist(),
            events.column("channel").to_pylist(),
            events.column("event_type").to_pylist(),
            events.column("value").to_pylist(),
            texts,
            strict=True,
        )
        rows += [_row(ts, c, t, v, x, "stored") for ts, c, t, v, x in columns]
    recent = [r for r in rows if r["_ts"] < now]
    recent.sort(key=lambda r: r["_ts"], reverse=True)
    return [{k: v for k, v in r.items() if k != "_ts"} for r in recent[:limit]]


def _row(
    ts: datetime, channel: object, event_type: object, value: object, text: object, source: str
) -> dict[str, Any]:
    number = None if value is None or (isinstance(value, float) and math.isnan(value)) else value
    return {
        "_ts": ts,
        "ts": ts.isoformat(),
        "channel": None if channel is None else str(channel),
        "event_type": str(event_type),
        "value": number,
        "text": None if text is None else str(text),
        "source": source,
    }
