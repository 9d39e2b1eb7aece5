"""Typed, validated configuration: the YAML of docs/config.md and its action catalog (docs/catalog.md), loaded in one place."""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Iterable
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from training.errors import ConfigError
from training.rules import EVENT_NAMES, Rule, RuleError, compile_rule, is_request_name

M = TypeVar("M", bound=BaseModel)


class FeatureSettings(BaseModel):
    """How raw events become features (optional `features:` block of the config; defaults suit most data)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    windows: tuple[int, ...] = Field(
        default=(7, 30, 90, 365), description="look-back windows, days"
    )
    contact_event_types: tuple[str, ...] = ("call", "chat")
    complaint_event_types: tuple[str, ...] = ("complaint",)
    purchase_event_type: str = "purchase"
    survey_event_types: tuple[str, ...] = ("nps", "csat")
    resolved_column: str = Field(
        default="resolved", description="optional boolean events column: was the contact resolved"
    )
    max_event_types: int = Field(
        default=40, description="most frequent event types kept as features"
    )
    max_channels: int = Field(default=20, description="most frequent channels kept as features")


# --- the configuration file (docs/config.md) --------------------------------------------------

DEMO_CONFIG = Path(__file__).resolve().parent / "demo" / "config.yaml"
Role = Literal["churn", "satisfaction", "value"]
#: the score each role's model serves, by the name rules, the API and the batch output use; the
#: value role's model predicts revenue over its label window (`window_value`)
SCORE_NAMES: dict[str, str] = {
    "churn": "churn_probability",
    "satisfaction": "satisfaction",
    "value": "window_value",
}
#: lifetime value over `objective.lifetime_months` (docs/lifetime.md); without a lifetime horizon
#: (and in bundles trained before it existed) it is the label-window revenue, as it always was
LTV_SCORE = "ltv"
WINDOW_VALUE_SCORE = SCORE_NAMES["value"]
#: the score roles in their fixed order, and the score columns of the API and the batch output
ROLES: tuple[str, ...] = tuple(SCORE_NAMES)
SCORE_COLUMNS: tuple[str, ...] = (
    "churn_probability",
    "satisfaction",
    LTV_SCORE,
    WINDOW_VALUE_SCORE,
)
#: the exposures contract's "no action": the arm every uplift is measured against
CONTROL = "control"
#: the optional exposures column of the greedy ranking's first action, shown or not (docs/data.md)
GREEDY_COLUMN = "greedy_action"
#: responses to offers as contract events (`export-feedback --as-events`): event type
#: `offer_<outcome>_<action id>`, outcome one of OFFER_OUTCOMES (docs/data.md)
OFFER_OUTCOMES = ("shown", "accepted", "declined", "ignored")


def offer_event_type(outcome: str, action_id: str) -> str:
    """The event type of an offer's outcome, e.g. offer_declined_retention_discount."""
    return f"offer_{outcome}_{action_id}"


Kind = Literal["any", "count", "sum", "last", "none"]
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_RESERVED_OUTCOMES = {"customer_id", "as_of"}


