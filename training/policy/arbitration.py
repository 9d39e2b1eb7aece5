"""Arbitration: which actions to recommend, in which order, shared by the online service and batch.

Priority is one explicit quantity, the expected incremental value net of cost (training.policy.value), over
the actions a customer may receive: eligible by the catalog's rules, offered on the channel, allowed
by the contact policy (cool-down and frequency caps, computed elsewhere) and not excluded.

- "Do nothing" is always a candidate, worth 0: rank 1 is the best action only if its expected value is
  positive. Actions worth ≤ 0 are listed only on request (`include_non_positive`), ranked *below* the
  implicit do-nothing, so their rank is their position + 1 and rank 1 is never one of them.
- Non-finite values (NaN from a missing input, ±inf) are never ranked.
- Ties are broken deterministically: higher value, then lower cost, then catalog order.

`rank_one` is the online form (one customer, plain numpy on (k,) arrays, microseconds); `arbitrate`
is the vectorised batch form and gives, row by row, exactly `rank_one`'s answer (a test checks it).
`allocate_budget` chooses at most one action per customer under a total budget and per-action volume
caps (batch campaigns); `investment_curve` is cumulative value against spend in the greedy's order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from training.config import Catalog
from training.policy.value import roi as roi_of

BoolArray = NDArray[np.bool_]
FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


class UnknownActionError(ValueError):
    """An action id (in `exclude`, say) is not in the catalog; the service answers 4xx with it."""


# --- which actions a customer may receive -----------------------------------------------------


def _batch_size(namespace: Mapping[str, object] | pd.DataFrame) -> int | None:
    """Rows in a batch namespace; None when every value is a scalar (one online customer)."""
    if isinstance(namespace, pd.DataFrame):
        return len(namespace)
    for value in namespace.values():
        if np.ndim(value) >= 1:  # type: ignore[arg-type]
            return len(value)  # type: ignore[arg-type]
    return None


def eligibility_mask(
    catalog: Catalog,
    namespace: Mapping[str, object] | pd.DataFrame,
    channel: str | None = None,
) -> BoolArray:
    """Eligibility of every catalog action by its rule and channel fit: (n, k), or (k,) for scalars.

    `namespace` holds features and scores by name (a DataFrame or a mapping of columns for a batch,
    a mapping of scalars for one customer). A rule whose result is unknown (missing input) is not
    eligible (training.rules); `channel=None` skips the channel check (batch over every channel).
    """
    namespace = _with_request_names(catalog, namespace)
    n = _batch_size(namespace)
    shape = (len(catalog.actions),) if n is None else (n, len(catalog.actions))
    mask = np.ones(shape, dtype=bool)
    results: dict[str, NDArray[np.bool_] | bool] = {}  # actions sharing a rule evaluate it once
    for j, action in enumerate(catalog.actions):
        if channel is not None and not action.offered_on(channel):
            mask[..., j] = False
        elif action.rule is not None:
            if action.rule.text not in results:
                results[action.rule.text] = action.rule.evaluate(namespace)
            mask[..., j] = results[action.rule.text]  # a constant rule broadcasts
    return mask


def _with_request_names(
    catalog: Catalog, namespace: Mapping[str, object] | pd.DataFrame
) -> Mapping[str, object] | pd.DataFrame:
    """The namespace with every request name a rule reads (`channel`, `context_<key>`) that it
    lacks set missing: no request (batch) or a key the request did not send makes them unknown."""
    absent = sorted(n for n in catalog.request_names if n not in namespace)
    if not absent:
        return namespace
    if isinstance(namespace, pd.DataFrame):
        return namespace.assign(**dict.fromkeys(absent, np.nan))
    return {**namespace, **dict.fromkeys(absent)}


def exclude_mask(action_ids: Sequence[str], exclude: Iterable[str] = ()) -> BoolArray:
    """(k,) True for actions not excluded; unknown ids raise UnknownActionError naming them."""
    excluded = set(exclude)
    unknown = sorted(excluded - set(action_ids))
    if unknown:
        raise UnknownActionError(f"unknown action id(s) in exclude: {', '.join(unknown)}")
    return np.array([a not in excluded for a in action_ids], dtype=bool)


# --- ranking ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Candidates:
    """Everything arbitration reads for n customers × k catalog actions (columns in catalog order).

    `allowed` is the contact-policy mask (cool-down, frequency caps); None allows everything.
    """

    action_ids: tuple[str, ...]
    cost: FloatArray  # (k,)
    expected_value: FloatArray  # (n, k)
    eligible: BoolArray  # (n, k)
    allowed: BoolArray | None = None  # (n, k)

    def __post_init__(self) -> None:
        k = len(self.action_ids)
        n = np.shape(self.expected_value)[0] if np.ndim(self.expected_value) == 2 else -1
        expected = {"cost": (k,), "expected_value": (n, k), "eligible": (n, k), "allowed": (n, k)}
        for name, shape in expected.items():
            array = getattr(self, name)
            if array is not None and np.shape(array) != shape:
                raise ValueError(f"Candidates.{name}: shape {np.shape(array)}, expected {shape}")

    def mask(self, exclude: Iterable[str] = ()) -> BoolArray:
        """(n, k): eligible, allowed by the contact policy and not excluded."""
        mask = np.asarray(self.eligible, dtype=bool) & exclude_mask(self.action_ids, exclude)
        return mask if self.allowed is None else mask & np.asarray(self.allowed, dtype=bool)


class Ranking(NamedTuple):
    """Long table of ranked actions: one entry per listed (customer, action), customer then rank."""

    customer: IntArray
    action: IntArray
    rank: IntArray
    expected_value: FloatArray


def _rankable(values: NDArray[Any], allowed: NDArray[Any], include_non_positive: bool) -> BoolArray:
    mask = np.asarray(allowed, dtype=bool) & np.isfinite(values)
    return mask if include_non_positive else mask & (values > 0)


def rank_one(
    values: NDArray[np.floating[Any]],
    allowed: BoolArray,
    max_actions: int | None = None,
    cost: NDArray[np.floating[Any]] | None = None,
    include_non_positive: bool = False,
) -> list[int]:
    """Action indices for one customer, best first (online path: (k,) arrays, no pandas).

    `allowed` combines eligibility, contact policy and exclusions. An empty list means do nothing.
    Order: higher value, then lower `cost` (if given), then lower index (catalog order).
    """
    values = np.asarray(values, dtype=np.float64)
    index = np.flatnonzero(_rankable(values, allowed, include_non_positive))
    costs = np.zeros(len(index)) if cost is None else np.asarray(cost, dtype=np.float64)[index]
    ordered = index[np.lexsort((index, costs, -values[index]))]
    return [int(j) for j in ordered[:max_actions]]


def ranks_of(values: Sequence[float] | FloatArray) -> list[int]:
    """Ranks of actions listed in order: their position, + 1 once at or below do-nothing (value ≤ 0)."""
    return [i + 1 + int(v <= 0) for i, v in enumerate(values)]


def arbitrate(
    candidates: Candidates,
    max_actions: int | None = None,
    exclude: Iterable[str] = (),
    include_non_positive: bool = False,
) -> Ranking:
    """Ranked actions of every customer as a long table; row by row identical to `rank_one`."""
    values = np.asarray(candidates.expected_value, dtype=np.float64)
    n, k = values.shape
    mask = _rankable(values, candidates.mask(exclude), include_non_positive)
    cost = np.asarray(candidates.cost, dtype=np.float64)
    tie_order = np.lexsort((np.arange(k), cost))  # columns by cost, then catalog order
    key = np.where(mask, -values, np.inf)[:, tie_order]
    ordered = tie_order[np.argsort(key, axis=1, kind="stable")]  # (n, k) best first
    listed = mask.sum(axis=1) if max_actions is None else np.minimum(mask.sum(axis=1), max_actions)
    take = np.arange(k)[None, :] < listed[:, None]
    customer = np.repeat(np.arange(n, dtype=np.int64), listed)
    action = ordered[take].astype(np.int64)
    value = values[customer, action]
    position = np.broadcast_to(np.arange(1, k + 1, dtype=np.int64), (n, k))[take]
    return Ranking(customer, action, position + (value <= 0), value)


# --- batch campaigns: budget and volume caps --------------------------------------------------


def _greedy(
    value: FloatArray,
    cost: FloatArray,
    priority: FloatArray,
    budget: float | None,
    caps: FloatArray,
) -> tuple[IntArray, IntArray]:
    """Accepted (customer, action) pairs, in order, of the sequential greedy over positive pairs.

    The sequential rule: scan pairs by `priority` (desc), then value (desc), cost, action, customer;
    accept a pair if its customer has no action yet, its action is under its cap and its cost fits the
    remaining budget. It is computed in vectorised rounds: each round accepts the longest prefix of
    the customers' best remaining pairs that breaks no constraint; the pair that stops it has a full
    action or a cost above the remaining budget, so it and its like leave the candidates for good:
    at most 2k + 1 rounds.
    """
    n, k = value.shape
    customer, action = np.nonzero(value > 0)
    pair_value, pair_cost = value[customer, action], cost[action]
    order = np.lexsort((customer, action, pair_cost, -pair_value, -priority[customer, action]))
    customer, action, pair_cost = customer[order], action[order], pair_cost[order]
    remaining = np.inf if budget is None else float(budget)
    room = caps.astype(np.float64).copy()
    taken = np.zeros(n, dtype=bool)
    accepted: list[tuple[IntArray, IntArray]] = []
    while True:
        keep = ~taken[customer] & (room[action] > 0) & (pair_cost <= remaining)
        customer, action, pair_cost = customer[keep], action[keep], pair_cost[keep]
        first = np.zeros(len(customer), dtype=bool)
        first[np.unique(customer, return_index=True)[1]] = True  # each customer's best pair
        c, a, p = customer[first], action[first], pair_cost[first]
        if len(c) == 0:
            break
        within = _cumcount(a, k) < room[a]
        fits = np.cumsum(p) <= remaining
        ok = within & fits
        stop = len(ok) if ok.all() else int(np.argmin(ok))
        c, a, p = c[:stop], a[:stop], p[:stop]
        accepted.append((c, a))
        taken[c] = True
        room -= np.bincount(a, minlength=k)
        remaining -= float(p.sum())
        if stop == len(ok):
            break
    chosen_customer = np.concatenate([c for c, _ in accepted] or [np.zeros(0, np.int64)])
    chosen_action = np.concatenate([a for _, a in accepted] or [np.zeros(0, np.int64)])
    return chosen_customer.astype(np.int64), chosen_action.astype(np.int64)


def _cumcount(groups: IntArray, k: int) -> FloatArray:
    """How many earlier entries share each entry's group (0 for the first), vectorised."""
    order = np.argsort(groups, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(groups, minlength=k))[:-1]])
    counts = np.empty(len(groups), dtype=np.float64)
    counts[order] = np.arange(len(groups)) - starts[groups[order]]
    return counts


