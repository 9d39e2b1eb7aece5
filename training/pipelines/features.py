"""`nextbest features`: point-in-time features of every customer as of one date, written to Parquet."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import duckdb

from training.atomic import atomic_file
from training.config import load_config
from training.data.contract import open_dataset, validate_dataset
from training.features.definition import FeatureBuilder


def default_as_of(con: duckdb.DuckDBPyConnection) -> date:
    """The day after the last event: "today" for a data set exported last night."""
    [(last,)] = con.execute("SELECT max(ts) FROM events").fetchall()
    return (last.date() + timedelta(days=1)) if last is not None else date.today()


def write_features(data: Path, out_file: Path, config: Path | None, as_of: date | None) -> str:
    """Validate the data set, fit the feature definition on it and write the features atomically."""
    validate_dataset(data)
    settings = load_config(config).features
    with open_dataset(data).connect() as con:
        as_of = as_of or default_as_of(con)
        frame = FeatureBuilder(settings).fit(con).transform(con, as_of=as_of)
    with atomic_file(out_file) as tmp:
        frame.to_parquet(tmp, index=False)
    return (
        f"wrote features of {len(frame):,} customers as of {as_of}: "
        f"{frame.shape[1] - 2} features to {out_file}"
    )
