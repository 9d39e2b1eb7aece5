"""Who batch scoring covers and in which chunks: the active customers as of a date, cut into
customer-id ranges, and each range's features computed by DuckDB.

Chunks are contiguous, sorted ranges of customer_id (quantiles of the active ids), so the plan and
the row order depend only on the data: re-runs write the same rows in the same order. Ranges also
let DuckDB skip the row groups of other customers when events are stored by customer, and they
bound memory: one chunk's features and scores live at a time, whatever the population's size.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Protocol

import duckdb
import pandas as pd

from training.config import Config
from training.data.snapshots import active_spine, count_active
from training.features.definition import FeatureBuilder
from training.features.sql import quote_literal
from training.features.text_cache import TextScoreCache

ACTIVE = "_nextbest_active"
CHUNK = "_nextbest_chunk"


@dataclass(frozen=True)
class ChunkRange:
    """Customers with low <= customer_id < high (None: unbounded), the index-th chunk of a plan."""

    index: int
    low: str | None
    high: str | None

    def where(self, column: str = "customer_id") -> str:
        """SQL condition selecting the range."""
        conds = ["true"]
        if self.low is not None:
            conds.append(f"{column} >= {quote_literal(self.low)}")
        if self.high is not None:
            conds.append(f"{column} < {quote_literal(self.high)}")
        return " AND ".join(conds)


@dataclass(frozen=True)
class Population:
    """The active customers as of a date (temp table ACTIVE) and their chunk plan."""

    customers: int
    chunks: list[ChunkRange]


def create_active(con: duckdb.DuckDBPyConnection, config: Config, as_of: date) -> int:
    """Create the ACTIVE spine table (customers still customers at `as_of`); its row count, never 0."""
    churn = config.outcome_for_role("churn")
    spine = active_spine(con, as_of, churn and churn[1])
    con.execute(f"CREATE OR REPLACE TEMP TABLE {ACTIVE} AS {spine}")
    return count_active(con, ACTIVE, as_of)


def plan_population(
    con: duckdb.DuckDBPyConnection, config: Config, as_of: date, chunk_customers: int
) -> Population:
    """Create the ACTIVE spine (customers still customers at `as_of`) and cut it into ranges of
    about `chunk_customers` each."""
    customers = create_active(con, config, as_of)
    k = max(1, -(-int(customers) // chunk_customers))  # ceil
    if k == 1:
        return Population(int(customers), [ChunkRange(0, None, None)])
    cuts = [j / k for j in range(1, k)]
    [(edges,)] = con.execute(f"SELECT quantile_disc(customer_id, {cuts}) FROM {ACTIVE}").fetchall()
    bounds = sorted(set(edges))
    lows: list[str | None] = [None, *bounds]
    highs: list[str | None] = [*bounds, None]
    ranges = [ChunkRange(i, lo, hi) for i, (lo, hi) in enumerate(zip(lows, highs, strict=True))]
    return Population(int(customers), ranges)


def chunk_features(
    con: duckdb.DuckDBPyConnection,
    builder: FeatureBuilder,
    chunk: ChunkRange,
    text_cache: TextScoreCache | None = None,
) -> pd.DataFrame:
    """FeatureBuilder rows of one chunk's active customers, sorted by customer_id (texts scored
    through `text_cache` when given: only the ones it does not hold)."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {CHUNK} AS SELECT customer_id, as_of FROM {ACTIVE} "
        f"WHERE {chunk.where()} ORDER BY customer_id"
    )
    try:
        return builder.transform(con, spine=CHUNK, text_cache=text_cache)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {CHUNK}")


class AddsConsent(Protocol):
    def with_consent(self, features: pd.DataFrame) -> pd.DataFrame: ...


def iter_features(
    con: duckdb.DuckDBPyConnection,
    builder: FeatureBuilder,
    population: Population,
    policy: AddsConsent | None = None,
    text_cache: TextScoreCache | None = None,
) -> Iterator[tuple[ChunkRange, pd.DataFrame]]:
    """Every chunk's features, in plan order (with its customers' consent, given a policy:
    serving.batch.contacts.ChunkPolicy)."""
    for chunk in population.chunks:
        features = chunk_features(con, builder, chunk, text_cache)
        yield chunk, features if policy is None else policy.with_consent(features)


Watch = Callable[[pd.DataFrame], None]


def watched(
    chunks: Iterator[tuple[ChunkRange, pd.DataFrame]], watch: Watch | None
) -> Iterator[tuple[ChunkRange, pd.DataFrame]]:
    """The same chunks, each one's features shown to `watch` (the drift profile) on the way."""
    for chunk, features in chunks:
        if watch is not None:
            watch(features)
        yield chunk, features
