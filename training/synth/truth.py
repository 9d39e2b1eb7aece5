"""Ground truth: each customer's expected outcomes over the next 90 days under control and every action.

Monte-Carlo over the world's own dynamics with common random numbers across arms. Along each sampled
path of contacts, complaints and satisfaction, churn and revenue are taken in expectation (survival
probabilities instead of a coin flip), which makes the estimates far less noisy than counting events.
Outcome definitions match the demo config: churn = P(cancel within 90 days), value = expected revenue
(bills + purchases) within 90 days, satisfaction = expected NPS answer (0-10) at the window's end.
"""

from __future__ import annotations

import numpy as np

from training.synth import dynamics as dyn
from training.synth.actions import ARMS, start_action
from training.synth.world import PLAN_BASKET, Population

HORIZON_WEEKS = 13
LAST_WEEK_SHARE = 6.0 / 7.0  # 90 days = 12 weeks and 6 days


def potential_outcomes(
    pop: Population, st: dyn.State, week: int, reps: int, seed: int, effect_weeks: int
) -> dict[str, np.ndarray]:
    """Expected churn, value and satisfaction per arm: columns `<outcome>_<arm>`, one row per customer.

    Arm `control` keeps any action already in force; any other arm replaces it from this week on.
    """
    n = len(pop)
    idx = np.tile(np.arange(n), reps)
    out: dict[str, np.ndarray] = {}
    for a, arm in enumerate(ARMS):
        p, s = pop.take(idx), st.take(idx)
        if a > 0:
            start_action(p, s, np.ones(len(idx), dtype=bool), a - 1, week, effect_weeks)
        churn, value, sat = _expected_path(p, s, week, np.random.default_rng(seed))
        out[f"churn_{arm}"] = churn.reshape(reps, n).mean(axis=0)
        out[f"value_{arm}"] = value.reshape(reps, n).mean(axis=0)
        out[f"satisfaction_{arm}"] = sat.reshape(reps, n).mean(axis=0)
    return out


def _expected_path(
    pop: Population, st: dyn.State, week: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Walk the horizon once: sample contacts and satisfaction, take churn and revenue in expectation."""
    n = len(pop)
    survival = np.ones(n)
    revenue = np.zeros(n)
    basket = PLAN_BASKET[pop.plan]
    call_rate, chat_rate = dyn.contact_rates(pop)
    for k in range(HORIZON_WEEKS):
        share = LAST_WEEK_SHARE if k == HORIZON_WEEKS - 1 else 1.0
        w = week + k
        contacts = rng.poisson(call_rate + chat_rate)
        unresolved = rng.binomial(contacts, 1.0 - dyn.resolve_probability(pop, st)).astype(float)
        complaints = rng.poisson(dyn.complaint_rate(st, unresolved)).astype(float)
        hazard = 1.0 - (1.0 - dyn.churn_hazard(pop, st, w)) ** share
        billed = (pop.bill_day // 7 == w % 4) & ((pop.bill_day % 7) < 7 * share)
        spend = share * dyn.purchase_rate(pop, st) * basket + billed * pop.fee
        revenue += (
            survival * (1.0 - hazard / 2.0) * spend
        )  # a churner keeps half the week on average
        survival *= 1.0 - hazard
        dyn.advance(pop, st, rng, unresolved, complaints, contacts.astype(float), w)
    return 1.0 - survival, revenue, dyn.nps_mean(st.sat)
