"""Weekly dynamics of the simulated world: service contacts, complaints, satisfaction and churn hazard.

The same functions drive the realised journey (events are drawn from the rates) and the Monte-Carlo
ground truth (outcomes are taken in expectation along sampled paths), so the truth is the truth of
exactly the world that produced the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from training.synth.world import Population

CONTRACT_LOGIT = np.array([0.7, -0.6, -1.2])  # monthly, annual, two-year
BASE_CHURN_LOGIT = -5.6
SAT_AR = 0.85  # weekly persistence of satisfaction shocks
FAIL_DECAY = 0.75  # weekly decay of the memory of service failures
NPS_ANSWER_SD = 1.2  # noise of one survey answer around the customer's NPS mean


@dataclass
class State:
    """What changes week to week for each customer (arrays of one length)."""

    sat: np.ndarray
    recent_fail: np.ndarray  # decayed count of unresolved contacts and complaints
    recent: (
        np.ndarray
    )  # (n, 3, 4): complaints, unresolved and all contacts in each of the last 4 weeks
    alive: np.ndarray
    action: np.ndarray  # index of the action in force (-1: none)
    action_weeks_left: np.ndarray
    effect: Effect

    def copy(self) -> State:
        return State(
            **{k: v.copy() for k, v in vars(self).items() if k != "effect"},
            effect=self.effect.copy(),
        )

    @property
    def complaints_4w(self) -> np.ndarray:
        return self.recent[:, 0].sum(axis=1)

    @property
    def unresolved_4w(self) -> np.ndarray:
        return self.recent[:, 1].sum(axis=1)

    @property
    def contacts_4w(self) -> np.ndarray:
        return self.recent[:, 2].sum(axis=1)

    def take(self, idx: np.ndarray) -> State:
        """The state of the customers at positions `idx` (may repeat them, for Monte-Carlo paths)."""
        return State(
            **{k: v[idx] for k, v in vars(self).items() if k != "effect"},
            effect=self.effect.take(idx),
        )


@dataclass
class Effect:
    """How an action in force shifts the weekly mechanics (neutral: zeros and ones)."""

    churn_logit: np.ndarray
    purchase_mult: np.ndarray
    sat_push: np.ndarray
    resolve_logit: np.ndarray

    @staticmethod
    def neutral(n: int) -> Effect:
        return Effect(np.zeros(n), np.ones(n), np.zeros(n), np.zeros(n))

    def copy(self) -> Effect:
        return Effect(*(a.copy() for a in vars(self).values()))

    def take(self, idx: np.ndarray) -> Effect:
        return Effect(*(a[idx] for a in vars(self).values()))

    def assign(self, mask: np.ndarray, other: Effect) -> None:
        """Where `mask`, replace this effect by `other` (arrays aligned with mask's True positions)."""
        for name, arr in vars(self).items():
            arr[mask] = getattr(other, name)


def initial_state(pop: Population) -> State:
    n = len(pop)
    zeros = np.zeros(n)
    return State(
        sat=pop.sat0.copy(),
        recent_fail=zeros.copy(),
        recent=np.zeros((n, 3, 4)),
        alive=np.ones(n, dtype=bool),
        action=np.full(n, -1),
        action_weeks_left=np.zeros(n, dtype=np.int64),
        effect=Effect.neutral(n),
    )


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def contact_rates(pop: Population) -> tuple[np.ndarray, np.ndarray]:
    """Weekly rates of calls and chats: driven by service need, split by digital preference."""
    base = 0.06 * pop.service_need
    return base * (1.2 - pop.digital), base * (0.2 + pop.digital)


def resolve_probability(pop: Population, st: State) -> np.ndarray:
    """Chance a contact is resolved: harder for needy customers, easier on premium support."""
    return sigmoid(
        1.3 - 0.8 * (pop.service_need - 1.0) + 0.6 * (pop.plan == 2) + st.effect.resolve_logit
    )


def complaint_rate(st: State, unresolved: np.ndarray) -> np.ndarray:
    return 0.006 + 0.3 * unresolved + 0.02 * np.maximum(-st.sat, 0.0)


def churn_hazard(pop: Population, st: State, week: int) -> np.ndarray:
    """Weekly probability of cancelling: satisfaction, price, contract, tenure and recent failures."""
    tenure_years = np.maximum(week - pop.signup_week, 0) / 52.0
    logit = (
        BASE_CHURN_LOGIT
        - 0.8 * st.sat
        + 1.6 * pop.price_sens * (pop.fee / 40.0 - 0.4)
        + CONTRACT_LOGIT[pop.contract]
        - 0.35 * np.log1p(tenure_years)
        + 0.45 * np.minimum(st.recent_fail, 4.0)
        + st.effect.churn_logit
    )
    return sigmoid(logit)


def purchase_rate(pop: Population, st: State) -> np.ndarray:
    """Weekly rate of ad-hoc purchases (the monthly bill is separate)."""
    return 0.1 * pop.engagement * np.exp(0.15 * st.sat) * st.effect.purchase_mult


def visit_rate(pop: Population, st: State) -> np.ndarray:
    return 0.25 * pop.engagement * (1.0 + 0.1 * np.clip(st.sat, -2, 2))


def nps_mean(sat: np.ndarray) -> np.ndarray:
    """The NPS answer's centre for latent satisfaction `sat`: an answer is this plus noise
    (`NPS_ANSWER_SD`), rounded and kept to 0-10."""
    return np.clip(7.0 + 1.8 * sat, 0.0, 10.0)


def nps_answer(sat: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Survey answers (integers 0-10) given standard-normal `noise`."""
    return np.clip(np.round(nps_mean(sat) + NPS_ANSWER_SD * noise), 0, 10)


def expected_nps_answer(sat: np.ndarray) -> np.ndarray:
    """E[nps_answer]: the mean of the rounded, bounded answer, which near 10 (or 0) is pulled
    inwards from `nps_mean` (by 0.3 points at a centre of 9.5), and so are effects there."""
    centre = nps_mean(sat)[..., None]
    cuts = (np.arange(10) + 0.5 - centre) / NPS_ANSWER_SD  # answer k <=> between cuts k-1 and k
    return (1.0 - ndtr(cuts)).sum(axis=-1)  # E[K] = sum over k=1..10 of P(K >= k)


def advance(
    pop: Population,
    st: State,
    rng: np.random.Generator,
    unresolved: np.ndarray,
    complaints: np.ndarray,
    contacts: np.ndarray,
    week: int,
) -> None:
    """Update satisfaction, failure memory and action clocks after a week (in place)."""
    noise = rng.normal(0.0, 0.12, size=len(st.sat))
    st.sat = (
        pop.sat0
        + SAT_AR * (st.sat - pop.sat0)
        - 0.25 * unresolved
        - 0.15 * complaints
        + st.effect.sat_push
        + noise
    )
    st.recent_fail = FAIL_DECAY * st.recent_fail + unresolved + complaints
    slot = week % 4  # a ring buffer: only the sum over the 4 slots is ever read
    st.recent[:, 0, slot] = complaints
    st.recent[:, 1, slot] = unresolved
    st.recent[:, 2, slot] = contacts
    st.action_weeks_left = np.maximum(st.action_weeks_left - 1, 0)
    ended = (st.action >= 0) & (st.action_weeks_left == 0)
    if ended.any():
        st.action[ended] = -1
        st.effect.assign(ended, Effect.neutral(int(ended.sum())))
