"""The feature ceiling: what a policy can reach when it learns from the true values themselves."""

from __future__ import annotations

import numpy as np

from training.synth.oracle import feature_ceiling


def _world(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features and true net values of nothing and three arms: two arms depend on the first
    feature (each best on one side), one is a constant loss."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    net = np.column_stack([np.zeros(n), X[:, 0], -X[:, 0], np.full(n, -1.0)])
    return X, net


def test_values_the_features_explain_are_learned_almost_to_the_oracle() -> None:
    X, net = _world(4000, 0)
    share = feature_ceiling(X, net, np.ones(net.shape, dtype=bool))
    assert 0.95 < share <= 1.0


def test_values_the_features_cannot_see_leave_a_low_ceiling() -> None:
    X, net = _world(4000, 1)
    hidden = np.random.default_rng(2).normal(size=(4000, 4))  # features unrelated to the values
    share = feature_ceiling(hidden, net, np.ones(net.shape, dtype=bool))
    assert share < 0.3  # choosing blind between +x and -x earns about nothing


def test_an_ineligible_arm_is_never_chosen_nor_counted_in_the_oracle() -> None:
    X, net = _world(2000, 3)
    eligible = np.ones(net.shape, dtype=bool)
    eligible[:, 1] = False  # the arm that wins when x > 0
    share = feature_ceiling(X, net, eligible)
    assert 0.9 < share <= 1.0  # the oracle without arm 1 is reached: -x when x < 0, else nothing
