"""Policy value, Qini/AUUC and uplift calibration: hand-computed cases, scikit-uplift's
normalisation, and statistical checks on a seeded logged world with a known truth."""

from __future__ import annotations

import numpy as np
import pytest

from training.errors import NextbestError
from training.uplift.metrics import (
    auuc,
    dr_value,
    ips_value,
    or_nan,
    perfect_qini_curve,
    qini_coefficient,
    qini_curve,
    uplift_by_decile,
    uplift_curve,
)

# six customers ranked by a score, treated / control alternating; every figure below is
# computed by hand from sklift's definitions (metrics.py: qini_curve, perfect_qini_curve,
# qini_auc_score, uplift_curve, perfect_uplift_curve, uplift_auc_score)
SCORE = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
TREATED = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
Y = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])


def test_qini_curve_by_hand():
    # after k rows: treated responders - control responders * n_treated / n_control
    x, q = qini_curve(SCORE, TREATED, Y)
    assert x.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert q.tolist() == [0, 1, 1, 1, 0, 0.5, 1]


def test_perfect_qini_curve_by_hand():
    # score y*t - y*(1-t) = [1, 0, 0, -1, 1, 0]: ties are taken together -> points at 2, 5, 6
    x, q = perfect_qini_curve(TREATED, Y)
    assert x.tolist() == [0, 2, 5, 6]
    assert q.tolist() == [0, 2, 2, 1]
    x, q = perfect_qini_curve(TREATED, Y, negative_effect=False)
    assert x.tolist() == [0, 1, 6]  # gain = 2 - 3 * 1 / 3 = 1, reached at once
    assert q.tolist() == [0, 1, 1]


def test_qini_coefficient_by_hand():
    # model area 4.0, random line to (6, 1) area 3.0, perfect area 9.5 -> (4 - 3) / (9.5 - 3)
    assert qini_coefficient(SCORE, TREATED, Y) == pytest.approx(1 / 6.5, abs=1e-12)
    # without negative effects: perfect area 0.5 + 5 = 5.5 -> (4 - 3) / (5.5 - 3)
    assert qini_coefficient(SCORE, TREATED, Y, negative_effect=False) == pytest.approx(0.4)


def test_auuc_by_hand():
    # uplift curve [0, 1, 2, 1.5, 0, 5/6, 2]: area 19/3; random line to (6, 2): 6;
    # perfect (score 2*(y==t)+t, 1 control responder is not > 1 treated non-responder):
    # points (2, 2), (4, 4), (5, 10/3), (6, 2): area 43/3 -> (19/3 - 6) / (43/3 - 6) = 0.04
    x, u = uplift_curve(SCORE, TREATED, Y)
    assert np.allclose(u, [0, 1, 2, 1.5, 0, 5 / 6, 2])
    assert auuc(SCORE, TREATED, Y) == pytest.approx(0.04, abs=1e-12)


def test_ties_are_targeted_together():
    # with all scores tied the curve is the straight line from (0, 0) to (n, gain): random
    x, q = qini_curve(np.zeros(6), TREATED, Y)
    assert x.tolist() == [0, 6] and q.tolist() == [0, 1]
    assert qini_coefficient(np.zeros(6), TREATED, Y) == pytest.approx(0.0)


def test_perfect_score_reaches_one_and_inverse_is_negative():
    perfect = np.where(TREATED, Y, -Y)
    assert qini_coefficient(perfect, TREATED, Y) == pytest.approx(1.0)
    assert qini_coefficient(-SCORE, TREATED, Y) < 0


def test_auuc_refuses_continuous_outcomes():
    with pytest.raises(NextbestError, match="binary outcomes only"):
        auuc(SCORE, TREATED, Y * 2.5)


def test_policy_value_by_hand():
    policy = np.array(["a", "control", "a", "a"])
    treatment = np.array(["a", "control", "control", "b"])
    y = np.array([1.0, 2.0, 3.0, 4.0])
    p = np.array([0.5, 0.25, 0.5, 0.5])
    ips = ips_value(policy, treatment, y, p)
    contributions = np.array([1 / 0.5, 2 / 0.25, 0.0, 0.0])
    assert ips.value == pytest.approx(contributions.mean())
    half = 1.959963984540054 * contributions.std(ddof=1) / 2
    assert ips.ci_half_width == pytest.approx(half)
    # arms default to control first, then sorted: columns control, a, b
    mu = np.array([[0.0, 1.5, 0.0], [1.0, 0.0, 0.0], [2.0, 2.5, 0.0], [0.0, 3.0, 4.5]])
    dr = dr_value(policy, treatment, y, p, mu)
    expected = [1.5 + (1 - 1.5) / 0.5, 1.0 + (2 - 1.0) / 0.25, 2.5, 3.0]
    assert dr.value == pytest.approx(np.mean(expected))
    shuffled = dr_value(policy, treatment, y, p, mu[:, [2, 0, 1]], arms=["b", "control", "a"])
    assert shuffled == dr


