"""Net value: what an action is worth to one customer, in money, after its cost (issue 4, item 2).

    expected_value = uplift[value_outcome]                            (money: revenue uplift)
                   + (−uplift[churn outcome]) × retained_value         (if retention_value == "ltv")
                   + satisfaction_weight × uplift[satisfaction outcome] (if the weight is not 0)
                   + Σ outcome_values[o] × uplift[o]                   (money per unit of outcome o)
                   − cost
    roi            = expected_value / cost

retained_value is what a customer kept through the label window is worth beyond it. With
`objective.lifetime_months`, `ltv` is the lifetime value and the window's revenue is already in
uplift[value_outcome], so retained_value = max(ltv − window_value, 0): nothing is counted twice.
Without a lifetime horizon `ltv` is the window revenue itself and retained_value = ltv, as before.

The same pure function serves the online service (one customer: uplift arrays of shape (k,), scores
as scalars) and nightly batch (n customers: uplift (n, k), scores (n,)); it only uses numpy.

Missing pieces are neutral: no value outcome configured, no churn outcome, no `ltv` score, a
satisfaction weight of 0 or an outcome absent from `uplift` each contribute 0, so a scores-only bundle
ranks by −cost (and arbitration then recommends nothing). A NaN in an input that *is* used propagates
to that customer's value, and arbitration never ranks a non-finite value.

ROI with a cost of 0 is defined by the sign of the net value: +inf when positive (a free action that
pays), −inf when negative, 0 when exactly 0 (break-even, nothing spent), NaN only if the net value is
NaN. +inf sorts first in the greedy budget allocation, which is right: free value costs no budget. JSON
has no infinity, so the HTTP layer must map non-finite ROI to null.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from training.config import LTV_SCORE, WINDOW_VALUE_SCORE, Objective, OutcomeSpec

FloatArray = NDArray[np.float64]


class NetValue(NamedTuple):
    """Expected incremental value net of cost, and ROI = net value / cost; both (n, k) or (k,)."""

    expected_value: FloatArray
    roi: FloatArray


def _role_outcome(outcomes: Mapping[str, OutcomeSpec], role: str) -> str | None:
    return next((name for name, spec in outcomes.items() if spec.role == role), None)


def _uplift(uplift: Mapping[str, ArrayLike], outcome: str | None) -> FloatArray | None:
    """The uplift on `outcome` as floats, or None when it is not configured or not predicted."""
    if outcome is None or outcome not in uplift:
        return None
    return np.asarray(uplift[outcome], dtype=np.float64)


def _per_customer(score: ArrayLike, ndim: int) -> FloatArray:
    """A per-customer score as a column that broadcasts against (n, k) (or a scalar against (k,))."""
    array = np.asarray(score, dtype=np.float64)
    return array[..., None] if array.ndim == ndim - 1 else array


def roi(expected_value: ArrayLike, cost: ArrayLike) -> FloatArray:
    """Net value per unit of cost; with cost 0: ±inf by the sign of the net value, 0 at break-even."""
    net = np.asarray(expected_value, dtype=np.float64)
    cost = np.broadcast_to(np.asarray(cost, dtype=np.float64), net.shape)
    free = cost == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = net / np.where(free, 1.0, cost)
    return np.where(free, np.sign(net) * np.where(net == 0, 0.0, np.inf), ratio)


def retained_value(scores: Mapping[str, ArrayLike], objective: Objective) -> FloatArray:
    """What keeping a customer through the label window is worth beyond it: lifetime value net of
    the window's revenue (already counted by the value outcome's uplift) with a lifetime horizon,
    else `ltv` itself (the window revenue, as before lifetime horizons existed)."""
    ltv = np.asarray(scores[LTV_SCORE], dtype=np.float64)
    if objective.lifetime_months is None or WINDOW_VALUE_SCORE not in scores:
        return ltv
    window = np.asarray(scores[WINDOW_VALUE_SCORE], dtype=np.float64)
    return np.maximum(ltv - window, 0.0)


def net_value(
    uplift: Mapping[str, ArrayLike],
    scores: Mapping[str, ArrayLike],
    costs: ArrayLike,
    objective: Objective,
    outcomes: Mapping[str, OutcomeSpec],
) -> NetValue:
    """Expected incremental value net of cost and ROI for every customer × action.

    `uplift` maps outcome name -> predicted uplift (treated minus control) per customer × action,
    shape (n, k) (or (k,) for one customer); `scores` maps score name (`ltv`) -> (n,) (or a scalar);
    `costs` is (k,). Outcomes absent from `uplift` and scores absent from `scores` count as 0.
    """
    cost = np.asarray(costs, dtype=np.float64)
    shapes = [np.shape(a) for a in uplift.values()]
    shape = shapes[0] if shapes else cost.shape
    if any(s != shape for s in shapes) or shape[-1:] != cost.shape:
        raise ValueError(f"uplift shapes {shapes} do not match {cost.shape[0]} action costs")
    total: Any = np.zeros(shape, dtype=np.float64)
    money = _uplift(uplift, objective.value_outcome)
    if money is not None:
        total = total + money
    churn = _uplift(uplift, _role_outcome(outcomes, "churn"))
    if objective.retention_value == "ltv" and churn is not None and LTV_SCORE in scores:
        worth = _per_customer(retained_value(scores, objective), len(shape))
        total = total - churn * worth  # −churn = retained
    satisfaction = _uplift(uplift, _role_outcome(outcomes, "satisfaction"))
    if objective.satisfaction_weight != 0 and satisfaction is not None:
        total = total + objective.satisfaction_weight * satisfaction
    for outcome, weight in objective.outcome_values.items():
        other = _uplift(uplift, outcome)
        if other is not None:
            total = total + weight * other
    expected = np.asarray(total - cost, dtype=np.float64)
    return NetValue(expected, roi(expected, cost))
