"""Converters from real public data sets into the input contract (docs/data.md), each with a config.

Each importer is a pure function from the source frame to contract tables, plus thin I/O that reads
the source and writes the data set directory atomically (a crash leaves the old directory or none).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Mapping
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from training.data.contract import Dataset, open_dataset
from training.errors import NextbestError

TELCO_ATTRIBUTES = (
    "gender",
    "SeniorCitizen",
    "Partner",
    "Dependents",
    "tenure",
    "PhoneService",
    "MultipleLines",
    "InternetService",
    "OnlineSecurity",
    "OnlineBackup",
    "DeviceProtection",
    "TechSupport",
    "StreamingTV",
    "StreamingMovies",
    "Contract",
    "PaperlessBilling",
    "PaymentMethod",
    "MonthlyCharges",
    "TotalCharges",
)
TELCO_HORIZON_DAYS = 90
# Hillstrom's pre-campaign attributes; its `channel` (where they bought last year) is renamed so it
# is not mistaken for the events' channel.
HILLSTROM_ATTRIBUTES = {
    "recency": "recency",
    "history_segment": "history_segment",
    "history": "history",
    "mens": "mens",
    "womens": "womens",
    "zip_code": "zip_code",
    "newbie": "newbie",
    "channel": "purchase_channel",
}
HILLSTROM_ARMS = {
    "Mens E-Mail": "mens_email",
    "Womens E-Mail": "womens_email",
    "No E-Mail": "control",
}
HILLSTROM_HORIZON_DAYS = 14
HILLSTROM_ACTIONS = [
    {"id": "mens_email", "name": "Men's merchandise e-mail", "cost": 0.1, "channels": ["email"]},
    {
        "id": "womens_email",
        "name": "Women's merchandise e-mail",
        "cost": 0.1,
        "channels": ["email"],
    },
]
AIRLINE_COLUMNS = ("tweet_id", "airline_sentiment", "negativereason", "airline", "text",
                   "tweet_created")  # fmt: skip
# the human sentiment label as a CSAT answer (1-5): negative, neutral, positive
AIRLINE_CSAT = {"negative": 1.0, "neutral": 3.0, "positive": 5.0}
AIRLINE_HORIZON_DAYS = 4  # as of 2015-02-20, observed to the last tweet day
OUTPUT_FILES = {
    "customers.parquet",
    "events.parquet",
    "exposures.parquet",
    "config.yaml",
    "actions.yaml",
}
EVENT_COLUMNS = ["customer_id", "ts", "channel", "event_type", "value"]


# ---------------------------------------------------------------------------------------------
# IBM Telco customer churn


def import_telco(src_csv: Path, out_dir: Path, snapshot: date = date(2026, 1, 1)) -> Dataset:
    """IBM Telco churn -> customers (19 attributes) + one `churn` event inside the 90 days after
    `snapshot` per churned customer, and a config that trains churn as of `snapshot`."""
    raw = _read_source(src_csv, ("customerID", *TELCO_ATTRIBUTES, "Churn"), "IBM Telco churn")
    tables = telco_tables(raw, snapshot)
    _write_dataset(Path(out_dir), tables, telco_config(snapshot), actions=[])
    return open_dataset(out_dir)


def telco_tables(raw: pd.DataFrame, snapshot: date) -> dict[str, pd.DataFrame]:
    """The contract tables from the Telco frame (all columns read as text)."""
    _require_values(raw, "Churn", {"Yes", "No"}, "Telco")
    customers = raw[["customerID", *TELCO_ATTRIBUTES]].rename(columns={"customerID": "customer_id"})
    for column in ("SeniorCitizen", "tenure"):
        customers[column] = pd.to_numeric(customers[column]).astype("int64")
    for column in ("MonthlyCharges", "TotalCharges"):  # TotalCharges is blank for new customers
        text = customers[column].str.strip()
        customers[column] = pd.to_numeric(text.where(text != "")).astype("float64")
    churned = customers.loc[raw["Churn"] == "Yes", "customer_id"]
    offset = _stable_hash(churned) % (TELCO_HORIZON_DAYS - 1) + 1  # day 1..89 after the snapshot
    events = _events(churned, _at(snapshot, days=offset), "account", "churn")
    return {"customers": customers.reset_index(drop=True), "events": events}


def telco_config(snapshot: date) -> dict[str, Any]:
    """Config (docs/config.md) for the Telco data: churn within 90 days of the snapshot."""
    churn = {
        "role": "churn",
        "kind": "any",
        "event_types": ["churn"],
        "horizon_days": TELCO_HORIZON_DAYS,
    }
    return {
        "snapshots": {
            "as_of": [snapshot],
            "observed_until": snapshot + timedelta(days=TELCO_HORIZON_DAYS),
        },
        "outcomes": {"churn": churn},
        "objective": {"currency": "USD"},
        "actions": "actions.yaml",
    }


# ---------------------------------------------------------------------------------------------
# Hillstrom e-mail test


def import_hillstrom(
    src_csv: Path, out_dir: Path, campaign_date: date = date(2008, 3, 1)
) -> Dataset:
    """Hillstrom's randomized e-mail test -> customers, one exposure each (mens_email, womens_email
    or control, propensity 1/3) and visit / purchase events in the two weeks after the campaign."""
    columns = (*HILLSTROM_ATTRIBUTES, "segment", "visit", "conversion", "spend")
    raw = _read_source(src_csv, columns, "Hillstrom e-mail test")
    tables = hillstrom_tables(raw, campaign_date)
    config = hillstrom_config(campaign_date)
    _write_dataset(Path(out_dir), tables, config, actions=HILLSTROM_ACTIONS)
    return open_dataset(out_dir)


def hillstrom_tables(raw: pd.DataFrame, campaign_date: date) -> dict[str, pd.DataFrame]:
    """The contract tables from the Hillstrom frame (all columns read as text)."""
    _require_values(raw, "segment", set(HILLSTROM_ARMS), "Hillstrom")
    ids = "H" + pd.Series(np.arange(1, len(raw) + 1)).astype("str")
    customers = raw[list(HILLSTROM_ATTRIBUTES)].rename(columns=HILLSTROM_ATTRIBUTES)
    for column in ("recency", "mens", "womens", "newbie"):
        customers[column] = pd.to_numeric(customers[column]).astype("int64")
    customers["history"] = pd.to_numeric(customers["history"]).astype("float64")
    customers.insert(0, "customer_id", ids.to_numpy())
    exposures = pd.DataFrame(
        {
            "customer_id": ids,
            "ts": _at(campaign_date, days=np.zeros(len(raw), dtype=np.int64)),
            "action_id": raw["segment"].map(HILLSTROM_ARMS).astype("str").to_numpy(),
            "propensity": np.full(len(raw), 1 / 3),
        }
    )
    return {
        "customers": customers.reset_index(drop=True),
        "events": _hillstrom_events(raw, ids, campaign_date),
        "exposures": exposures,
    }


def _hillstrom_events(raw: pd.DataFrame, ids: pd.Series, campaign_date: date) -> pd.DataFrame:
    """A visit (and for converters a purchase worth `spend` 30 minutes later) on a deterministic
    day 0..12 after the campaign at 08:00-19:00, so strictly after the exposure and within 14 days."""
    h = _stable_hash(ids)
    visit_ts = _at(campaign_date, days=h % (HILLSTROM_HORIZON_DAYS - 1), hours=8 + (h >> 8) % 12)
    visited = pd.to_numeric(raw["visit"]).to_numpy() == 1
    converted = pd.to_numeric(raw["conversion"]).to_numpy() == 1
    visits = _events(ids[visited], visit_ts[visited], "web", "visit")
    purchase_ts = visit_ts[converted] + np.timedelta64(30, "m")
    purchases = _events(ids[converted], purchase_ts, "web", "purchase")
    purchases["value"] = pd.to_numeric(raw.loc[converted, "spend"]).to_numpy(dtype="float64")
    events = pd.concat([visits, purchases], ignore_index=True)
    return events.sort_values(["ts", "customer_id"], ignore_index=True)


def hillstrom_config(campaign_date: date) -> dict[str, Any]:
    """Config (docs/config.md) for Hillstrom: visit, conversion and spend in the 14 days after."""

    def outcome(kind: str, event_type: str, role: str | None = None) -> dict[str, Any]:
        head = {"role": role} if role else {}
        spec = {"kind": kind, "event_types": [event_type], "horizon_days": HILLSTROM_HORIZON_DAYS}
        return head | spec

    return {
        "snapshots": {
            "as_of": [campaign_date],
            "observed_until": campaign_date + timedelta(days=HILLSTROM_HORIZON_DAYS),
        },
        "outcomes": {
            "visit": outcome("any", "visit"),
            "conversion": outcome("any", "purchase"),
            "value": outcome("sum", "purchase", role="value"),
        },
        "objective": {"value_outcome": "value", "currency": "USD"},
        "actions": "actions.yaml",
    }


# ---------------------------------------------------------------------------------------------
# Twitter US airline sentiment


def import_airline_tweets(src_csv: Path, out_dir: Path) -> Dataset:
    """Airline tweets -> one customer per tweet (the copy has no author), the airline as an
    attribute, and the tweet as the comment of a `csat` answer: 1 negative, 3 neutral, 5 positive."""
    raw = _read_source(src_csv, AIRLINE_COLUMNS, "Twitter US airline sentiment")
    tables = airline_tweets_tables(raw)
    _write_dataset(Path(out_dir), tables, airline_tweets_config(), actions=[])
    return open_dataset(out_dir)


def airline_tweets_tables(raw: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The contract tables from the tweets frame (all columns read as text); the human reason for
    negatives is left out of the contract (it is what topics are judged against)."""
    _require_values(raw, "airline_sentiment", set(AIRLINE_CSAT), "airline tweets")
    ts = pd.to_datetime(raw["tweet_created"], format="%m/%d/%Y %H:%M", errors="coerce")
    if ts.isna().any():
        row = int(np.flatnonzero(ts.isna().to_numpy())[0])
        raise NextbestError(
            f"airline tweets source, column 'tweet_created': not a M/D/YYYY H:MM time "
            f"({raw['tweet_created'].iloc[row]!r}, row {row + 2} of the file)"
        )
    ids = "W" + pd.Series(np.arange(1, len(raw) + 1)).astype("str")
    customers = pd.DataFrame({"customer_id": ids, "airline": raw["airline"].astype("str")})
    events = _events(ids, ts.to_numpy(dtype="datetime64[us]"), "twitter", "csat")
    events["value"] = raw["airline_sentiment"].map(AIRLINE_CSAT).to_numpy(dtype="float64")
    events["text"] = raw["text"].astype("str").to_numpy()
    return {
        "customers": customers,
        "events": events.sort_values(["ts", "customer_id"], ignore_index=True),
    }


