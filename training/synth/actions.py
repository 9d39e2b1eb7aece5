"""The simulated actions and their true, heterogeneous effects.

Each action shifts the weekly mechanics for 13 weeks. Effects depend on the customer's latent traits and
recent history at the time of the action, so every action has a segment it helps, most customers for
whom it is not worth its cost, and for some actions a segment it harms ("sleeping dogs").
"""

from __future__ import annotations

import numpy as np

from training.synth.dynamics import Effect, State
from training.synth.world import Population, WorldConfig

ACTION_IDS = (
    "retention_discount",
    "proactive_service_call",
    "apology_credit",
    "loyalty_upgrade",
    "premium_support_trial",
)
#: cost per action, as in the demo catalog (training/demo/actions.yaml)
ACTION_COSTS = (15.0, 8.0, 4.0, 25.0, 12.0)
ARMS = ("control", *ACTION_IDS)

#: who each action helps and harms, in words (for the ground-truth manifest and the docs)
EFFECT_NOTES = {
    "retention_discount": "cuts churn of price-sensitive monthly customers; harms content, long-"
    "tenure customers on annual/two-year contracts (reminded to shop around)",
    "proactive_service_call": "cuts churn and lifts resolution after unresolved contacts and for "
    "high-need customers; annoys low-need customers without recent problems",
    "apology_credit": "lifts satisfaction and cuts churn right after a complaint; no effect otherwise",
    "loyalty_upgrade": "lifts spending of highly engaged customers, small churn cut for long tenure; "
    "rarely worth its cost",
    "premium_support_trial": "lifts resolution, retention and spend of high-need non-premium "
    "customers; nothing for premium customers or low-need ones",
}


def _retention_discount(pop: Population, st: State, tenure_y: np.ndarray) -> Effect:
    monthly = pop.contract == 0
    sleeping = (~monthly) & (tenure_y > 2.0) & (st.sat > 0.0)
    churn = -1.6 * pop.price_sens * np.where(monthly, 1.0, 0.3) + 0.9 * sleeping
    return Effect(churn, 1.0 + 0.2 * pop.price_sens, np.full(len(pop), 0.01), np.zeros(len(pop)))


def _proactive_call(pop: Population, st: State, tenure_y: np.ndarray) -> Effect:
    fail = np.tanh(st.recent_fail + 0.5 * st.unresolved_4w)
    high_need = pop.service_need > 1.2
    annoyed = (pop.service_need < 0.8) & (st.recent_fail < 0.2)
    churn = -1.4 * fail - 0.3 * high_need + 0.5 * annoyed
    sat = 0.05 * fail - 0.04 * annoyed
    return Effect(churn, np.ones(len(pop)), sat, 0.8 * high_need)


def _apology_credit(pop: Population, st: State, tenure_y: np.ndarray) -> Effect:
    complained = st.complaints_4w > 0
    churn = -1.2 * complained * np.tanh(0.5 + st.recent_fail)
    sat = np.where(complained, 0.1, 0.004)
    return Effect(churn, np.ones(len(pop)), sat, np.zeros(len(pop)))


def _loyalty_upgrade(pop: Population, st: State, tenure_y: np.ndarray) -> Effect:
    lift = 1.0 + 0.6 * np.clip(pop.engagement - 1.0, 0.0, 2.5)
    churn = -0.3 * (tenure_y > 3.0)
    return Effect(churn, lift, np.full(len(pop), 0.02), np.zeros(len(pop)))


def _premium_trial(pop: Population, st: State, tenure_y: np.ndarray) -> Effect:
    fits = (pop.plan != 2) & (pop.service_need > 1.2)
    churn = -0.5 * fits
    return Effect(churn, 1.0 + 0.25 * fits, 0.04 * fits, 1.5 * fits)


_EFFECTS = (_retention_discount, _proactive_call, _apology_credit, _loyalty_upgrade, _premium_trial)


def action_effect(action: int, pop: Population, st: State, week: int) -> Effect:
    """The effect of action index `action` (into ACTION_IDS) on these customers, starting this week."""
    tenure_y = np.maximum(week - pop.signup_week, 0) / 52.0
    return _EFFECTS[action](pop, st, tenure_y)


def harm_logits(cfg: WorldConfig) -> np.ndarray:
    """`cfg.harm` as one churn log-odds shift per action index (zeros: no action harms beyond its
    documented effect); raise ValueError on an action the simulator does not know."""
    unknown = sorted(set(cfg.harm) - set(ACTION_IDS))
    if unknown:
        raise ValueError(
            f"WorldConfig.harm names unknown actions {unknown}; known: {', '.join(ACTION_IDS)}"
        )
    return np.array([float(cfg.harm.get(a, 0.0)) for a in ACTION_IDS])


def start_action(
    pop: Population,
    st: State,
    mask: np.ndarray,
    action: int,
    week: int,
    weeks: int,
    harm: np.ndarray | None = None,
) -> None:
    """Put `action` in force for the customers in `mask` (in place); it replaces any action in
    force. `harm` (from `harm_logits`) adds each action's configured churn log-odds."""
    if not mask.any():
        return
    idx = np.flatnonzero(mask)
    eff = action_effect(action, pop.take(idx), st.take(idx), week)
    if harm is not None:
        eff.churn_logit = eff.churn_logit + harm[action]
    st.effect.assign(mask, eff)
    st.action[mask] = action
    st.action_weeks_left[mask] = weeks
