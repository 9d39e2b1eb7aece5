"""The service's settings, typed and loaded in one place: `NEXTBEST_*` environment variables.

`nextbest serve` turns its flags into these variables for the BentoML worker processes it starts;
the API key is a secret (never printed, never logged).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from training.errors import ConfigError

PREFIX = "NEXTBEST_"
ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


class ServingSettings(BaseModel):
    """Everything `nextbest serve` can be told; each field is `NEXTBEST_<FIELD>` in the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = Field(default=None, description="registry reference; None: @champion")
    bundle_dir: Path | None = Field(
        default=None,
        description="a bundle folder (nextbest export-bundle, or the one baked into a Bento): "
        "served instead of a registry reference, without MLflow",
    )
    challenger: str = Field(
        default="models:/nextbest@challenger",
        description="registry reference of the challenger bundle (used when challenger_share > 0 "
        "or shadow)",
    )
    challenger_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of customers (stable, by a salted hash of their id) whose decisions "
        "the challenger makes and shows; 0: none",
    )
    challenger_salt: str = Field(
        default="nextbest-challenger", min_length=1, description="change it to draw new arms"
    )
    shadow: bool = Field(
        default=False,
        description="the arm not shown (the challenger, for most customers) also decides every "
        "request; its decision is logged as shadow, never shown, never a contact",
    )
    online_store: Path = Field(default=Path("out/online_store.sqlite"))
    decision_log: Path = Field(
        default=Path("out/decision_log.sqlite"),
        description="the contact history's SQLite file, when no database URL is set",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="the contact history on PostgreSQL (postgresql://user:password@host:5432/db), "
        "shared by every replica; unset: the SQLite file `decision_log`",
    )
    event_store: Path = Field(
        default=Path("out/event_store.sqlite"),
        description="live events (POST /events) and the trigger outbox; kept across restarts",
    )
    live_precompute_ms: float = Field(
        default=20.0,
        ge=0,
        description="POST /events computes the features and uplift of the batch's stored "
        "customers, in batch order, for up to this long, and shares them with every worker, so "
        "their first request finds them ready; the others are computed on that request. 0: never",
    )
    now: datetime | None = Field(
        default=None,
        description="an ISO timestamp the service takes as the current time (replays, tests); "
        "unset: the wall clock",
    )
    log_synchronous: Literal["FULL", "NORMAL"] = Field(
        default="NORMAL",
        description="NORMAL: a logged decision survives a crash of the service (~0.1 ms a commit); "
        "FULL: also a power loss (an fsync per decision, ~4 ms on this machine's disk). On "
        "PostgreSQL: synchronous_commit off (NORMAL) or on (FULL)",
    )
    api_key: SecretStr | None = Field(default=None, description="set: every API call needs it")
    api_key_header: str = Field(
        default="X-API-Key", pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$", description="a token"
    )
    max_request_bytes: int = Field(default=64 * 1024, gt=0)
    workers: int = Field(default=2, ge=1)
    reload_seconds: float = Field(default=30.0, ge=0, description="champion poll; 0: never")
    request_deadline_seconds: float = Field(
        default=10.0, gt=0, description="a decision not made this long after arrival is dropped"
    )
    access_log: bool = Field(default=False, description="off: it costs ~20% throughput")
    tracing: bool = Field(
        default=False,
        description="on: BentoML's OpenTelemetry middleware makes spans of every request (its "
        "exporter and sample rate are BentoML's configuration); off: requests skip it",
    )
    cors_origins: str = Field(
        default="",
        description="comma-separated origins (https://desk.example.com) whose pages may call the "
        "API from a browser; empty: no cross-origin access (the default)",
    )

    @field_validator("bundle_dir")
    @classmethod
    def _one_bundle_source(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and info.data.get("model") is not None:
            raise ValueError(f"set it or {PREFIX}MODEL, not both")
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServingSettings:
        """Read the `NEXTBEST_*` variables; an invalid value is a one-line ConfigError."""
        env = os.environ if environ is None else environ
        key = PREFIX + "API_KEY"
        if key in env and not env[key].strip():
            raise ConfigError(
                f"{key} is set but empty: set a key, or unset it to run without authentication"
            )
        values = {
            name: env[PREFIX + name.upper()]
            for name in cls.model_fields
            if PREFIX + name.upper() in env
        }
        try:
            return cls.model_validate({k: v for k, v in values.items() if v != ""})
        except ValidationError as exc:
            error = exc.errors()[0]
            field = PREFIX + str(error["loc"][0]).upper() if error["loc"] else PREFIX
            raise ConfigError(f"{field}: {error['msg']}") from None

    def to_env(self) -> dict[str, str]:
        """The variables that reproduce these settings in a child process."""
        out = {}
        for name, value in self:
            if value is None:
                continue
            text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
            out[PREFIX + name.upper()] = text
        return out

    @field_validator("cors_origins")
    @classmethod
    def _origins(cls, value: str) -> str:
        origins = [o.strip() for o in value.split(",") if o.strip()]
        for origin in origins:
            if not ORIGIN.fullmatch(origin):
                raise ValueError(
                    f"{origin!r} is not an origin: scheme://host[:port], no path, e.g. "
                    "https://desk.example.com"
                )
        return ",".join(origins)

    @field_validator("now")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)  # no zone means UTC, as in the data contract
        return value

    @property
    def challenger_on(self) -> bool:
        """Whether the service loads a challenger at all."""
        return self.challenger_share > 0 or self.shadow

    def history_source(self) -> str | Path:
        """Where the contact history lives: the database URL when set, else the SQLite file."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return self.decision_log

    def clock(self) -> datetime:
        """The current time (aware, UTC): NEXTBEST_NOW when set, else the wall clock."""
        return self.now if self.now is not None else datetime.now(UTC)

    @property
    def allowed_origins(self) -> tuple[str, ...]:
        """The origins of NEXTBEST_CORS_ORIGINS; empty when cross-origin calls are off."""
        return tuple(o for o in self.cors_origins.split(",") if o)
