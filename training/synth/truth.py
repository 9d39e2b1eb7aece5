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

For the customers' truth, `lifetime_revenue` walks the same dynamics 12 and 24 months on under
control (`value_12m`, `value_24m`): what a lifetime-value model is scored against.
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
MONTH_DAYS = 365.25 / 12
LIFETIME_MONTHS = (12, 24)  # the long horizons of the customers' truth (value_12m, value_24m)


def potential_outcomes(
    pop: Population,
    st: dyn.State,
    week: int,
    reps: int,
    seed: int,
    effect_weeks: int,
    harm: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Expected churn, value and satisfaction per arm: columns `<outcome>_<arm>`, one row per customer.

    Arm `control` keeps any action already in force; any other arm replaces it from this week on
    (with the world's `harm`, as `actions.start_action` puts it in force).
    """
    n = len(pop)
    idx = np.tile(np.arange(n), reps)
    out: dict[str, np.ndarray] = {}
    for a, arm in enumerate(ARMS):
        p, s = pop.take(idx), st.take(idx)
        if a > 0:
            start_action(p, s, np.ones(len(idx), dtype=bool), a - 1, week, effect_weeks, harm)
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
        hazard, spend = _step(pop, st, w, share, rng, call_rate + chat_rate, basket)
        revenue += (
            survival * (1.0 - hazard / 2.0) * spend
        )  # a churner keeps half the week on average
        survival *= 1.0 - hazard
    return 1.0 - survival, revenue, nps / answered


def _step(
    pop: Population,
    st: dyn.State,
    w: int,
    share: float,
    rng: np.random.Generator,
    contact_rate: np.ndarray,
    basket: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """One week (or its first `share`) along a path: sample contacts, failures and complaints, take
    the week's churn hazard and the spend of a customer alive all week, then advance the state."""
    n = len(pop)
    contacts = poisson_from_uniform(rng.random(n), contact_rate)
    fails = rng.random((n, MAX_CONTACTS)) < (1.0 - dyn.resolve_probability(pop, st))[:, None]
    unresolved = (fails & (np.arange(MAX_CONTACTS) < contacts[:, None])).sum(axis=1)
    unresolved = unresolved.astype(float)
    complaints = poisson_from_uniform(rng.random(n), dyn.complaint_rate(st, unresolved))
    complaints = complaints.astype(float)
    hazard, spend = _week_money(pop, st, w, share, basket)
    dyn.advance(pop, st, rng, unresolved, complaints, contacts.astype(float), w)
    return hazard, spend


def _week_money(
    pop: Population, st: dyn.State, w: int, share: float, basket: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The churn hazard over the first `share` of week `w` and the spend in it of a customer
    alive throughout (ad-hoc purchases at the week's rate, the bill if it falls in it)."""
    hazard = 1.0 - (1.0 - dyn.churn_hazard(pop, st, w)) ** share
    billed = (pop.bill_day // 7 == w % 4) & ((pop.bill_day % 7) < 7 * share)
    return hazard, share * dyn.purchase_rate(pop, st) * basket + billed * pop.fee


def lifetime_revenue(
    pop: Population, st: dyn.State, week: int, reps: int, seed: int, months: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Expected revenue (bills + purchases) over each horizon of `months` from `week` on, with no
    new action (one in force runs its course): columns `value_<m>m`, one row per customer.

    The same walk as the 90-day truth, only longer: churn and spend in expectation along `reps`
    sampled paths of contacts and satisfaction. A month is 30.4375 days (365.25 / 12)."""
    n = len(pop)
    idx = np.tile(np.arange(n), reps)
    pop, st = pop.take(idx), st.take(idx)
    rng = np.random.default_rng(seed)
    ends = {m: m * MONTH_DAYS / 7.0 for m in months}  # horizons in (fractional) weeks
    survival = np.ones(len(idx))
    revenue = np.zeros(len(idx))
    out: dict[str, np.ndarray] = {}
    basket = PLAN_BASKET[pop.plan]
    calls, chats = dyn.contact_rates(pop)
    contact_rate = calls + chats
    for k in range(int(np.ceil(max(ends.values())))):
        for m, end in ends.items():
            if k < end < k + 1:  # the horizon ends inside this week: count only its first part
                hazard, spend = _week_money(pop, st, week + k, end - k, basket)
                out[f"value_{m}m"] = revenue + survival * (1.0 - hazard / 2.0) * spend
        hazard, spend = _step(pop, st, week + k, 1.0, rng, contact_rate, basket)
        revenue += survival * (1.0 - hazard / 2.0) * spend  # a churner keeps half the week
        survival *= 1.0 - hazard
        for m, end in ends.items():
            if end == k + 1:
                out[f"value_{m}m"] = revenue.copy()
    return {name: v.reshape(reps, n).mean(axis=0) for name, v in out.items()}


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
