"""Arbitration: ranking, do-nothing, eligibility, budget allocation (training.policy.arbitration)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.config import Action, Catalog
from training.policy.arbitration import (
    Candidates,
    Ranking,
    UnknownActionError,
    allocate_budget,
    arbitrate,
    eligibility_mask,
    investment_curve,
    rank_one,
    ranks_of,
)

IDS = ("a", "b", "c", "d")
COST = np.array([4.0, 1.0, 1.0, 0.0])


def _candidates(values: np.ndarray, eligible: np.ndarray | None = None, **kw: object) -> Candidates:
    mask = np.ones(values.shape, dtype=bool) if eligible is None else eligible
    return Candidates(IDS, COST, values, mask, **kw)  # type: ignore[arg-type]


def _rows(ranking: Ranking) -> list[list[int]]:
    n = int(ranking.customer.max()) + 1 if len(ranking.customer) else 0
    return [ranking.action[ranking.customer == i].tolist() for i in range(n)]


def test_do_nothing_when_no_action_is_worth_its_cost() -> None:
    values = np.array([[-1.0, 0.0, -3.0, -0.5]])
    assert len(arbitrate(_candidates(values)).customer) == 0
    assert rank_one(values[0], np.ones(4, bool)) == []
    listed = arbitrate(_candidates(values), include_non_positive=True)
    assert listed.action.tolist() == [1, 3, 0, 2] and listed.rank.min() == 2  # never rank 1
    assert rank_one(values[0], np.ones(4, bool), include_non_positive=True) == [1, 3, 0, 2]


def test_ranks_put_non_positive_below_do_nothing() -> None:
    values = np.array([[2.0, -1.0, 5.0, 0.0]])
    ranking = arbitrate(_candidates(values), include_non_positive=True)
    assert ranking.action.tolist() == [2, 0, 3, 1]
    assert ranking.rank.tolist() == [1, 2, 4, 5] == ranks_of(ranking.expected_value)
    assert arbitrate(_candidates(values)).action.tolist() == [2, 0]


def test_exclude_max_actions_eligibility_and_policy() -> None:
    values = np.array([[3.0, 2.0, 1.0, 4.0], [1.0, 2.0, 3.0, 4.0]])
    eligible = np.array([[True, True, True, False], [True, True, True, True]])
    allowed = np.array([[True, True, True, True], [True, True, True, False]])
    cands = _candidates(values, eligible, allowed=allowed)
    assert _rows(arbitrate(cands)) == [[0, 1, 2], [2, 1, 0]]
    assert _rows(arbitrate(cands, max_actions=1)) == [[0], [2]]
    assert _rows(arbitrate(cands, exclude=["a", "c"])) == [[1], [1]]
    with pytest.raises(UnknownActionError, match="zzz"):
        arbitrate(cands, exclude=["zzz"])


def test_nan_values_are_never_ranked() -> None:
    values = np.array([[np.nan, 1.0, np.inf, 2.0]])
    assert arbitrate(_candidates(values), include_non_positive=True).action.tolist() == [3, 1]


def test_ties_are_deterministic_value_then_cost_then_catalog_order() -> None:
    values = np.array([[1.0, 1.0, 1.0, 1.0]])
    # d is free, b and c cost 1 (catalog order), a costs 4
    assert arbitrate(_candidates(values)).action.tolist() == [3, 1, 2, 0]
    assert rank_one(values[0], np.ones(4, bool), cost=COST) == [3, 1, 2, 0]
    assert rank_one(values[0], np.ones(4, bool)) == [0, 1, 2, 3]


@pytest.mark.parametrize("seed", range(5))
def test_batch_equals_rank_one_per_row(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = 300, 6
    values = np.round(rng.normal(size=(n, k)), 1)  # rounding makes ties common
    values[rng.random((n, k)) < 0.05] = np.nan
    eligible, allowed = rng.random((n, k)) < 0.7, rng.random((n, k)) < 0.8
    cost = rng.integers(0, 3, size=k).astype(float)
    ids = tuple(f"x{j}" for j in range(k))
    cands = Candidates(ids, cost, values, eligible, allowed)
    for include in (False, True):
        ranking = arbitrate(cands, max_actions=3, exclude=["x1"], include_non_positive=include)
        mask = eligible & allowed
        mask[:, 1] = False
        for i in range(n):
            expected = rank_one(values[i], mask[i], 3, cost=cost, include_non_positive=include)
            rows = ranking.customer == i
            assert ranking.action[rows].tolist() == expected
            assert ranking.rank[rows].tolist() == ranks_of(values[i, expected])
        assert not ((ranking.rank == 1) & (ranking.expected_value <= 0)).any()


def test_candidates_check_shapes() -> None:
    with pytest.raises(ValueError, match="eligible"):
        Candidates(IDS, COST, np.zeros((2, 4)), np.ones((2, 3), bool))


# --- eligibility -------------------------------------------------------------------------------

CATALOG = Catalog(
    actions=(
        Action(
            id="apology_credit",
            name="Apology credit",
            cost=4.0,
            channels=("call_center", "chat"),
            eligibility="complaints_30d > 0 and churn_probability > 0.05",
        ),
        Action(id="survey", name="Survey", cost=0.5),
        Action(id="vip", name="VIP", cost=1.0, eligibility="1 > 0", channels=("email",)),
    )
)


def test_eligibility_mask_batch_and_one_customer() -> None:
    namespace = pd.DataFrame(
        {"complaints_30d": [0, 2, 1, None], "churn_probability": [0.5, 0.2, 0.01, 0.9]}
    )
    expected_rule = [False, True, False, False]  # missing complaints: not eligible
    mask = eligibility_mask(CATALOG, namespace)
    assert mask.shape == (4, 3)
    assert mask[:, 0].tolist() == expected_rule and mask[:, 1:].all()
    on_chat = eligibility_mask(CATALOG, namespace, channel="chat")
    assert (
        on_chat[:, 0].tolist() == expected_rule and on_chat[:, 1].all() and not on_chat[:, 2].any()
    )
    as_dict = eligibility_mask(CATALOG, {str(k): namespace[k].to_numpy() for k in namespace})
    np.testing.assert_array_equal(as_dict, mask)
    one = eligibility_mask(
        CATALOG, {"complaints_30d": 2, "churn_probability": 0.2}, channel="email"
    )
    assert one.tolist() == [False, True, True]


# --- budget ------------------------------------------------------------------------------------


def _total(values: np.ndarray, chosen: np.ndarray) -> float:
    rows = np.flatnonzero(chosen >= 0)
    return float(values[rows, chosen[rows]].sum())


def _check_feasible(values, cost, chosen, budget, caps) -> None:
    picked = chosen[chosen >= 0]
    assert (values[np.flatnonzero(chosen >= 0), picked] > 0).all()
    if budget is not None:
        assert cost[picked].sum() <= budget + 1e-9
    if caps is not None:
        assert (np.bincount(picked, minlength=len(cost)) <= caps).all()


def test_allocate_budget_respects_budget_and_caps() -> None:
    values = np.array([[5.0, 1.0], [4.0, 3.0], [-1.0, -2.0], [6.0, 0.5]])
    cost = np.array([2.0, 1.0])
    assert allocate_budget(values, cost).tolist() == [0, 0, -1, 0]
    capped = allocate_budget(values, cost, volume_caps=np.array([1, 5]))
    assert capped.tolist() == [1, 1, -1, 0]
    tight = allocate_budget(values, cost, budget=3.0)
    _check_feasible(values, cost, tight, 3.0, None)
    assert _total(values, tight) == 9.0  # customer 3 action 0 (6, roi 2) + customer 1 action 1 (3)
    assert (allocate_budget(values, cost, budget=0.5) == -1).all()


@pytest.mark.parametrize("seed", range(5))
def test_greedy_beats_random_feasible_allocations(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, k = 400, 5
    values = rng.normal(1.0, 3.0, size=(n, k))
    cost = rng.uniform(0.5, 5.0, size=k)
    caps = rng.integers(20, 120, size=k).astype(float)
    budget = 300.0
    chosen = allocate_budget(values, cost, budget=budget, volume_caps=caps)
    _check_feasible(values, cost, chosen, budget, caps)
    best = _total(values, chosen)
    for _ in range(20):
        spent, counts, random_total = 0.0, np.zeros(k), 0.0
        for i in rng.permutation(n):
            j = rng.integers(k)
            if values[i, j] > 0 and counts[j] < caps[j] and spent + cost[j] <= budget:
                spent, counts[j], random_total = (
                    spent + cost[j],
                    counts[j] + 1,
                    random_total + values[i, j],
                )
        assert best >= random_total


def test_greedy_matches_a_sequential_reference() -> None:
    rng = np.random.default_rng(7)
    n, k = 200, 4
    values = np.round(rng.normal(1.0, 2.0, size=(n, k)), 1)
    cost = np.array([1.0, 2.0, 0.0, 3.0])
    caps = np.array([10.0, 30.0, 5.0, 40.0])
    chosen = allocate_budget(values, cost, budget=60.0, volume_caps=caps)
    # the same greedy, one pair at a time, in both orders; the better total wins
    from training.policy.value import roi

    pairs = [(i, j) for i in range(n) for j in range(k) if values[i, j] > 0]
    best = -np.inf
    for prio in (roi(values, cost), values):
        pairs.sort(key=lambda p: (-prio[p], -values[p], cost[p[1]], p[1], p[0]))
        out, room, left = np.full(n, -1), caps.copy(), 60.0
        for i, j in pairs:
            if out[i] < 0 and room[j] > 0 and cost[j] <= left:
                out[i], room[j], left = j, room[j] - 1, left - cost[j]
        best = max(best, _total(values, out))
    assert _total(values, chosen) == pytest.approx(best)


def test_investment_curve_is_increasing_and_concave() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(1.0, 2.0, size=(100, 3))
    cost = np.array([1.0, 2.0, 4.0])
    curve = investment_curve(values, cost)
    assert curve.spend[0] == 0 and curve.value[0] == 0
    assert (np.diff(curve.spend) >= 0).all() and (np.diff(curve.value) > 0).all()
    slopes = np.diff(curve.value) / np.diff(curve.spend)
    assert (np.diff(slopes) <= 1e-12).all()
    assert len(curve.spend) - 1 == (values.max(axis=1) > 0).sum()


def test_request_names_are_missing_without_a_request() -> None:
    """Batch has no request: a rule on the context or channel is false there, not an error."""
    catalog = Catalog(
        actions=(
            Action(id="billing", name="B", cost=1, eligibility="context_call_reason == 'billing'"),
            Action(id="app_only", name="A", cost=1, eligibility="channel == 'app' or x > 1"),
            Action(id="any", name="C", cost=1),
        )
    )
    batch = pd.DataFrame({"x": [0.0, 2.0]})
    assert eligibility_mask(catalog, batch).tolist() == [[False, False, True], [False, True, True]]
    one = {"x": 0.0, "channel": "app", "context_call_reason": "billing"}
    assert eligibility_mask(catalog, one, "app").tolist() == [True, True, True]
    assert eligibility_mask(catalog, {"x": 0.0}, "app").tolist() == [False, False, True]
