"""Net value and ROI on tiny hand-computed arrays (training.policy.value)."""

from __future__ import annotations

import numpy as np
import pytest

from training.config import Objective, OutcomeSpec
from training.policy.value import net_value, roi

OUTCOMES = {
    "churn": OutcomeSpec(role="churn", kind="any", event_types=("churn",), horizon_days=90),
    "satisfaction": OutcomeSpec(
        role="satisfaction", kind="last", event_types=("nps",), horizon_days=90
    ),
    "value": OutcomeSpec(role="value", kind="sum", event_types=("purchase",), horizon_days=90),
    "visit": OutcomeSpec(kind="any", event_types=("visit",), horizon_days=14),
}
FULL = Objective(value_outcome="value", retention_value="ltv", satisfaction_weight=2.0)
COSTS = np.array([10.0, 0.0])
UPLIFT = {
    "value": np.array([[5.0, 1.0], [0.0, -2.0]]),
    "churn": np.array([[-0.1, 0.0], [-0.02, 0.01]]),
    "satisfaction": np.array([[1.0, 0.0], [0.5, 0.0]]),
    "visit": np.array([[9.0, 9.0], [9.0, 9.0]]),  # no role, not in the objective: ignored
}
SCORES = {"ltv": np.array([100.0, 200.0]), "churn_probability": np.array([0.3, 0.1])}


def test_every_term_by_hand() -> None:
    ev, r = net_value(UPLIFT, SCORES, COSTS, FULL, OUTCOMES)
    # customer 0: 5 + 0.1*100 + 2*1 - 10 = 7 ; 1 + 0 + 0 - 0 = 1
    # customer 1: 0 + 0.02*200 + 2*0.5 - 10 = -5 ; -2 - 0.01*200 + 0 - 0 = -4
    np.testing.assert_allclose(ev, [[7.0, 1.0], [-5.0, -4.0]])
    np.testing.assert_allclose(r, [[0.7, np.inf], [-0.5, -np.inf]])


def test_outcome_values_make_other_outcomes_money() -> None:
    """A conversion (the `visit` outcome here) worth 3 per unit of uplift, on top of the rest."""
    priced = Objective(**FULL.model_dump() | {"outcome_values": {"visit": 3.0}})
    ev, _ = net_value(UPLIFT, SCORES, COSTS, priced, OUTCOMES)
    np.testing.assert_allclose(ev, [[7.0 + 27.0, 1.0 + 27.0], [-5.0 + 27.0, -4.0 + 27.0]])
    alone = Objective(outcome_values={"visit": 3.0})
    ev, _ = net_value({"visit": UPLIFT["visit"]}, {}, COSTS, alone, OUTCOMES)
    np.testing.assert_allclose(ev, [[17.0, 27.0], [17.0, 27.0]])


def test_one_customer_shapes_match_the_batch() -> None:
    ev, r = net_value({k: v[1] for k, v in UPLIFT.items()}, {"ltv": 200.0}, COSTS, FULL, OUTCOMES)
    np.testing.assert_allclose(ev, [-5.0, -4.0])
    assert ev.shape == (2,) and r.shape == (2,)


@pytest.mark.parametrize(
    ("objective", "uplift", "scores", "expected"),
    [
        (Objective(), UPLIFT, SCORES, [[-10.0, 0.0], [-10.0, 0.0]]),  # nothing is money
        (Objective(value_outcome="value"), UPLIFT, SCORES, [[-5.0, 1.0], [-10.0, -2.0]]),
        (FULL, {"value": UPLIFT["value"]}, SCORES, [[-5.0, 1.0], [-10.0, -2.0]]),  # no churn uplift
        (FULL, {"churn": UPLIFT["churn"]}, {}, [[-10.0, 0.0], [-10.0, 0.0]]),  # no ltv score
        (Objective(retention_value="ltv"), {"churn": UPLIFT["churn"]}, SCORES, [[0, 0], [-6, -2]]),
    ],
)
def test_missing_pieces_are_neutral(objective, uplift, scores, expected):
    ev, _ = net_value(uplift, scores, COSTS, objective, OUTCOMES)
    np.testing.assert_allclose(ev, expected)
    assert not np.isnan(ev).any()


def test_no_churn_outcome_means_no_retention_term() -> None:
    outcomes = {k: v for k, v in OUTCOMES.items() if k != "churn"}
    ev, _ = net_value(UPLIFT, SCORES, COSTS, FULL, outcomes)
    np.testing.assert_allclose(ev, [[-3.0, 1.0], [-9.0, -2.0]])


def test_nan_input_propagates_only_where_it_is() -> None:
    uplift = dict(UPLIFT, value=np.array([[np.nan, 1.0], [0.0, -2.0]]))
    ev, r = net_value(uplift, SCORES, COSTS, FULL, OUTCOMES)
    assert np.isnan(ev[0, 0]) and np.isnan(r[0, 0])
    assert np.isfinite(ev[1]).all() and ev[0, 1] == 1.0


def test_zero_weight_ignores_even_a_nan_satisfaction_uplift() -> None:
    uplift = dict(UPLIFT, satisfaction=np.full((2, 2), np.nan))
    ev, _ = net_value(
        uplift, SCORES, COSTS, FULL.model_copy(update={"satisfaction_weight": 0.0}), OUTCOMES
    )
    assert np.isfinite(ev).all()


def test_roi_with_zero_cost() -> None:
    np.testing.assert_array_equal(
        roi([3.0, -1.0, 0.0, np.nan, 4.0], [0.0, 0.0, 0.0, 0.0, 2.0]),
        [np.inf, -np.inf, 0.0, np.nan, 2.0],
    )


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="do not match"):
        net_value({"value": np.zeros((2, 3))}, {}, COSTS, FULL, OUTCOMES)


def test_lifetime_value_counts_only_what_lies_beyond_the_window() -> None:
    """docs/lifetime.md's worked example: a call cuts 90-day churn by 5 points and adds 12 of
    window revenue; the customer is worth 150 over the window and 520 over 12 months."""
    lifetime = Objective(value_outcome="value", retention_value="ltv", lifetime_months=12)
    uplift = {"value": np.array([12.0]), "churn": np.array([-0.05])}
    scores = {"ltv": 520.0, "window_value": 150.0}
    ev, _ = net_value(uplift, scores, np.array([8.0]), lifetime, OUTCOMES)
    np.testing.assert_allclose(ev, [12.0 + 0.05 * (520.0 - 150.0) - 8.0])  # 22.5
    # without a lifetime horizon ltv is the window revenue and is used as it is (as before)
    window_only = Objective(value_outcome="value", retention_value="ltv")
    ev, _ = net_value(uplift, {"ltv": 150.0, "window_value": 150.0}, np.array([8.0]),
                      window_only, OUTCOMES)  # fmt: skip
    np.testing.assert_allclose(ev, [12.0 + 0.05 * 150.0 - 8.0])  # 11.5
    # a lifetime below the window's own value (a customer about to leave) is worth nothing more
    ev, _ = net_value(uplift, {"ltv": 100.0, "window_value": 150.0}, np.array([8.0]),
                      lifetime, OUTCOMES)  # fmt: skip
    np.testing.assert_allclose(ev, [12.0 - 8.0])