class _FieldProblem(ValueError):
    """A validation failure that knows its field path below the model raising it."""

    def __init__(self, loc: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.loc = loc


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Snapshots(_Model):
    """Training as-of dates: an explicit list, or "auto" (chosen from the data's time span)."""

    as_of: tuple[date, ...] | Literal["auto"] = "auto"
    observed_until: date | None = Field(
        default=None,
        description="end of the data export: outcomes are known before this date "
        "(default: the day after the last event)",
    )

    @field_validator("as_of", mode="plain")
    @classmethod
    def _dates_or_auto(cls, value: object) -> tuple[date, ...] | Literal["auto"]:
        if value == "auto":
            return "auto"
        if not isinstance(value, list | tuple) or not value:
            raise ValueError(
                f"must be a non-empty list of dates (YYYY-MM-DD) or 'auto' (got {value!r})"
            )
        try:
            dates = [_DATE.validate_python(item) for item in value]
        except ValidationError:
            bad = next(item for item in value if not _is_date(item))
            raise ValueError(f"not a date (YYYY-MM-DD): {bad!r}") from None
        return tuple(sorted(set(dates)))


_DATE: TypeAdapter[date] = TypeAdapter(date)


def _is_date(item: object) -> bool:
    try:
        _DATE.validate_python(item)
    except ValidationError:
        return False
    return True


class OutcomeSpec(_Model):
    """One outcome: events of `event_types` in the `horizon_days` after the as-of date, reduced by `kind`."""

    role: Role | None = None
    kind: Kind
    event_types: tuple[str, ...] = Field(min_length=1)
    horizon_days: int = Field(gt=0)


class Objective(_Model):
    """How uplift becomes money: which outcome is revenue, what avoided churn and satisfaction are worth."""

    value_outcome: str | None = Field(
        default=None, description="None: no outcome is money (a churn-only data set, say)"
    )
    retention_value: Literal["ltv"] | None = None
    lifetime_months: int | None = Field(
        default=None,
        ge=1,
        le=120,
        description="the horizon of `ltv`; None: `ltv` is the value outcome's label-window revenue",
    )
    discount_rate: float = Field(
        default=0.0, ge=0, lt=1, allow_inf_nan=False, description="annual, for `ltv`"
    )
    satisfaction_weight: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    outcome_values: dict[str, float] = Field(
        default_factory=dict,
        description="money per unit of uplift on other outcomes: {converted: 30.0} makes one "
        "more conversion worth 30 (a randomized test with a conversion outcome and no revenue)",
    )
    currency: str = Field(default="EUR", pattern=r"^[A-Z]{3}$")

    @field_validator("outcome_values")
    @classmethod
    def _finite(cls, values: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise ValueError(f"must be finite numbers (got {values[bad[0]]} for '{bad[0]}')")
        return values


class SuppressAfterDeclines(_Model):
    """`suppress_after_declines`: after `count` declines within `days` days, not offered."""

    count: int = Field(ge=1)
    days: int = Field(ge=1)


class Action(_Model):
    """One entry of the action catalog; only id, name and cost are required."""

    id: str
    name: str = Field(min_length=1)
    cost: float = Field(ge=0, allow_inf_nan=False)
    channels: tuple[str, ...] | None = Field(default=None, min_length=1)
    eligibility: str | None = None
    cooldown_days: int | None = Field(default=None, ge=0)
    max_per_90_days: int | None = Field(default=None, ge=1)
    batch_volume_cap: int | None = Field(default=None, ge=0)
    suppress_after_declines: SuppressAfterDeclines | None = None
    trigger: str | None = None
    script: str = ""

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z0-9_]+", value):
            raise ValueError(f"must use only a-z, 0-9 and _ (got {value!r})")
        if value == "control":
            raise ValueError("'control' is reserved for 'no action' in exposures")
        return value

    @field_validator("eligibility", "trigger")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_rule(value)
            except RuleError as exc:
                raise ValueError(str(exc)) from None
        return value

    # compiled once, then plain attribute reads (every decision reads them for every action)
    @cached_property
    def rule(self) -> Rule | None:
        """The compiled eligibility rule; None means always eligible."""
        return compile_rule(self.eligibility) if self.eligibility is not None else None

    @cached_property
    def trigger_rule(self) -> Rule | None:
        """The compiled trigger: when an ingested event makes it true, the service decides for
        the customer and puts the decision in the outbox (docs/catalog.md)."""
        return compile_rule(self.trigger) if self.trigger is not None else None

    @property
    def names_read(self) -> frozenset[str]:
        """Every name its eligibility rule and its trigger read."""
        rules = (self.rule, self.trigger_rule)
        return frozenset(n for r in rules if r is not None for n in r.names)

    def offered_on(self, channel: str) -> bool:
        """Whether the action may be offered on `channel` (no channel list means every channel)."""
        return self.channels is None or channel in self.channels


class Catalog(_Model):
    """The action catalog: every action the service may recommend (empty: scores only)."""

    actions: tuple[Action, ...] = ()

    @model_validator(mode="after")
    def _unique_ids(self) -> Catalog:
        first: dict[str, int] = {}
        for index, action in enumerate(self.actions):
            if action.id in first:
                where = f"actions[{first[action.id]}]"
                raise _FieldProblem(
                    ("actions", index, "id"), f"duplicate id '{action.id}' ({where})"
                )
            first[action.id] = index
        return self

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(action.id for action in self.actions)

    @cached_property
    def request_names(self) -> frozenset[str]:
        """Every request name (`channel`, `context_<key>`) an eligibility rule reads."""
        rules = [a.rule for a in self.actions if a.rule is not None]
        return frozenset(n for rule in rules for n in rule.request_names)

    def get(self, action_id: str) -> Action | None:
        """The action with this id, or None."""
        return next((action for action in self.actions if action.id == action_id), None)

    def __getitem__(self, action_id: str) -> Action:
        action = self.get(action_id)
        if action is None:
            raise KeyError(f"unknown action '{action_id}'")
        return action

    def __contains__(self, action_id: object) -> bool:
        return action_id in self.ids

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def version(self) -> str:
        """Stable content hash (12 hex digits): equal catalogs, however written, share a version."""
        normal = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(normal.encode()).hexdigest()[:12]


class Promotion(_Model):
    """The champion/challenger gate of `nextbest promote`."""

    tolerance: float = Field(
        default=0.01,
        ge=0,
        description="how much worse (absolute, on each score's main metric) a challenger may be",
    )
    max_value_loss: float = Field(
        default=0.0,
        ge=0,
        description="money per customer by which the candidate's policy value may fall below the "
        "champion's (paired DR on the same held-out exposures) before, with 95% confidence, "
        "the candidate is refused",
    )


class Decisioning(_Model):
    """The learning loop shared by the service and batch scoring (docs/api.md, docs/batch.md).

    A stable share of customers (by a salted hash of their id) is a global control group that never
    gets an action, and online decisions explore: with probability `exploration` a uniformly random
    eligible action replaces the best one. Both keep the logged propensities honest for retraining.
    """

    control_share: float = Field(
        default=0.05, ge=0, lt=1, description="share of customers held out as the global control"
    )
    control_salt: str = Field(
        default="nextbest-control", min_length=1, description="change it to draw a new control"
    )
    exploration: float = Field(
        default=0.05, ge=0, le=1, description="epsilon of epsilon-greedy, online decisions only"
    )
    trigger_cooldown_minutes: float = Field(
        default=60.0,
        ge=0,
        allow_inf_nan=False,
        description="after a trigger fired a decision for a customer, none fires for them again "
        "for this long (no storm of decisions from a burst of events)",
    )


class DriftSettings(_Model):
    """When a batch run's inputs or outputs count as drifted (docs/batch.md#drift), against the
    training reference and against the previous run."""

    psi: float = Field(
        default=0.2,
        gt=0,
        description="flag a feature or score whose population stability index exceeds this",
    )
    ks: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="flag a numeric feature or score whose KS distance exceeds this",
    )
    decision_mix: float = Field(
        default=0.1,
        gt=0,
        le=1,
        description="flag an action whose share of customers moved by more than this (absolute)",
    )
    bins: int = Field(default=20, ge=2, le=200, description="quantile bins per numeric column")


