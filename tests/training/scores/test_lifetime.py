"""Lifetime value: the survival projection's arithmetic, BG/NBD x Gamma-Gamma against data drawn from
its own generative story (directly, and as split orders read through the features: purchase days),
and the JSON round trip of what a bundle keeps."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from training.errors import NextbestError
from training.features.definition import FeatureBuilder
from training.scores.lifetime import (
    LifetimeValue,
    RepeatPurchaseModel,
    purchase_summary,
    survival_value,
)

TRUE_BGNBD = (0.8, 40.0, 1.5, 4.0)  # r, alpha (days), a, b
TRUE_GG = (4.0, 5.0, 60.0)  # p, q, gamma: mean spend per purchase gamma p / (q - 1) = 60


def draw_buyers(n: int, days: float, future: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """BG/NBD x Gamma-Gamma customers: the (x, t_x, T, m) summary over `days`, and the revenue of
    the following `future` days."""
    summary, revenue, _ = draw_buyers_split(n, days, future, 0.0, seed)
    return summary, revenue


def draw_buyers_split(
    n: int, days: float, future: float, window: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`draw_buyers`, and each customer's expected revenue over the first `window` of the
    `future` days given the latent rates (what a perfect label-window model would say)."""
    rng = np.random.default_rng(seed)
    r, alpha, a, b = TRUE_BGNBD
    p, q, gamma = TRUE_GG
    lam = rng.gamma(r, 1.0 / alpha, n)
    drop = rng.beta(a, b, n)
    nu = rng.gamma(q, 1.0 / gamma, n)
    T = rng.uniform(days / 2, days, n)  # customers joined at different times
    summary = np.zeros((n, 4))
    revenue, expected = np.zeros(n), np.zeros(n)
    for i in range(n):
        t, times, alive, alive_at_T = 0.0, [], True, True
        while alive:
            t += rng.exponential(1.0 / lam[i])
            if t >= T[i] + future:
                break
            times.append(t)
            alive = rng.random() >= drop[i]
            alive_at_T = alive_at_T and (alive or t >= T[i])
        spend = rng.gamma(p, 1.0 / nu[i], len(times))
        seen = np.array([s < T[i] for s in times], dtype=bool)
        x = int(seen.sum())
        summary[i] = [x, times[x - 1] if x else 0.0, T[i], spend[seen].mean() if x else 0.0]
        revenue[i] = spend[~seen].sum()
        # alive: purchases at rate lam, each followed by dropout with chance `drop`
        count = -np.expm1(-lam[i] * drop[i] * window) / drop[i]
        expected[i] = alive_at_T * count * p / nu[i]
    return summary, revenue, expected


@pytest.fixture(scope="module")
def buyers() -> tuple[np.ndarray, np.ndarray]:
    return draw_buyers(4000, days=270.0, future=365.0)


def test_bgnbd_gamma_gamma_recovers_its_world(buyers: tuple[np.ndarray, np.ndarray]) -> None:
    summary, future = buyers
    model = RepeatPurchaseModel(horizon=365.0).fit(summary)
    r, alpha, a, b = model.bgnbd_
    assert r / alpha == pytest.approx(TRUE_BGNBD[0] / TRUE_BGNBD[1], rel=0.15)  # purchase rate
    assert a / (a + b) == pytest.approx(1.5 / 5.5, rel=0.25)  # drop-out chance per purchase
    p, q, gamma = model.gamma_gamma_
    assert gamma * p / (q - 1) == pytest.approx(60.0, rel=0.1)  # mean spend per purchase
    pred = model.predict(summary)
    assert pred.sum() == pytest.approx(future.sum(), rel=0.1)
    assert np.corrcoef(pred, future)[0, 1] > 0.5
    assert np.all(pred >= 0)


def test_discounting_and_horizon(buyers: tuple[np.ndarray, np.ndarray]) -> None:
    summary, _ = buyers
    model = RepeatPurchaseModel(horizon=365.0).fit(summary[:1000])
    year, two = model.predict(summary[:50]), model.predict(summary[:50], horizon=730.0)
    assert np.all(two > year)
    model.discount_rate = 0.2
    assert np.all(model.predict(summary[:50]) < year)


def test_repeat_purchases_between_two_days_add_up(buyers: tuple[np.ndarray, np.ndarray]) -> None:
    summary, _ = buyers
    model = RepeatPurchaseModel(horizon=365.25).fit(summary[:1000])
    rows = summary[:200]
    whole = model.predict(rows)
    parts = model.predict(rows, horizon=90.0) + model.predict(rows, start=90.0)
    assert parts == pytest.approx(whole, rel=0.02)  # only the months' mid-points differ
    assert np.all(model.predict(rows, start=90.0) < whole)
    assert np.all(model.predict(rows, start=400.0) == 0)


