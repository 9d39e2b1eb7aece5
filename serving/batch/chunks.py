"""Chunk-level batch scoring: one chunk of customers' features in, its candidates frame out.

`score_chunk` is THE function both batch engines run (in-process for `--engine local`, inside
`map_partitions` on Dask workers for `--engine dask`): model matrix -> the three scores -> uplift
per outcome × action -> net value (training.policy.value) -> eligibility (training.policy.arbitration) -> global
control group (training.policy.control). It returns a *candidates frame*: one row per customer, with the
scores and, per catalog action, its eligibility, net value and uplifts in flat columns
(`candidate_column`), a plain DataFrame that Parquet, Dask and the network carry as it is.

`actions_table` turns a candidates frame into `actions` (docs/batch.md) with the SAME ranking code as
the online service (`training.policy.arbitration.arbitrate`, row by row equal to `rank_one`); it is cheap
(numpy over (n, k)), so it runs where the output is written, after the population-wide budget
allocation (training.policy.campaign) when one applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from training.config import CONSENT_PREFIX, CONTROL, SCORE_COLUMNS, Config
from training.features.definition import to_matrix
from training.policy.arbitration import Candidates, arbitrate, eligibility_mask
from training.policy.control import control_mask
from training.policy.value import net_value
from training.registry.bundle import Bundle

CONTROL_COLUMN = "control_group"
#: features-frame columns of a channel's effective consent, added by serving.batch.contacts;
#: rules read them as `consent_<channel>`, and the candidates frame keeps them
CONSENT_COLUMN = "consent:"
SELECTED_COLUMN = "selected"
ELIGIBLE, VALUE = "eligible", "expected_value"


def candidate_column(action_id: str, field: str) -> str:
    """The candidates-frame column of one action's field (`eligible`, `expected_value`, `uplift_<o>`)."""
    return f"{action_id}:{field}"


def has_actions(bundle: Bundle) -> bool:
    """Whether the bundle can rank actions: uplift models and a non-empty catalog."""
    return bool(bundle.uplift and bundle.config.catalog.actions)


def model_matrix(bundle: Bundle, features: pd.DataFrame) -> np.ndarray:
    """The model matrix of FeatureBuilder rows, as the bundle's models read it."""

    return to_matrix(bundle.prepare(features), bundle.builder.feature_names_)


def score_chunk(bundle: Bundle, features: pd.DataFrame) -> pd.DataFrame:
    """The candidates frame of FeatureBuilder rows (one chunk of customers, any row order).

    Eligibility rules read the features and the scores by name; a score whose model was not trained
    counts as absent for the net value (not NaN). Control-group customers keep their candidates
    here; `actions_table` never lists them.
    """
    config = bundle.config
    X = model_matrix(bundle, features)
    scores = bundle.score_matrix(X)
    ids = features["customer_id"].astype(str).reset_index(drop=True)
    frame = pd.DataFrame({"customer_id": ids, **{c: scores[c] for c in SCORE_COLUMNS}})
    share, salt = config.decisioning.control_share, config.decisioning.control_salt
    frame[CONTROL_COLUMN] = control_mask(ids, share, salt)
    if not has_actions(bundle):
        return frame
    uplift = bundle.uplift_matrix(X)
    known = {c: v for c, v in scores.items() if not np.isnan(v).all()}
    cost = np.array([a.cost for a in config.catalog.actions], dtype=np.float64)
    value = net_value(uplift, known, cost, config.objective, config.outcomes).expected_value
    consent = [c for c in features.columns if str(c).startswith(CONSENT_COLUMN)]
    namespace = features.drop(columns=[*SCORE_COLUMNS, *consent], errors="ignore")
    namespace = namespace.reset_index(drop=True)
    given = {c: features[c].to_numpy(dtype=bool) for c in consent}
    rule_names = {CONSENT_PREFIX + c.removeprefix(CONSENT_COLUMN): v for c, v in given.items()}
    inputs = pd.concat([namespace, frame], axis=1)
    if rule_names:
        inputs = pd.concat([inputs, pd.DataFrame(rule_names)], axis=1)
    eligible = eligibility_mask(config.catalog, inputs)
    columns: dict[str, NDArray[np.generic]] = {}
    for j, action in enumerate(config.catalog.ids):
        columns[candidate_column(action, ELIGIBLE)] = eligible[:, j]
        columns[candidate_column(action, VALUE)] = value[:, j]
        for outcome in config.outcomes:
            column = uplift.get(outcome)
            upl = np.full(len(frame), np.nan) if column is None else column[:, j]
            columns[candidate_column(action, f"uplift_{outcome}")] = upl
    columns |= given  # the consent the policy reads again (serving.batch.contacts)
    return pd.concat([frame, pd.DataFrame(columns)], axis=1)


