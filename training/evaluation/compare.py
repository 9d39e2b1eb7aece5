"""Two bundles' policies judged on the same held-out exposures: the paired difference of their values.

`nextbest promote` asks whether a candidate decides better than the champion. Both bundles decide for
the same rows (the evaluation customers' exposures of one data set, `evaluation_exposures`, which no
bundle trained on), each from its own features; both policies are valued by doubly-robust estimates
against the same nuisance outcome models and the same money weights (the candidate's objective and
scores), and their difference is taken row by row. The paired interval is far tighter than the
difference of two separately estimated values, so a real loss shows on a few thousand rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pandas as pd

from training.config import CONTROL
from training.data.exposures import build_exposure_set
from training.errors import NextbestError
from training.evaluation.decisions import (
    MIN_ROWS,
    decide,
    held_out_exposures,
    nuisance_outcomes,
    objective_weights,
)
from training.evaluation.value_estimates import LoggedOutcomes, row_values
from training.features.definition import categorical_names, to_matrix
from training.registry.bundle import Bundle
from training.uplift.metrics import _mean_ci

KEYS = ["customer_id", "as_of", "action_id"]


@dataclass(frozen=True)
class PolicyComparison:
    """DR values per customer, incremental over doing nothing, with 95% half-widths; `difference`
    is candidate minus champion, paired per row."""

    exposures: int
    currency: str
    candidate: float
    candidate_ci: float
    champion: float
    champion_ci: float
    difference: float
    difference_ci: float

    def metrics(self) -> dict[str, float]:
        """Flat metrics for MLflow (`promotion.*`)."""
        return {
            "promotion.candidate_value": self.candidate,
            "promotion.candidate_value_ci": self.candidate_ci,
            "promotion.champion_value": self.champion,
            "promotion.champion_value_ci": self.champion_ci,
            "promotion.value_difference": self.difference,
            "promotion.value_difference_ci": self.difference_ci,
            "promotion.exposures": float(self.exposures),
        }


def compare_policies(
    con: duckdb.DuckDBPyConnection, candidate: Bundle, champion: Bundle
) -> PolicyComparison:
    """Value both bundles' learned policies (rank 1 of the decision code) on the evaluation
    exposures of the data behind `con`; raise NextbestError when they cannot be compared."""
    for role, bundle in (("candidate", candidate), ("champion", champion)):
        if not bundle.uplift or not bundle.config.catalog.actions:
            raise NextbestError(f"promote: the {role} has no uplift models or no actions to judge")
    frame, held, exposed = held_out_exposures(con, candidate)
    if held.sum() < MIN_ROWS:
        raise NextbestError(f"promote: only {held.sum()} held-out exposures (need {MIN_ROWS})")
    rows = frame[held].reset_index(drop=True)
    names = list(candidate.builder.feature_names_)
    ours = decide(candidate, rows, to_matrix(candidate.prepare(rows), names), exposed)
    theirs = champion_arms(con, champion, rows, exposed, [CONTROL, *candidate.config.catalog.ids])
    arms = [CONTROL, *candidate.config.catalog.ids]
    weights = objective_weights(candidate, ours.scores, len(rows))
    categorical = set(categorical_names(rows, names))
    cats = [j for j, name in enumerate(names) if name in categorical]
    specs = {o: candidate.config.outcomes[o] for o in weights}
    treatment = rows["action_id"].map({a: i for i, a in enumerate(arms)})
    logged = LoggedOutcomes(
        np.asarray(treatment, dtype=np.int64),
        rows["propensity"].to_numpy(dtype=np.float64),
        {o: rows[o].to_numpy(dtype=np.float64) for o in specs},
        nuisance_outcomes(frame, names, held, specs, arms, cats),
        weights,
        np.r_[0.0, ours.cost],
    )
    return paired_values(ours.learned, theirs, logged, candidate.config.objective.currency)


def paired_values(
    candidate: np.ndarray, champion: np.ndarray, logged: LoggedOutcomes, currency: str = ""
) -> PolicyComparison:
    """Both policies' DR values over doing nothing and their per-row paired difference."""
    nothing = row_values(np.zeros_like(candidate), logged)
    ours, theirs = row_values(candidate, logged), row_values(champion, logged)
    a, b, d = _mean_ci(ours - nothing), _mean_ci(theirs - nothing), _mean_ci(ours - theirs)
    figures = (float(x) for x in (*a, *b, *d))
    return PolicyComparison(len(candidate), currency, *figures)


def champion_arms(
    con: duckdb.DuckDBPyConnection, champion: Bundle, rows: pd.DataFrame, exposed: list[str],
    arms: list[str],
) -> np.ndarray:  # fmt: skip
    """The champion's rank-1 arm for the same rows, from its own features, as an index into
    `arms` (the candidate's); an action the candidate's catalog lacks cannot be valued."""
    frame = build_exposure_set(con, champion.builder, champion.config).frame
    frame = frame.drop_duplicates(KEYS)
    mine = rows[KEYS].merge(frame, on=KEYS, how="left")
    if len(mine) != len(rows) or mine["propensity"].isna().any():
        raise NextbestError("promote: the champion's exposures do not line up with the candidate's")
    names = list(champion.builder.feature_names_)
    d = decide(champion, mine, to_matrix(champion.prepare(mine), names), exposed)
    theirs = np.asarray([CONTROL, *champion.config.catalog.ids])[d.learned]
    unknown = sorted(set(theirs.tolist()) - set(arms))
    if unknown:
        raise NextbestError(
            f"promote: the champion recommends {unknown}, which the candidate's catalog lacks"
        )
    index = {a: i for i, a in enumerate(arms)}
    return np.array([index[a] for a in theirs.tolist()], dtype=np.int64)