def test_window_then_repeat_keeps_the_total_and_the_order() -> None:
    """A window score that knows each customer's expected next 90 days (up to noise) carried on
    at its own rate ignores dropout and overshoots the year's revenue by a third or more;
    followed by BG/NBD beyond the window the total holds, and the order beats BG/NBD alone."""
    summary, year, quarter = draw_buyers_split(3000, days=270.0, future=365.25, window=90.0)
    window_value = quarter * np.random.default_rng(5).lognormal(0.0, 0.3, len(quarter))
    names = NAMES
    X = np.column_stack([summary[:, 0] + 1, summary[:, 3] * (summary[:, 0] + 1),
                         summary[:, 2] - summary[:, 1], summary[:, 2], summary[:, 2]])  # fmt: skip
    repeat = RepeatPurchaseModel(horizon=365.25).fit(purchase_summary(X, names, 365))
    model = LifetimeValue("window_repeat", 12, 0.0, value_days=90, repeat=repeat)
    scores = {"window_value": window_value}
    ours = model.predict(X, names, scores)
    assert ours.sum() == pytest.approx(year.sum(), rel=0.1)
    assert (window_value * 365.25 / 90).sum() > 1.25 * year.sum()
    alone = repeat.predict(purchase_summary(X, names, 365))
    assert np.corrcoef(ours, year)[0, 1] > np.corrcoef(alone, year)[0, 1] + 0.05
    assert spearmanr(ours, year).statistic > spearmanr(alone, year).statistic + 0.05
    beyond = repeat.predict(purchase_summary(X, names, 365), start=90.0)
    assert ours == pytest.approx(window_value + beyond, rel=1e-9)
    assert model.predict(X, names, scores, horizon=45.0) == pytest.approx(window_value / 2)
    loaded = LifetimeValue.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.array_equal(loaded.predict(X, names, scores), ours)
    with pytest.raises(NextbestError, match="needs the value horizon"):
        LifetimeValue("window_repeat", 12, 0.0, repeat=repeat)


def test_survival_projection_is_the_daily_sum() -> None:
    p, window = np.array([0.0, 0.1, 0.5]), np.array([90.0, 90.0, 90.0])
    got = survival_value(p, 90, window, 90, 365.25, discount_rate=0.1)
    mu = -np.log1p(-p) / 90
    days = np.arange(0, 365.25, 0.01)[:, None]
    alive_window = np.exp(-mu * np.arange(0, 90, 0.01)[:, None]).sum(axis=0) * 0.01
    spend = window / alive_window
    want = (spend * np.exp(-(mu + np.log1p(0.1) / 365.25) * days)).sum(axis=0) * 0.01
    assert got == pytest.approx(want, rel=1e-3)
    assert survival_value(0.0, 90, 90.0, 90, 365.25) == pytest.approx(365.25)
    assert np.all(np.diff(survival_value(np.linspace(0, 0.9, 10), 90, 100.0, 90, 730)) < 0)


NAMES = ["purchase_days_365d", "revenue_365d", "days_since_last_purchase",
         "days_since_first_purchase", "days_since_first_event"]  # fmt: skip


def test_purchase_summary_counts_purchase_days() -> None:
    X = np.array([
        [3, 90.0, 9.5, 99.2, 120.0],  # born on day 100 (its first purchase), two repeat days
        [0, 0.0, np.nan, np.nan, 500.0],  # never bought: born at its first event, capped
        [1, 20.0, 399.0, 799.0, 800.0],  # bought before the window, once in it (day 399 > 365)
        [2, 30.0, 40.0, 800.0, 800.0],  # bought before: both days in the window are repeats
        [1, 40.0, 30.0, 30.0, 60.0],  # one purchase day (two orders on it): no repeat yet
    ])  # fmt: skip
    summary = purchase_summary(X, NAMES, 365)
    assert summary.tolist() == [
        [2, 90, 100, 30],
        [0, 0, 365, 0],
        [1, 0, 365, 20],
        [2, 325, 365, 15],
        [0, 0, 30, 40],
    ]
    with pytest.raises(NextbestError, match="lack revenue_365d"):
        purchase_summary(X[:, [0, 2, 3, 4]], [NAMES[0], *NAMES[2:]], 365)


AS_OF = datetime(2025, 1, 1)