def _inputs(
    expected_value: ArrayLike, cost: ArrayLike, volume_caps: ArrayLike | None
) -> tuple[FloatArray, FloatArray, FloatArray]:
    value = np.asarray(expected_value, dtype=np.float64)
    costs = np.asarray(cost, dtype=np.float64)
    if value.ndim != 2 or costs.shape != value.shape[1:]:
        raise ValueError(f"expected_value {value.shape} and cost {costs.shape} do not match")
    if np.any(costs < 0):
        raise ValueError("action costs must be ≥ 0")
    caps = np.full(costs.shape, np.inf) if volume_caps is None else np.asarray(volume_caps, float)
    caps = np.where(np.isnan(caps), np.inf, caps)  # NaN (no cap given for that action) = no cap
    if caps.shape != costs.shape:
        raise ValueError(f"volume_caps {caps.shape} do not match {costs.shape[0]} actions")
    return np.where(np.isfinite(value), value, -np.inf), costs, caps


def allocate_budget(
    expected_value: ArrayLike,
    cost: ArrayLike,
    budget: float | None = None,
    volume_caps: ArrayLike | None = None,
) -> IntArray:
    """At most one action per customer (−1: none) maximising total net value under the constraints.

    `expected_value` is (n, k) and should already be masked (−inf or ≤ 0 where not allowed); `cost`
    and `volume_caps` are (k,) (NaN or None: uncapped). Greedy by ROI over positive-value pairs, the
    classic knapsack heuristic when the budget binds; because ROI-first can lose value when the budget
    does not bind (a cheap action pre-empting a dearer, better one), the greedy by value is run too
    and the allocation with the higher total is returned (with no budget, the value order alone).
    """
    value, costs, caps = _inputs(expected_value, cost, volume_caps)
    orders = [value] if budget is None else [roi_of(value, costs), value]
    best: IntArray = np.full(value.shape[0], -1, dtype=np.int64)
    best_total = -np.inf
    for priority in orders:
        customer, action = _greedy(value, costs, priority, budget, caps)
        total = float(value[customer, action].sum())
        if total > best_total:
            best_total = total
            best = np.full(value.shape[0], -1, dtype=np.int64)
            best[customer] = action
    return best


class InvestmentCurve(NamedTuple):
    """Cumulative spend and net value, from (0, 0), as the greedy by ROI adds customers."""

    spend: FloatArray
    value: FloatArray


def investment_curve(
    expected_value: ArrayLike, cost: ArrayLike, volume_caps: ArrayLike | None = None
) -> InvestmentCurve:
    """Incremental net value against spend: the greedy-by-ROI order without a budget (concave).

    The value at a given spend is what `allocate_budget` by ROI reaches with that budget (up to the
    pair that would exceed it), so the curve shows where extra budget stops paying.
    """
    value, costs, caps = _inputs(expected_value, cost, volume_caps)
    customer, action = _greedy(value, costs, roi_of(value, costs), None, caps)
    spend = np.concatenate([[0.0], np.cumsum(costs[action])])
    gained = np.concatenate([[0.0], np.cumsum(value[customer, action])])
    return InvestmentCurve(spend, gained)
