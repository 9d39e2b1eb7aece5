"""The history turned into the data contract's tables for the next training: exposures (one row
per decision of a known customer, the first action shown or `control`, with the probability with
which it was chosen; docs/data.md) and feedback (the latest outcome of each shown action), or
offers and their outcomes as events, which the feature definition counts per type and window.
Shadow decisions (a challenger deciding beside the shown arm: logged, never shown) are neither
exposures nor feedback and are left out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import text

from serving.history.engine import NoHistoryError, history_url
from serving.history.log import DecisionLog
from training.atomic import atomic_file
from training.config import GREEDY_COLUMN, offer_event_type

EXPOSURES = """
    SELECT customer_id, ts, action_id, propensity, greedy_action FROM decisions
    WHERE shadow = 0 AND (cold_start = 0 OR :all_ = 1) ORDER BY ts"""

SHOWN = """
    SELECT customer_id, ts, channel, actions FROM decisions
    WHERE shadow = 0 AND actions <> '[]' AND (cold_start = 0 OR :all_ = 1) ORDER BY ts"""

FEEDBACK = """
    SELECT customer_id, ts, action_id, outcome, decision_id{extra} FROM (
        SELECT f.customer_id, f.ts, f.action_id, f.outcome, f.decision_id, d.channel,
        row_number() OVER (
            PARTITION BY f.decision_id, f.action_id ORDER BY f.ts DESC, f.seq DESC) AS k
        FROM feedback AS f JOIN decisions AS d ON d.decision_id = f.decision_id
        WHERE d.shadow = 0 AND f.outcome <> 'sent' AND (d.cold_start = 0 OR :all_ = 1)) AS latest
    WHERE k = 1 ORDER BY ts"""
LATEST_FEEDBACK = FEEDBACK.format(extra="")


def _frame(source: str | Path, sql: str, include_cold_start: bool) -> pd.DataFrame:
    url = history_url(source)
    if url.get_backend_name() == "sqlite" and not Path(str(url.database)).is_file():
        raise NoHistoryError(f"{url.database}: no decision log")
    log = DecisionLog(source)
    try:
        with log.engine.connect() as con:
            frame = pd.read_sql_query(text(sql), con, params={"all_": int(include_cold_start)})
    finally:
        log.close()
    frame["ts"] = pd.to_datetime(frame["ts"], utc=True, format="ISO8601").dt.tz_localize(None)
    return frame


def exposures_frame(source: str | Path, include_cold_start: bool = False) -> pd.DataFrame:
    """The contract's exposures (customer_id, ts, action_id, propensity) of the logged decisions,
    with the optional column `greedy_action` (the policy's greedy first action, shown or not;
    missing for decisions logged before it was kept): what `nextbest impact` compares per greedy
    action.

    Cold-start decisions are left out unless asked for: their customers are not in the data set the
    log's decisions were made on, and the contract refuses exposures of unknown customers.
    """
    return _frame(source, EXPOSURES, include_cold_start)


def export_exposures(
    source: str | Path, out: Path, include_cold_start: bool = False
) -> tuple[int, Path]:
    """Write `out/exposures.parquet` atomically; returns (rows, file). `greedy_action` is a
    text column even when no decision logged one (all missing)."""
    frame = exposures_frame(source, include_cold_start).astype({GREEDY_COLUMN: "string"})
    return _write(frame, Path(out) / "exposures.parquet")


def feedback_frame(source: str | Path, include_cold_start: bool = False) -> pd.DataFrame:
    """What happened to shown actions (customer_id, ts, action_id, outcome, decision_id): the
    latest feedback on each, the offers accepted and declined per action that a next training can
    turn into features; cold starts left out unless asked for, as for exposures. A batch send is
    an exposure, not a response: its `sent` row is not feedback."""
    return _frame(source, LATEST_FEEDBACK, include_cold_start)


def export_feedback(
    source: str | Path, out: Path, include_cold_start: bool = False
) -> tuple[int, Path]:
    """Write `out/feedback.parquet` atomically; returns (rows, file)."""
    return _write(feedback_frame(source, include_cold_start), Path(out) / "feedback.parquet")


def offer_events_frame(source: str | Path, include_cold_start: bool = False) -> pd.DataFrame:
    """Offers and their outcomes as contract events (customer_id, ts, channel, event_type,
    value): each action shown, at the decision's time, as `offer_shown_<action>`, and the latest
    feedback on it, at its time, as `offer_<outcome>_<action>`, on the decision's channel. Appended
    to the data set's events they become the feature definition's count and recency features
    per type and window, point in time, like any event (docs/data.md)."""
    shown = _frame(source, SHOWN, include_cold_start)
    shown["action_id"] = [json.loads(a) for a in shown.pop("actions")]
    shown = shown.explode("action_id").assign(outcome="shown")
    answered = _frame(source, FEEDBACK.format(extra=", channel"), include_cold_start)
    both = pd.concat([shown, answered[shown.columns]], ignore_index=True)
    types = [
        offer_event_type(o, a) for o, a in zip(both["outcome"], both["action_id"], strict=True)
    ]
    events = pd.DataFrame({
        "customer_id": both["customer_id"].astype(str), "ts": both["ts"],
        "channel": both["channel"].astype(str), "event_type": types,
        "value": pd.Series(np.nan, index=both.index, dtype="float64"),
    })  # fmt: skip
    return events.sort_values(["ts", "customer_id"], kind="stable", ignore_index=True)


def export_offer_events(
    source: str | Path, out: Path, include_cold_start: bool = False
) -> tuple[int, Path]:
    """Write `out/events.parquet` (offers and outcomes as events) atomically; returns (rows,
    file)."""
    return _write(offer_events_frame(source, include_cold_start), Path(out) / "events.parquet")


def _write(frame: pd.DataFrame, target: Path) -> tuple[int, Path]:
    with atomic_file(target) as tmp:
        frame.to_parquet(tmp, index=False)
    return len(frame), target