def airline_tweets_config() -> dict[str, Any]:
    """Config for the tweets: satisfaction is the CSAT answer; text learns from the comments."""
    csat = {"role": "satisfaction", "kind": "last", "event_types": ["csat"],
            "horizon_days": AIRLINE_HORIZON_DAYS}  # fmt: skip
    return {
        "snapshots": {"as_of": [date(2015, 2, 20)], "observed_until": date(2015, 2, 25)},
        "outcomes": {"satisfaction": csat},
        "objective": {"currency": "USD"},
        "actions": "actions.yaml",
    }


# ---------------------------------------------------------------------------------------------
# shared pieces


def _events(ids: pd.Series, ts: np.ndarray, channel: str, event_type: str) -> pd.DataFrame:
    """Events of one type and channel, without value, in the contract's column order."""
    n = len(ids)
    return pd.DataFrame(
        {
            "customer_id": pd.Series(ids.to_numpy(), dtype="str"),
            "ts": ts,
            "channel": pd.Series([channel] * n, dtype="str"),
            "event_type": pd.Series([event_type] * n, dtype="str"),
            "value": np.full(n, np.nan),
        },
        columns=EVENT_COLUMNS,
    )


def _at(day: date, days: np.ndarray, hours: np.ndarray | int = 0) -> np.ndarray:
    """Timestamps (microseconds) at midnight of `day` plus whole days and hours."""
    start = np.datetime64(day, "us")
    return start + days.astype("timedelta64[D]") + np.asarray(hours).astype("timedelta64[h]")


