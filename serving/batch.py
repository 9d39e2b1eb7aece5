"""Nightly batch scoring (`nextbest score`): every current customer's scores as of a date, written
atomically. Customers who churned before the date are not scored: there is nobody left to act on.

The output directory belongs to the job: it holds `scores.parquet` (DESIGN.md §6) and a small
`_nextbest.json` manifest, and is replaced whole, so a killed job leaves the previous complete output
or none. A directory with other files in it is never replaced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd

from training.atomic import atomic_directory
from training.contract import open_dataset, validate_dataset
from training.errors import NextbestError
from training.snapshots import active_spine, data_span

MANIFEST = "_nextbest.json"
OUTPUT_FILES = {"scores.parquet", "actions.parquet", MANIFEST}


@dataclass(frozen=True)
class ScoreSummary:
    customers: int
    as_of: date
    model_version: str
    out: Path


def check_output_dir(out: Path) -> None:
    """Refuse to replace a directory that holds anything but a previous nextbest output."""
    if out.exists() and (not out.is_dir() or set(p.name for p in out.iterdir()) - OUTPUT_FILES):
        raise NextbestError(
            f"{out}: exists and holds files nextbest did not write; choose an empty or new --out"
        )


def check_as_of(as_of: date, start: datetime | None, observed_until: datetime | None) -> None:
    """Scores need history before the date and no date beyond the day after the last event."""
    if start is None or observed_until is None:
        return
    first, last = start.date() + timedelta(days=1), observed_until.date()
    if not first <= as_of <= last:
        raise NextbestError(
            f"--as-of {as_of}: outside the data's range; events run from {start:%Y-%m-%d} to "
            f"{observed_until - timedelta(days=1):%Y-%m-%d}, so use a date in {first}..{last}"
        )


def score(data: Path, as_of: date, out: Path, model_ref: str | None = None) -> ScoreSummary:
    """Validate, load the bundle, compute features as of `as_of` and write the scores table."""
    from training.bundle import load_bundle

    check_output_dir(out)
    bundle = load_bundle(model_ref)
    validate_dataset(data, known_actions=bundle.config.catalog.ids)
    with open_dataset(data).connect() as con:
        span = data_span(con, bundle.config)
        check_as_of(as_of, span.start, span.observed_until)
        churn = bundle.config.outcome_for_role("churn")
        con.execute(f"CREATE TEMP TABLE _active AS {active_spine(con, as_of, churn and churn[1])}")
        features = bundle.builder.transform(con, spine="_active")
    scores = bundle.score_frame(features)
    version = bundle.version or ""
    scores["model_version"] = version
    scores["as_of"] = pd.Timestamp(as_of)
    with atomic_directory(out) as tmp:
        scores.to_parquet(tmp / "scores.parquet", index=False)
        manifest = {"as_of": as_of.isoformat(), "model_version": version, "customers": len(scores)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return ScoreSummary(len(scores), as_of, version, out)
