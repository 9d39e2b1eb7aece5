"""Money value of policies from logged data (training.evaluation.value_estimates) against a known truth."""

from __future__ import annotations

import numpy as np

from training.evaluation.value_estimates import (
    LoggedOutcomes,
    incremental_value,
    row_values,
    true_incremental_value,
)

COST = np.array([0.0, 2.0, 5.0])  # nothing, a cheap action, a dear one


def logged_world(n: int, seed: int) -> dict[str, np.ndarray]:
    """Two outcomes (revenue, churn) under 3 arms with targeted logging and known means."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    revenue = np.column_stack([10 + 2 * x, 13 + 2 * x + 3 * x, 12 + 2 * x])
    churn = np.column_stack([np.full(n, 0.2), np.full(n, 0.15), 0.2 - 0.1 * (x > 0)])
    logits = np.column_stack([np.zeros(n), x, -x])
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    arm = (probs.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1).clip(0, 2)
    rows = np.arange(n)
    y_rev = revenue[rows, arm] + rng.normal(scale=4, size=n)
    y_churn = (rng.random(n) < churn[rows, arm]).astype(float)
    ltv = np.full(n, 40.0)
    true_net = revenue - revenue[:, [0]] - (churn - churn[:, [0]]) * ltv[:, None] - COST
    return {"x": x, "arm": arm, "p": probs[rows, arm], "revenue": revenue, "churn": churn,
            "y_rev": y_rev, "y_churn": y_churn, "ltv": ltv, "true_net": true_net}  # fmt: skip


def estimate(w: dict[str, np.ndarray], policy: np.ndarray, mu_noise: float, estimator: str):
    rng = np.random.default_rng(99)
    mu = {  # outcome models that are off by a constant: DR must still be right
        "rev": w["revenue"] + mu_noise + rng.normal(scale=0.1, size=w["revenue"].shape),
        "churn": np.clip(w["churn"] + mu_noise / 100, 0, 1),
    }
    labels = {"rev": w["y_rev"], "churn": w["y_churn"]}
    weights = {"rev": np.ones_like(w["ltv"]), "churn": -w["ltv"]}
    logged = LoggedOutcomes(w["arm"], w["p"], labels, mu, weights, COST)
    return incremental_value(policy, logged, estimator)


def test_dr_and_ips_cover_the_true_incremental_value() -> None:
    covered = {"dr": 0, "ips": 0}
    for seed in range(10):
        w = logged_world(6000, seed)
        policy = np.where(w["x"] > 0, 1, 2)  # a sensible targeted policy
        truth = true_incremental_value(policy, w["true_net"])
        for estimator in covered:
            value, half = estimate(w, policy, mu_noise=1.5, estimator=estimator)
            covered[estimator] += abs(value - truth) <= half
    assert covered["dr"] >= 8 and covered["ips"] >= 8, covered


def test_doing_nothing_is_worth_exactly_zero_and_dr_is_tighter_than_ips() -> None:
    w = logged_world(6000, 0)
    nothing = np.zeros(6000, dtype=np.int64)
    assert estimate(w, nothing, 0.0, "dr") == (0.0, 0.0)
    policy = np.ones(6000, dtype=np.int64)
    _, dr_half = estimate(w, policy, 0.0, "dr")
    _, ips_half = estimate(w, policy, 0.0, "ips")
    assert dr_half < ips_half


def test_missing_labels_fall_back_on_the_outcome_model() -> None:
    arm = np.array([1, 0])
    labels = {"y": np.array([np.nan, 1.0])}
    mu = {"y": np.array([[0.0, 5.0], [1.0, 2.0]])}
    weights = {"y": np.ones(2)}
    cost = np.array([0.0, 1.0])
    logged = LoggedOutcomes(arm, np.array([0.5, 0.5]), labels, mu, weights, cost)
    values = row_values(np.array([1, 1]), logged)
    np.testing.assert_allclose(values, [5.0 - 1.0, 2.0 - 1.0])  # row 0: no correction term
