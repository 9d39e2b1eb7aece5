"""The value of a decision policy in money, estimated from logged exposures (issue 4, item 3).

A policy picks one arm per exposure (0 = do nothing, j = the j-th action). Its value under the
configured objective is, per customer,

    sum over outcomes o of  weight_o(x) * E[y_o | x, arm]  −  cost(arm)

with the weights of training.policy.value: 1 for the value outcome, −LTV(x) for churn (a retained
customer is worth the predicted LTV), `satisfaction_weight` for satisfaction. Reported values are
*incremental*: the policy's value minus doing nothing for everyone, from paired per-row
differences, so the interval reflects only the policy's own noise.

- DR (doubly robust): mu_o(x, pi(x)) + 1[pi(x) = T] (y_o − mu_o(x, T)) / p per outcome.
- IPS: 1[pi(x) = T] y_o / p.
A label that is missing (no survey answer, a censored window) has no correction term: DR falls
back on the outcome model there, IPS on the outcome model's prediction for the logged arm. Pure
numpy; `mu` comes from an outcome model fitted on other rows than these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from training.uplift.metrics import PolicyValue, _mean_ci

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class LoggedOutcomes:
    """Logged exposures with what valuing a policy on them needs, arms as indices (0 = nothing).

    `labels[o]` (n,) with NaN where unobserved, `mu[o]` (n, arms) predicted outcomes per arm from
    a model fitted on other rows, `weights[o]` (n,) money per unit of outcome o, `arm_cost`
    (arms,) with 0 for arm 0.
    """

    treatment: IntArray
    propensity: FloatArray
    labels: Mapping[str, FloatArray]
    mu: Mapping[str, FloatArray]
    weights: Mapping[str, FloatArray]
    arm_cost: FloatArray


def restrict(logged: LoggedOutcomes, rows: NDArray[np.bool_]) -> LoggedOutcomes:
    """The same logged exposures, only the rows where the mask `rows` is true."""
    return LoggedOutcomes(
        logged.treatment[rows],
        logged.propensity[rows],
        {o: v[rows] for o, v in logged.labels.items()},
        {o: v[rows] for o, v in logged.mu.items()},
        {o: v[rows] for o, v in logged.weights.items()},
        logged.arm_cost,
    )


def row_values(policy: IntArray, logged: LoggedOutcomes, estimator: str = "dr") -> FloatArray:
    """Per-row money value of `policy` (arm index per row, 0 = nothing), by DR or IPS."""
    treatment, propensity = logged.treatment, logged.propensity
    rows = np.arange(len(policy))
    agree = (policy == treatment).astype(np.float64)
    total = -logged.arm_cost[policy]
    for outcome, weight in logged.weights.items():
        y, m = logged.labels[outcome], logged.mu[outcome]
        seen = ~np.isnan(y)
        y_logged = np.where(seen, y, m[rows, treatment])
        if estimator == "dr":
            correction = np.where(seen, agree * (y_logged - m[rows, treatment]) / propensity, 0.0)
            part = m[rows, policy] + correction
        elif estimator == "ips":
            part = agree * y_logged / propensity
        else:
            raise ValueError(f"estimator must be 'dr' or 'ips', got {estimator!r}")
        total = total + weight * part
    return np.asarray(total, dtype=np.float64)


def incremental_value(
    policy: IntArray, logged: LoggedOutcomes, estimator: str = "dr"
) -> PolicyValue:
    """Value per customer of `policy` minus that of doing nothing, with a paired 95% interval."""
    nothing = np.zeros_like(policy)
    return _mean_ci(row_values(policy, logged, estimator) - row_values(nothing, logged, estimator))


def true_incremental_value(policy: IntArray, true_net: FloatArray) -> float:
    """Mean true net value of the chosen arms; `true_net` (n, arms) with column 0 = 0 (nothing)."""
    return float(np.mean(true_net[np.arange(len(policy)), policy]))