def empty_candidates(bundle: Bundle) -> pd.DataFrame:
    """A zero-row candidates frame with the right columns and dtypes (Dask's `meta`)."""
    columns = {name: pd.Series([], dtype=np.float32) for name in bundle.builder.feature_names_}
    if bundle.config.consent:
        channels = bundle.config.policy_channels
        columns |= {f"{CONSENT_COLUMN}{c}": pd.Series([], dtype=bool) for c in channels}
    empty = pd.DataFrame({"customer_id": pd.Series([], dtype=object), **columns})
    return score_chunk(bundle, bundle.prepare(empty))


@dataclass(frozen=True)
class ChunkCandidates:
    """A candidates frame as arrays: what arbitration and the budget allocation read."""

    customer_id: NDArray[np.object_]  # (n,)
    control: NDArray[np.bool_]  # (n,)
    candidates: Candidates  # (n, k), control customers not allowed
    uplift: dict[str, NDArray[np.float64]]  # outcome -> (n, k)

    def allocatable(self) -> NDArray[np.float64]:
        """(n, k) net values where an action may be given, −inf elsewhere (allocate_budget's input)."""
        allowed = self.candidates.mask()
        return np.where(allowed, self.candidates.expected_value, -np.inf)


def unpack(frame: pd.DataFrame, config: Config) -> ChunkCandidates:
    """The arrays of a candidates frame, columns in catalog order."""
    ids = config.catalog.ids

    def block(field: str) -> NDArray[np.float64]:
        columns = [candidate_column(a, field) for a in ids]
        return frame[columns].to_numpy(dtype=np.float64).reshape(len(frame), len(ids))

    control = frame[CONTROL_COLUMN].to_numpy(dtype=bool)
    candidates = Candidates(
        action_ids=ids,
        cost=np.array([a.cost for a in config.catalog.actions], dtype=np.float64),
        expected_value=block(VALUE),
        eligible=block(ELIGIBLE) > 0,
        allowed=np.repeat(~control[:, None], len(ids), axis=1),
    )
    uplift = {o: block(f"uplift_{o}") for o in config.outcomes}
    return ChunkCandidates(frame["customer_id"].to_numpy(dtype=object), control, candidates, uplift)


def greedy_actions(chunk: ChunkCandidates) -> NDArray[np.object_]:
    """Each customer's greedy first action (`control` when nothing is worth doing), the control
    group included: rank 1 of `actions_table` for the others, and for a control-group customer
    the action they would have been given (the service's `Decision.greedy[0]`)."""
    c = chunk.candidates
    everyone = Candidates(c.action_ids, c.cost, c.expected_value, c.eligible)  # control allowed
    ranking = arbitrate(everyone, max_actions=1)
    first = np.full(len(chunk.customer_id), CONTROL, dtype=object)
    first[ranking.customer] = np.asarray(c.action_ids, dtype=object)[ranking.action]
    return first


def actions_table(
    chunk: ChunkCandidates, selected: NDArray[np.int64] | None = None
) -> pd.DataFrame:
    """`actions` (docs/batch.md) of one chunk: every eligible action of every customer not in the
    control group, ranked by `arbitrate` (`include_non_positive`: rank 1 is always worth doing).

    `selected` is the chosen action index per customer (−1: none) under the campaign's budget and
    volume caps; None means no constraint, so each customer's rank-1 action is selected. Columns:
    customer_id, action_id, rank, expected_value, cost, uplift_<outcome>..., selected.
    """
    c = chunk.candidates
    ranking = arbitrate(c, include_non_positive=True)
    table = pd.DataFrame(
        {
            "customer_id": chunk.customer_id[ranking.customer].astype(str),
            "action_id": np.asarray(c.action_ids, dtype=object)[ranking.action].astype(str),
            "rank": ranking.rank,
            "expected_value": ranking.expected_value,
            "cost": c.cost[ranking.action],
        }
    )
    for outcome, column in chunk.uplift.items():
        table[f"uplift_{outcome}"] = column[ranking.customer, ranking.action]
    chosen = ranking.rank == 1 if selected is None else selected[ranking.customer] == ranking.action
    table[SELECTED_COLUMN] = chosen
    return table


def scores_table(frame: pd.DataFrame, model_version: str, as_of: date) -> pd.DataFrame:
    """`scores` (docs/batch.md) of one chunk, plus `control_group` (True: never given an action)."""
    table = frame[["customer_id", *SCORE_COLUMNS]].copy()
    table["model_version"] = model_version
    table["as_of"] = pd.Timestamp(as_of)
    table[CONTROL_COLUMN] = frame[CONTROL_COLUMN].to_numpy(dtype=bool)
    return table
