"""Nightly batch scoring (`nextbest score`): every current customer's scores as of a date, written
atomically. Customers who churned before the date are not scored: there is nobody left to act on.

The output directory belongs to the job: it holds `scores.parquet` (DESIGN.md §6), when the bundle
has uplift models and a non-empty catalog `actions.parquet` (every customer × eligible action, ranked
by expected value net of cost; see `actions_table`), and a small `_nextbest.json` manifest, and is replaced whole, so a killed job leaves the previous complete output
or none. A directory with other files in it is never replaced.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from serving.arbitration import Candidates, arbitrate, eligibility_mask
from serving.value import net_value
from training.atomic import atomic_directory
from training.contract import open_dataset, validate_dataset
from training.errors import NextbestError
from training.snapshots import active_spine, data_span

if TYPE_CHECKING:
    from training.bundle import Bundle

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


def actions_table(bundle: Bundle, features: pd.DataFrame, scores: pd.DataFrame) -> pd.DataFrame:
    """DESIGN.md §6 `actions`: one row per customer × eligible action, ranked as arbitration ranks.

    `features` are FeatureBuilder rows and `scores` the bundle's `score_frame` of them (same row
    order). Eligibility reads the features and scores by name; expected value is
    serving.value.net_value of the uplift predictions, with the trained scores (a score whose model
    was not trained counts as absent, not NaN). Every eligible action gets a row
    (`include_non_positive`), so rank 1 is the recommendation only when its value is positive.
    """
    catalog = bundle.config.catalog
    X = _matrix(bundle, features)
    uplift = bundle.uplift_matrix(X)
    trained = {str(c): scores[c].to_numpy(dtype=np.float64) for c in scores if c != "customer_id"}
    known = {name: value for name, value in trained.items() if not np.isnan(value).all()}
    cost = np.array([a.cost for a in catalog.actions], dtype=np.float64)
    value = net_value(uplift, known, cost, bundle.config.objective, bundle.config.outcomes)
    namespace = features.drop(columns=list(trained), errors="ignore").reset_index(drop=True)
    namespace = pd.concat([namespace, scores[list(trained)].reset_index(drop=True)], axis=1)
    eligible = eligibility_mask(catalog, namespace)
    ranking = arbitrate(
        Candidates(catalog.ids, cost, value.expected_value, eligible), include_non_positive=True
    )
    customer_ids = scores["customer_id"].to_numpy(dtype=object)
    table = pd.DataFrame(
        {
            "customer_id": customer_ids[ranking.customer].astype(str),
            "action_id": np.asarray(catalog.ids, dtype=object)[ranking.action].astype(str),
            "rank": ranking.rank,
            "expected_value": ranking.expected_value,
            "cost": cost[ranking.action],
        }
    )
    for outcome in bundle.config.outcomes:
        column = uplift.get(outcome)
        table[f"uplift_{outcome}"] = (
            np.nan if column is None else column[ranking.customer, ranking.action]
        )
    return table


def _matrix(bundle: Bundle, features: pd.DataFrame) -> np.ndarray:
    """The model matrix of FeatureBuilder rows, as the bundle's models read it."""
    from training.features import to_matrix

    return to_matrix(bundle.prepare(features), bundle.builder.feature_names_)


def score(data: Path, as_of: date, out: Path, model_ref: str | None = None) -> ScoreSummary:
    """Validate, load the bundle, compute features as of `as_of` and write the scores table."""
    from training.bundle import SCORE_COLUMNS, load_bundle

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
    actions = None
    if bundle.uplift and bundle.config.catalog.actions:
        actions = actions_table(bundle, features, scores[["customer_id", *SCORE_COLUMNS]])
    with atomic_directory(out) as tmp:
        scores.to_parquet(tmp / "scores.parquet", index=False)
        manifest = {"as_of": as_of.isoformat(), "model_version": version, "customers": len(scores)}
        if actions is not None:
            actions.to_parquet(tmp / "actions.parquet", index=False)
            manifest["actions"] = len(actions)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return ScoreSummary(len(scores), as_of, version, out)
