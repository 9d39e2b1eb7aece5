"""Past campaigns: who was reached, which arm each got, and the logged propensity of that arm.

Randomized campaigns draw arms uniformly. Targeted ones follow a known policy on OBSERVABLE history
(contract, recent complaints, unresolved contacts, tenure, plan): the arms go preferentially to the
customers an analyst would pick, which correlates with the true effects, so a learner that ignores
the logged propensities is biased while the data stay unconfounded given the features.
"""

from __future__ import annotations

import numpy as np

from training.synth.actions import ARMS
from training.synth.dynamics import State
from training.synth.world import Campaign, Population


def targeted_probabilities(pop: Population, st: State, week: int) -> np.ndarray:
    """Arm probabilities (n, len(ARMS)) of the targeting policy: a softmax of observable scores."""
    tenure_y = np.maximum(week - pop.signup_week, 0) / 52.0
    n = len(pop)
    scores = np.column_stack(
        [
            np.full(n, 0.8),  # control
            1.3 * (pop.contract == 0) - 0.4,  # retention discount for monthly contracts
            1.6 * (st.unresolved_4w > 0) - 0.3,  # service call after unresolved contacts
            2.2 * (st.complaints_4w > 0) - 0.6,  # apology after complaints
            1.0 * (tenure_y > 3.0) - 0.5,  # loyalty upgrade for long tenure
            0.9 * ((pop.plan != 2) & (st.contacts_4w > 0)) - 0.5,  # premium trial
        ]
    )
    e = np.exp(scores - scores.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def assign(
    rng: np.random.Generator, campaign: Campaign, pop: Population, st: State, eligible: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pick the reached customers and their arms: (positions, arm index into ARMS, propensity)."""
    reached = np.flatnonzero(eligible & (rng.random(len(pop)) < campaign.reach))
    k = len(ARMS)
    if campaign.targeted:
        probs = targeted_probabilities(pop.take(reached), st.take(reached), campaign.week)
    else:
        arms = list(campaign.arms if campaign.arms is not None else range(k))
        probs = np.zeros((len(reached), k))
        probs[:, arms] = 1.0 / len(arms)
    cum = probs.cumsum(axis=1)
    u = rng.random(len(reached))[:, None]
    arm = np.minimum((u > cum).sum(axis=1), k - 1)
    return reached, arm, probs[np.arange(len(reached)), arm]