def test_policy_value_refuses_bad_input():
    t = np.array(["a", "control"])
    with pytest.raises(NextbestError, match=r"propensity must be in \(0, 1\]"):
        ips_value(t, t, np.ones(2), np.array([0.0, 1.0]))
    with pytest.raises(NextbestError, match=r"mu_hat must be \(n, 2\)"):
        dr_value(t, t, np.ones(2), np.ones(2), np.ones((2, 3)))
    with pytest.raises(NextbestError, match=r"arms \['a'\] have no column"):
        dr_value(t, t, np.ones(2), np.ones(2), np.ones((2, 1)), arms=["control"])


# ---------------------------------------------------------------------------------------------
# statistical checks on a logged, targeted world


def logged_world(n: int, seed: int) -> dict[str, np.ndarray]:
    """One action vs control, assigned on x with known propensity; x raises the outcome and the
    action's effect is x (helps where x > 0). mu: (n, 2) true expected outcome, control first."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    p_action = 1 / (1 + np.exp(-x))
    got = rng.random(n) < p_action
    mu = np.column_stack([1 + x, 1 + x + x])
    y = mu[np.arange(n), got.astype(int)] + rng.normal(size=n)
    return {
        "x": x,
        "treatment": np.where(got, "a", "control"),
        "y": y,
        "propensity": np.where(got, p_action, 1 - p_action),
        "mu": mu,
    }


def test_ips_and_dr_recover_the_value_of_a_policy_and_dr_is_tighter():
    w = logged_world(20000, seed=0)
    policy = np.where(w["x"] > 0, "a", "control")  # the optimal policy here
    true_value = np.where(w["x"] > 0, w["mu"][:, 1], w["mu"][:, 0]).mean()
    ips = ips_value(policy, w["treatment"], w["y"], w["propensity"])
    # a deliberately wrong outcome model (no x at all): DR is still right thanks to propensities
    wrong_mu = np.full_like(w["mu"], w["y"].mean())
    dr_wrong = dr_value(policy, w["treatment"], w["y"], w["propensity"], wrong_mu)
    dr_true = dr_value(policy, w["treatment"], w["y"], w["propensity"], w["mu"])
    for estimate in (ips, dr_wrong, dr_true):
        assert abs(estimate.value - true_value) <= estimate.ci_half_width, (estimate, true_value)
    # measured: half-widths 0.027 (DR, right model) vs 0.032 (IPS); the outcome noise dominates
    assert dr_true.ci_half_width < 0.9 * ips.ci_half_width
    # "nobody gets the action": the naive mean of the control rows is biased (they have low x),
    # while IPS and DR, reweighting those rows by 1/p, are not
    nobody = np.full(len(policy), "control")
    true_nobody = w["mu"][:, 0].mean()
    naive = w["y"][w["treatment"] == "control"].mean()
    for estimate in (
        ips_value(nobody, w["treatment"], w["y"], w["propensity"]),
        dr_value(nobody, w["treatment"], w["y"], w["propensity"], wrong_mu),
    ):
        assert abs(estimate.value - true_nobody) <= estimate.ci_half_width
        assert abs(naive - true_nobody) > 5 * estimate.ci_half_width


def test_uplift_by_decile_is_calibrated_for_the_true_effect():
    w = logged_world(20000, seed=1)
    treated = w["treatment"] == "a"
    true_cate = w["mu"][:, 1] - w["mu"][:, 0]
    table = uplift_by_decile(true_cate, treated, w["y"], propensity=w["propensity"])
    assert list(table.columns) == [
        "decile",
        "n",
        "n_treated",
        "n_control",
        "predicted",
        "observed",
        "observed_se",
    ]
    assert table["decile"].tolist() == list(range(1, 11)) and table["n"].sum() == 20000
    assert table["predicted"].is_monotonic_decreasing
    # IPW-weighted observed uplift tracks the truth decile by decile (within 4 standard errors)
    gap = (table["observed"] - table["predicted"]).abs() / table["observed_se"]
    assert (gap < 4).all(), table
    assert np.corrcoef(table["observed"], table["predicted"])[0, 1] > 0.95


def test_nothing_to_rank_raises_and_or_nan_reads_it_as_nan() -> None:
    """An outcome nobody shows (a coupon redeemed only after the coupon action: none among the
    other action's and control rows) has no perfect ranking to normalise by."""
    uplift, treated, y = np.linspace(0, 1, 20), np.arange(20) % 2 == 0, np.zeros(20)
    with pytest.raises(NextbestError, match="no effect to rank"):
        qini_coefficient(uplift, treated, y)
    assert np.isnan(or_nan(qini_coefficient, uplift, treated, y))
    assert np.isnan(or_nan(auuc, uplift, treated, y))
    assert or_nan(qini_coefficient, SCORE, TREATED, np.array([1, 0, 1, 0, 0, 0.0])) > 0