def draw_orders(n: int, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """A BG/NBD x Gamma-Gamma population whose every purchase arrives as 1 + Poisson(1.5) orders
    on the same day (the day's spend split among them): the events table up to AS_OF, the
    revenue of each customer's next 365 days, and the orders and days per customer."""
    summary, future = draw_buyers(n, days=270.0, future=365.0, seed=seed)
    rng = np.random.default_rng(seed + 1)
    rows, orders = [], np.zeros(n)
    for i, (x, t_x, T, m) in enumerate(summary):
        birth = AS_OF - timedelta(days=float(np.ceil(T)))
        times = [0.0] if x == 0 else np.sort(np.r_[0.0, rng.uniform(0, t_x, int(x) - 1), t_x])
        for t in times:  # the middle purchases' times do not matter to the summary
            day = (birth + timedelta(days=float(t))).replace(hour=0, minute=0, second=0)
            k = 1 + rng.poisson(1.5)
            hours = np.sort(rng.uniform(0, 23.9, k))
            spend = rng.dirichlet(np.ones(k)) * (m if x else 50.0)
            rows += [
                (f"c{i}", day + timedelta(hours=float(h)), float(v))
                for h, v in zip(hours, spend, strict=True)
            ]
            orders[i] += k
    events = pd.DataFrame(rows, columns=["customer_id", "ts", "value"])
    events = events.assign(channel="web", event_type="purchase")
    customers = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)]})
    return customers, events, future, orders


def test_repeat_purchases_are_days_not_orders() -> None:
    """Orders split over one day are one transaction: the fit read through the features recovers
    the population's daily purchase rate, which counting orders would inflate."""
    customers, events, future, orders = draw_orders(3000)
    con = duckdb.connect()
    con.register("customers", customers)
    con.register("events", events)
    frame = FeatureBuilder().fit_transform(con, as_of=AS_OF)
    order = frame["customer_id"].str[1:].astype(int).to_numpy()
    future, orders = future[order], orders[order]
    names = list(frame.columns[2:])
    X = frame[names].to_numpy(dtype=np.float64)
    summary = purchase_summary(X, names, 365)
    assert summary[:, 0].sum() < 0.5 * (orders.sum() - len(orders))  # days, not orders
    model = RepeatPurchaseModel(horizon=365.0).fit(summary)
    r, alpha, a, b = model.bgnbd_
    assert r / alpha == pytest.approx(TRUE_BGNBD[0] / TRUE_BGNBD[1], rel=0.15)
    assert a / (a + b) == pytest.approx(1.5 / 5.5, rel=0.3)
    p, q, gamma = model.gamma_gamma_
    assert gamma * p / (q - 1) == pytest.approx(60.0, rel=0.1)  # spend per purchase day
    pred = model.predict(summary)
    assert pred.sum() == pytest.approx(future.sum(), rel=0.15)
    assert np.corrcoef(pred, future)[0, 1] > 0.45
    by_order = summary.copy()  # the same customers with every order a transaction
    by_order[:, 0] = np.maximum(frame["purchases_365d"].to_numpy() - 1, 0)
    inflated = RepeatPurchaseModel(horizon=365.0).fit(by_order).bgnbd_
    assert inflated[0] / inflated[1] > 1.5 * TRUE_BGNBD[0] / TRUE_BGNBD[1]


def test_bad_summaries_are_refused() -> None:
    with pytest.raises(NextbestError, match=r"\(n, 4\)"):
        RepeatPurchaseModel().fit(np.zeros((5, 3)))
    with pytest.raises(NextbestError, match="finite"):
        RepeatPurchaseModel().fit(np.full((5, 4), np.nan))
    with pytest.raises(NextbestError, match="repeat purchases"):
        RepeatPurchaseModel().fit(np.zeros((5, 4)))


def test_the_bundle_keeps_it_as_json(buyers: tuple[np.ndarray, np.ndarray]) -> None:
    names = NAMES
    summary, _ = buyers
    X = np.column_stack([summary[:, 0] + 1, summary[:, 3] * (summary[:, 0] + 1),
                         summary[:, 2] - summary[:, 1], summary[:, 2], summary[:, 2]])  # fmt: skip
    repeat = RepeatPurchaseModel(horizon=365.25).fit(purchase_summary(X, names, 365))
    model = LifetimeValue(
        "blend", 12, 0.05, churn_days=90, value_days=90, repeat=repeat, weight=0.4
    )
    scores = {"churn_probability": np.full(len(X), 0.1), "window_value": summary[:, 3]}
    loaded = LifetimeValue.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.array_equal(loaded.predict(X, names, scores), model.predict(X, names, scores))
    repeat_only = model.predict(X, names, scores) - 0.6 * survival_value(
        0.1, 90, summary[:, 3], 90, 365.25, 0.05
    )
    alone = repeat.predict(purchase_summary(X, names, 365), discount_rate=0.05)
    assert repeat_only / 0.4 == pytest.approx(alone, rel=1e-9)
    with pytest.raises(NextbestError, match="needs a fitted"):
        LifetimeValue("repeat_purchase", 12, 0.0)
    with pytest.raises(NextbestError, match="format"):
        LifetimeValue.from_dict({"format": 99})
