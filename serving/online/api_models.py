"""Request and response bodies of the HTTP API (docs/api.md), as strict pydantic models.

Unknown fields are refused (a typo such as `max_action` must not be silently ignored), sizes are
bounded, and the published OpenAPI schema is generated from these classes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from training.data.contract import MAX_TEXT_CHARS  # the API takes what the contract takes

MAX_ACTIONS = 20
MAX_CONTEXT_ITEMS = 20
MAX_EXCLUDE = 100
MAX_EVENTS = 1000  # per POST /events (the body limit usually binds first)

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128)]
ContextValue = Annotated[str, StringConstraints(max_length=256)] | int | float | bool


class _Strict(BaseModel):
    # strict types too: `"max_actions": true` or `"3"` is a mistake to report, not a 1 or a 3
    model_config = ConfigDict(extra="forbid", strict=True)


class RecommendRequest(_Strict):
    """`POST /recommend`: one customer on one channel, with optional real-time context."""

    customer_id: Identifier
    channel: Identifier = Field(description="a channel of the action catalog, e.g. call_center")
    context: dict[Annotated[str, StringConstraints(max_length=64)], ContextValue] = Field(
        default_factory=dict,
        max_length=MAX_CONTEXT_ITEMS,
        description="free key/values such as call_reason; logged with the decision",
    )
    max_actions: int = Field(default=3, ge=1, le=MAX_ACTIONS)
    exclude: list[Identifier] = Field(default_factory=list, max_length=MAX_EXCLUDE)


class ScoreRequest(_Strict):
    """`POST /score`: the scores of one customer."""

    customer_id: Identifier


class FeedbackRequest(_Strict):
    """`POST /feedback`: what happened to an action a decision showed."""

    decision_id: Identifier
    action_id: Identifier
    outcome: Literal["accepted", "declined", "ignored"]


class EventIn(_Strict):
    """One contract event (docs/data.md) posted to `POST /events`."""

    customer_id: Identifier
    ts: str = Field(
        max_length=64,
        description="ISO 8601 timestamp or date, e.g. 2026-11-02T10:15:00Z; no zone means UTC",
    )
    channel: Annotated[str, StringConstraints(max_length=128)]
    event_type: Identifier
    value: float | None = Field(default=None, allow_inf_nan=False)
    text: str | None = Field(
        default=None, max_length=MAX_TEXT_CHARS, description="free text, e.g. a survey comment"
    )
    event_id: Identifier | None = Field(
        default=None, description="makes a retried event a duplicate instead of a second event"
    )

    @field_validator("ts")
    @classmethod
    def _timestamp(cls, value: str) -> str:
        parse_ts(value)
        return value

    @property
    def timestamp(self) -> datetime:
        """`ts` as naive UTC, as the data contract's timestamps are."""
        return parse_ts(self.ts)


def parse_ts(text: str) -> datetime:
    """An ISO 8601 timestamp or date as naive UTC; ValueError says what was expected."""
    try:
        ts = datetime.fromisoformat(text.strip())
        if ts.tzinfo is not None:
            ts = ts.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):  # OverflowError: 0001-01-01T00:00+01:00 is before year 1
        raise ValueError(
            "not a timestamp (expected e.g. 2026-03-01, 2026-03-01T10:00:00 or "
            "2026-03-01T10:00:00Z)"
        ) from None
    return ts


class EventsRequest(_Strict):
    """`POST /events`: a batch of events, applied all or nothing."""

    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS)


class EventsResponse(BaseModel):
    accepted: int = Field(description="events stored by this request")
    duplicates: int = Field(description="events whose event_id was stored already")


class Scores(BaseModel):
    """The scores; null for a score whose model was not trained."""

    churn_probability: float | None
    satisfaction: float | None
    ltv: float | None = Field(
        description="lifetime value over objective.lifetime_months (without it: window_value)"
    )
    window_value: float | None = Field(
        default=None, description="expected revenue over the value outcome's label window"
    )


class ActionOut(BaseModel):
    action_id: str
    name: str
    script: str
    expected_value: float = Field(description="incremental value net of cost, in the currency")
    cost: float
    roi: float | None = Field(description="expected_value / cost; null when not finite")
    uplift: dict[str, float] = Field(description="predicted uplift per outcome")
    reasons: list[str]


class RecommendResponse(BaseModel):
    decision_id: str
    customer_id: str
    model_version: str
    scores: Scores
    actions: list[ActionOut]
    cold_start: bool = Field(description="the customer is not in the online store")
    control_group: bool = Field(description="a member of the global control group: no action")
    explored: bool = Field(description="the first action was chosen by exploration")
    propensity: float = Field(description="probability of the first action (or of none)")
    currency: str
    reason: str | None = Field(
        default=None,
        description="why no action is shown when consent or a contact limit across actions is "
        "the cause (e.g. the customer opted out of the channel); null otherwise",
    )


class ScoreResponse(BaseModel):
    customer_id: str
    model_version: str
    scores: Scores
    cold_start: bool


class FeedbackResponse(BaseModel):
    decision_id: str
    stored: bool


class Metadata(BaseModel):
    """`GET /metadata`: what the service is serving."""

    model_version: str
    trained_at: str
    training_as_of: list[str]
    metrics: dict[str, dict[str, float]]
    feature_version: str
    catalog_version: str
    actions: list[str]
    channels: list[str]
    currency: str
    store_as_of: str
    store_customers: int
    control_share: float
    exploration: float
