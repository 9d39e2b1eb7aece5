"""Ground truth: each customer's expected outcomes over the next 90 days under control and every action.

Monte-Carlo over the world's own dynamics with common random numbers across arms: every draw has a
fixed size and goes through an inverse CDF, so the arms of one path see the very same uniforms and
their difference is the action's effect, not sampling noise. Along each sampled
path of contacts, complaints and satisfaction, churn and revenue are taken in expectation (survival
probabilities instead of a coin flip), which makes the estimates far less noisy than counting events.
Outcome definitions match the demo config: churn = P(cancel within 90 days), value = expected revenue
(bills + purchases) within 90 days, satisfaction = the expected value of the *last* NPS answer in the
window (`kind: last`), given there is one: each week's expected answer (rounded and bounded to
0-10 like a real one) weighted by the chance that the customer is still there, answers that week
and not later. At 3% answers a week that is close to the window's average; the NPS at the
window's end (the first definition) read the action's full, built-up effect, about three times
what any label shows, and the answer's unrounded centre (the second) overstated it near 10.
"""

from __future__ import annotations

import numpy as np

from training.synth import dynamics as dyn
from training.synth.actions import ARMS, start_action
from training.synth.journey import NPS_WEEKLY_RATE
from training.synth.world import PLAN_BASKET, Population

HORIZON_WEEKS = 13
MAX_CONTACTS = 8  # contacts in one week beyond this are vanishingly rare at the world's rates
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
    answered = np.zeros(n)  # sum over weeks of P(alive, answers this week and never later)
    nps = np.zeros(n)  # ... times that week's expected answer
    for k in range(HORIZON_WEEKS):
        share = LAST_WEEK_SHARE if k == HORIZON_WEEKS - 1 else 1.0
        w = week + k
        last = (
            survival * NPS_WEEKLY_RATE * share * (1.0 - NPS_WEEKLY_RATE) ** (HORIZON_WEEKS - 1 - k)
        )
        answered += last
        nps += last * dyn.expected_nps_answer(st.sat)  # from the week's opening satisfaction
        contacts = poisson_from_uniform(rng.random(n), call_rate + chat_rate)
        fails = rng.random((n, MAX_CONTACTS)) < (1.0 - dyn.resolve_probability(pop, st))[:, None]
        unresolved = (fails & (np.arange(MAX_CONTACTS) < contacts[:, None])).sum(axis=1)
        unresolved = unresolved.astype(float)
        complaints = poisson_from_uniform(rng.random(n), dyn.complaint_rate(st, unresolved))
        complaints = complaints.astype(float)
        hazard = 1.0 - (1.0 - dyn.churn_hazard(pop, st, w)) ** share
        billed = (pop.bill_day // 7 == w % 4) & ((pop.bill_day % 7) < 7 * share)
        spend = share * dyn.purchase_rate(pop, st) * basket + billed * pop.fee
        revenue += (
            survival * (1.0 - hazard / 2.0) * spend
        )  # a churner keeps half the week on average
        survival *= 1.0 - hazard
        dyn.advance(pop, st, rng, unresolved, complaints, contacts.astype(float), w)
    return 1.0 - survival, revenue, nps / answered


def poisson_from_uniform(u: np.ndarray, lam: np.ndarray, kmax: int = 30) -> np.ndarray:
    """Poisson(lam) draws by inverse CDF of given uniforms (one uniform per draw, whatever lam)."""
    p = np.exp(-lam)
    cdf = p.copy()
    k = np.zeros(u.shape, dtype=np.int64)
    for i in range(1, kmax):
        more = u > cdf
        if not more.any():
            break
        k += more
        p = p * lam / i
        cdf += p
    return k