def _stable_hash(ids: pd.Series) -> np.ndarray:
    """A deterministic 64-bit hash per id (pandas' fixed-key SipHash), for reproducible offsets."""
    hashed = pd.util.hash_pandas_object(ids.astype("str"), index=False).to_numpy()
    return (hashed >> np.uint64(1)).astype(np.int64)  # non-negative, plain integers


def _require_values(raw: pd.DataFrame, column: str, allowed: set[str], source: str) -> None:
    bad = raw.loc[~raw[column].isin(allowed), column]
    if len(bad):
        raise NextbestError(
            f"{source} source, column '{column}': unexpected value {bad.iloc[0]!r} "
            f"(expected one of {sorted(allowed)}, row {bad.index[0] + 2} of the file)"
        )


def _read_source(src: Path, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    """The source CSV as text (ids keep leading zeros), after checking it is the expected file."""
    src = Path(src)
    if not src.is_file():
        raise NextbestError(f"{src}: source file not found")
    raw = pd.read_csv(src, dtype="str", keep_default_na=False)
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise NextbestError(f"{src.name}: not the {what} file (missing columns: {missing})")
    return raw


def _write_dataset(
    out_dir: Path,
    tables: Mapping[str, pd.DataFrame],
    config: dict[str, Any],
    actions: list[dict[str, Any]],
) -> None:
    """Write Parquet tables and the YAMLs into a temporary sibling directory, then swap it in."""
    out_dir = out_dir.absolute()
    texts = {"config.yaml": _yaml(config), "actions.yaml": _yaml({"actions": actions})}
    _check_replaceable(out_dir, texts)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        for name, frame in tables.items():
            frame.to_parquet(tmp / f"{name}.parquet", index=False)
        for name, text in texts.items():
            (tmp / name).write_text(text)
        _swap_in(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _check_replaceable(out_dir: Path, texts: Mapping[str, str]) -> None:
    """Only a missing or empty directory, or one holding a previous import of the same kind with
    its YAMLs as written, may be replaced: not a user's files, an edited config, or another data
    set's import (whose config differs)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise NextbestError(f"{out_dir}: exists and is not a directory")
    if not out_dir.is_dir():
        return
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name not in OUTPUT_FILES)
    if foreign:
        raise NextbestError(
            f"{out_dir}: refusing to replace a directory with files the importer did not write "
            f"({', '.join(foreign[:5])})"
        )
    for name, text in texts.items():
        if (out_dir / name).is_file() and (out_dir / name).read_text() != text:
            raise NextbestError(
                f"{out_dir}: refusing to replace it: its {name} is not the one this import "
                "writes (edited, or another data set's import); remove it or choose another --out"
            )


def _swap_in(tmp: Path, out_dir: Path) -> None:
    """Replace out_dir by tmp with renames, so readers see the old or the new data set."""
    if not out_dir.exists():
        tmp.rename(out_dir)
        return
    old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
    out_dir.rename(old)
    try:
        tmp.rename(out_dir)
    except BaseException:
        old.rename(out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _yaml(data: dict[str, Any]) -> str:
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True)
    return "# written by nextbest's importer (training/importers.py); edit freely\n" + body