class TextSettings(_Model):
    """Text signals (optional `text:` block): the model fitted on texts paired with survey answers."""

    enabled: bool = Field(default=True, description="fit a text model when events carry text")
    topics: int = Field(default=10, ge=1, le=50, description="topics found without labels")
    folds: int = Field(default=5, ge=2, le=20, description="cross-fitting folds, by customer")
    context_days: int = Field(
        default=90, gt=0, description="texts this long before an as-of date learn its label"
    )
    min_pairs: int = Field(default=200, ge=1, description="fewer labelled texts: no text model")
    max_pairs: int = Field(
        default=50_000, ge=1, description="labelled texts the model learns from, at most"
    )


_CAP_KEY = re.compile(r"^max_per_([1-9][0-9]*)_days$")
_TOTAL_KEY = re.compile(r"^max_contacts_per_([1-9][0-9]*)_days$")
_CHANNEL = re.compile(r"^[A-Za-z0-9_]+$")
#: the name by which eligibility rules read a channel's effective consent (`consent_email`)
CONSENT_PREFIX = "consent_"


def _caps(extra: dict[str, Any] | None, pattern: re.Pattern[str], form: str) -> tuple[Cap, ...]:
    """The caps of `max_..._per_<N>_days: limit` keys, shortest window first; any other key or a
    limit that is not an integer >= 1 is a _FieldProblem naming the key."""
    caps = []
    for key, limit in (extra or {}).items():
        found = pattern.match(key)
        if found is None:
            raise _FieldProblem(
                (key,), f"unknown field (expected {form}, e.g. {form.replace('<N>', '7')})"
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _FieldProblem((key,), f"must be an integer >= 1 (got {limit!r})")
        caps.append(Cap(days=int(found.group(1)), limit=limit))
    return tuple(sorted(caps, key=lambda c: c.days))


class Cap(_Model):
    """At most `limit` contacts in any trailing `days` days (this one included)."""

    days: int = Field(ge=1)
    limit: int = Field(ge=1)


class ChannelPolicy(BaseModel):
    """`contact_policy.channels.<channel>`: `max_per_<N>_days: limit` keys, as many as wanted."""

    model_config = ConfigDict(extra="allow", frozen=True)

    @model_validator(mode="after")
    def _keys(self) -> ChannelPolicy:
        _caps(self.model_extra, _CAP_KEY, "max_per_<N>_days")
        return self

    @property
    def caps(self) -> tuple[Cap, ...]:
        return _caps(self.model_extra, _CAP_KEY, "max_per_<N>_days")


class ContactPolicy(BaseModel):
    """Limits across actions (docs/config.md): per channel, and over every action and channel
    (`max_contacts_per_<N>_days: limit`). Per-action limits live in the catalog."""

    model_config = ConfigDict(extra="allow", frozen=True)

    channels: dict[str, ChannelPolicy] = Field(default_factory=dict)

    @field_validator("channels")
    @classmethod
    def _channel_names(cls, channels: dict[str, ChannelPolicy]) -> dict[str, ChannelPolicy]:
        for name in channels:
            if not _CHANNEL.match(name):
                raise _FieldProblem((name,), "channel names use only letters, digits and _")
        return channels

    @model_validator(mode="after")
    def _keys(self) -> ContactPolicy:
        _caps(self.model_extra, _TOTAL_KEY, "max_contacts_per_<N>_days")
        return self

    @property
    def total_caps(self) -> tuple[Cap, ...]:
        """Caps on the customer's contacts of any action on any channel."""
        return _caps(self.model_extra, _TOTAL_KEY, "max_contacts_per_<N>_days")

    @property
    def empty(self) -> bool:
        return not self.total_caps and not any(c.caps for c in self.channels.values())


class Config(_Model):
    """The whole configuration; `catalog` is the loaded action catalog named by `actions`."""

    snapshots: Snapshots = Snapshots()
    outcomes: dict[str, OutcomeSpec] = Field(min_length=1)
    objective: Objective = Objective()
    actions: str | None = None
    features: FeatureSettings = FeatureSettings()
    promotion: Promotion = Promotion()
    decisioning: Decisioning = Decisioning()
    text: TextSettings = TextSettings()
    drift: DriftSettings = DriftSettings()
    contact_policy: ContactPolicy = ContactPolicy()
    consent: dict[str, str] = Field(
        default_factory=dict,
        description="channel -> boolean customer attribute: the customer agreed to be contacted "
        "on it (opt_in / opt_out events override it)",
    )
    catalog: Catalog = Field(default_factory=Catalog, description="filled by load_config")

    @field_validator("outcomes")
    @classmethod
    def _outcome_names(cls, outcomes: dict[str, OutcomeSpec]) -> dict[str, OutcomeSpec]:
        for name in outcomes:
            if not _IDENTIFIER.match(name):
                raise _FieldProblem(
                    (name,), "outcome names must be identifiers (letters, digits, _)"
                )
            if name in _RESERVED_OUTCOMES:
                raise _FieldProblem((name,), f"'{name}' is reserved; choose another outcome name")
        return outcomes

    @field_validator("consent")
    @classmethod
    def _consent_names(cls, consent: dict[str, str]) -> dict[str, str]:
        for channel, attribute in consent.items():
            if not _CHANNEL.match(channel):
                raise _FieldProblem((channel,), "channel names use only letters, digits and _")
            if not _IDENTIFIER.match(attribute):
                raise _FieldProblem(
                    (channel,), f"must name a customer attribute (a column name; got {attribute!r})"
                )
        return consent

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        owner: dict[str, str] = {}
        for name, spec in self.outcomes.items():
            if spec.role is not None and spec.role in owner:
                message = f"role '{spec.role}' is already used by outcome '{owner[spec.role]}'"
                raise _FieldProblem(("outcomes", name, "role"), message)
            if spec.role is not None:
                owner[spec.role] = name
        value = self.objective.value_outcome
        if value is not None and value not in self.outcomes:
            known = ", ".join(self.outcomes)
            message = f"names no outcome (got '{self.objective.value_outcome}'; outcomes: {known})"
            raise _FieldProblem(("objective", "value_outcome"), message)
        if self.objective.lifetime_months is not None and "value" not in owner:
            raise _FieldProblem(
                ("objective", "lifetime_months"), "needs an outcome with role 'value' (revenue)"
            )
        for name in self.objective.outcome_values:
            if name not in self.outcomes or name == value:
                why = "is the value_outcome already" if name == value else "names no outcome"
                known = ", ".join(self.outcomes)
                raise _FieldProblem(
                    ("objective", "outcome_values", name), f"{why} (outcomes: {known})"
                )
        return self

    @property
    def policy_channels(self) -> tuple[str, ...]:
        """Every channel the catalog, the channel caps or consent name, sorted."""
        named = {c for a in self.catalog.actions for c in a.channels or ()}
        return tuple(sorted(named | set(self.contact_policy.channels) | set(self.consent)))

    @property
    def consent_rule_names(self) -> tuple[str, ...]:
        """The names by which rules read consent (`consent_<channel>`): none without `consent`."""
        return tuple(f"{CONSENT_PREFIX}{c}" for c in self.policy_channels) if self.consent else ()

    def outcome_for_role(self, role: Role) -> tuple[str, OutcomeSpec] | None:
        """The (name, spec) of the outcome playing `role`, or None if no outcome has it."""
        return next(((n, s) for n, s in self.outcomes.items() if s.role == role), None)

    @property
    def max_horizon_days(self) -> int:
        """The longest label window: as-of dates later than data end minus this have censored labels."""
        return max(spec.horizon_days for spec in self.outcomes.values())


# --- loading: YAML -> validated models, every error one line naming file and field ------------


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe YAML loader that rejects duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}'", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_checked_timestamp(self, node: yaml.ScalarNode) -> object:
        """Dates such as 2026-02-31 become a YAML error with a line number, not a ValueError."""
        try:
            return self.construct_yaml_timestamp(node)
        except ValueError as exc:
            message = f"invalid date '{node.value}' ({exc})"
            raise yaml.constructor.ConstructorError(None, None, message, node.start_mark) from None


_UniqueKeyLoader.add_constructor(
    "tag:yaml.org,2002:timestamp", _UniqueKeyLoader.construct_checked_timestamp
)


def _read_mapping(path: Path, display: str) -> dict[str, Any]:
    """Read a YAML file whose top level must be a mapping."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{display}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{display}: cannot read ({exc})") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{display}: {line}invalid YAML ({exc.problem or exc.context})") from None
    except (yaml.YAMLError, ValueError) as exc:
        raise ConfigError(f"{display}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise ConfigError(f"{display}: the top level must be a mapping of fields (got {got})")
    return data


_FIELD_NAMES = sorted(
    {name for m in (Config, Snapshots, OutcomeSpec, Objective, Action, Catalog, FeatureSettings)
     for name in m.model_fields}
)  # fmt: skip


_BOUNDS = {
    "greater_than": (">", "gt"),
    "greater_than_equal": (">=", "ge"),
    "less_than": ("<", "lt"),
    "less_than_equal": ("<=", "le"),
}


def _path(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part != "[key]":
            text += f".{part}" if text else str(part)
    return text or "(top level)"


def _message(error: ErrorDetails) -> tuple[tuple[str | int, ...], str]:
    """Full field path and a readable message for one pydantic error."""
    loc, kind, ctx = tuple(error["loc"]), error["type"], error.get("ctx", {})
    cause = ctx.get("error")
    if isinstance(cause, _FieldProblem):
        return loc + cause.loc, str(cause)
    got = error.get("input")
    shown = (
        f" (got {got!r})"
        if isinstance(got, str | int | float | bool) and len(repr(got)) < 80
        else ""
    )
    if kind == "missing":
        return loc, "required field is missing"
    if kind == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _FIELD_NAMES, n=1)
        return loc, "unknown field" + (f" (did you mean '{close[0]}'?)" if close else "")
    if kind == "literal_error":
        expected = ", ".join(re.findall(r"'([^']*)'", str(ctx.get("expected", ""))))
        return loc, f"must be one of {expected}{shown}"
    if kind in {"model_type", "dict_type", "model_attributes_type"}:
        return loc, f"must be a mapping{shown}"
    if kind in {"list_type", "tuple_type"}:
        return loc, f"must be a list{shown}"
    if kind == "too_short":
        return loc, f"must have at least {ctx.get('min_length')} item(s)"
    if kind in _BOUNDS:
        symbol, key = _BOUNDS[kind]
        limit = ctx.get(key)
        limit = int(limit) if isinstance(limit, float) and limit.is_integer() else limit
        return loc, f"must be {symbol} {limit}{shown}"
    message = error["msg"].removeprefix("Value error, ")
    message = message[0].lower() + message[1:] if message else message
    return loc, message + ("" if kind == "value_error" else shown)


def _validate(model: type[M], data: dict[str, Any], display: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        loc, message = _message(exc.errors()[0])
        raise ConfigError(f"{display}: {_path(loc)}: {message}") from None


def load_catalog(path: Path | str) -> Catalog:
    """Load and validate an action catalog file (a mapping with an `actions:` list)."""
    return _validate(Catalog, _read_mapping(Path(path), str(path)), str(path))


def load_config(path: Path | str | None = None) -> Config:
    """Load the configuration (default: the packaged demo) with its action catalog resolved."""
    path = DEMO_CONFIG if path is None else Path(path)
    data = _read_mapping(path, str(path))
    if "catalog" in data:
        raise ConfigError(f"{path}: catalog: unknown field (list actions in the 'actions' file)")
    config = _validate(Config, data, str(path))
    if config.actions is None:
        return config
    catalog_path = path.parent / config.actions
    if not catalog_path.is_file():
        raise ConfigError(f"{path}: actions: file not found: {catalog_path}")
    return config.model_copy(update={"catalog": load_catalog(catalog_path)})


# --- checks against the data ------------------------------------------------------------------


def check_exposure_actions(catalog: Catalog, action_ids: Iterable[str]) -> None:
    """Fail if exposures name actions the catalog lacks (uplift for them could never be served)."""
    missing = sorted(set(action_ids) - set(catalog.ids) - {"control"})
    if missing:
        shown = ", ".join(f"'{a}'" for a in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise ConfigError(
            f"action catalog: exposures use action_id {shown} not in the catalog "
            "(add them to the actions file or drop those exposure rows)"
        )


def check_eligibility_names(catalog: Catalog, available: Iterable[str]) -> None:
    """Fail if an eligibility rule reads a name that is neither a feature, a score nor a request
    name (`channel`, `context_<key>`: any key may be sent)."""
    known = set(available)
    for action in catalog.actions:
        read = action.rule.names if action.rule is not None else frozenset()
        unknown = sorted(n for n in read - known if not is_request_name(n))
        if action.trigger_rule is not None and not unknown:
            unknown = sorted(action.trigger_rule.names - known - set(EVENT_NAMES))
            what = "trigger"
        else:
            what = "eligibility"
        if unknown:
            close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"action '{action.id}': {what} reads unknown name '{unknown[0]}'{hint}"
            )
