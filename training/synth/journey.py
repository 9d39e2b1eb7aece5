"""One week of realised journeys: draw the events of every active customer from the world's rates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.synth import dynamics as dyn
from training.synth.world import PLAN_BASKET, Population

EVENT_TYPES = (
    "visit",
    "purchase",
    "call",
    "chat",
    "complaint",
    "email_open",
    "nps",
    "csat",
    "churn",
)
CHANNELS = ("web", "app", "store", "call_center", "chat", "email", "billing")
T = {name: i for i, name in enumerate(EVENT_TYPES)}
C = {name: i for i, name in enumerate(CHANNELS)}
WEEK_S = 7 * 86_400
NPS_WEEKLY_RATE = 0.03
CSAT_SHARE = 0.3


@dataclass
class EventBatch:
    """Events as parallel arrays; `resolved` is -1 where it does not apply (not a contact)."""

    cust: np.ndarray
    ts: np.ndarray  # seconds since the simulation start
    event_type: np.ndarray
    channel: np.ndarray
    value: np.ndarray
    resolved: np.ndarray

    @staticmethod
    def concat(batches: list[EventBatch]) -> EventBatch:
        return EventBatch(
            *(
                np.concatenate(parts)
                for parts in zip(*(vars(b).values() for b in batches), strict=True)
            )
        )

    def keep(self, mask: np.ndarray) -> EventBatch:
        return EventBatch(*(a[mask] for a in vars(self).values()))


class _Collector:
    """Accumulates the events of one week, type by type."""

    def __init__(self, rng: np.random.Generator, t0: int):
        self.rng, self.t0 = rng, t0
        self.parts: list[EventBatch] = []

    def add(
        self,
        counts: np.ndarray,
        etype: str,
        channel: np.ndarray | int,
        value: np.ndarray | None = None,
        resolved: np.ndarray | None = None,
        ts: np.ndarray | None = None,
    ) -> None:
        """Add `counts[i]` events of `etype` for customer i (arrays below are in customer order)."""
        cust = np.repeat(np.arange(len(counts)), counts)
        n = len(cust)
        chan = np.full(n, channel) if np.isscalar(channel) else np.asarray(channel)
        self.parts.append(
            EventBatch(
                cust=cust,
                ts=self.t0 + (ts if ts is not None else self.rng.integers(0, WEEK_S, size=n)),
                event_type=np.full(n, T[etype], dtype=np.int8),
                channel=chan.astype(np.int8),
                value=np.full(n, np.nan) if value is None else value,
                resolved=np.full(n, -1, dtype=np.int8) if resolved is None else resolved,
            )
        )


def simulate_week(
    pop: Population, st: dyn.State, week: int, rng: np.random.Generator, t0: int
) -> EventBatch:
    """Draw one week of events for the active customers, then advance the state (in place)."""
    n = len(pop)
    active = st.alive & (pop.signup_week <= week)
    col = _Collector(rng, t0)
    call_rate, chat_rate = dyn.contact_rates(pop)
    calls = rng.poisson(call_rate) * active
    chats = rng.poisson(chat_rate) * active
    p_res = dyn.resolve_probability(pop, st)
    unresolved = np.zeros(n)
    for etype, counts, mean_minutes in (("call", calls, 8.0), ("chat", chats, 12.0)):
        cust = np.repeat(np.arange(n), counts)
        ok = rng.random(len(cust)) < p_res[cust]
        unresolved += np.bincount(cust[~ok], minlength=n)
        minutes = np.round(rng.lognormal(np.log(mean_minutes), 0.5, len(cust)) * (1 + 0.6 * ~ok), 1)
        col.add(
            counts,
            etype,
            C["call_center" if etype == "call" else "chat"],
            minutes,
            ok.astype(np.int8),
        )
        asked = rng.random(len(cust)) < CSAT_SHARE  # cust is sorted, so cust[asked] is too
        score = 2.8 + 0.5 * st.sat[cust[asked]] + 0.9 * ok[asked] + rng.normal(0, 0.6, asked.sum())
        csat = np.clip(np.round(score), 1, 5)
        col.add(np.bincount(cust[asked], minlength=n), "csat", C["email"], csat)
    contacts = calls + chats
    complaints = rng.poisson(dyn.complaint_rate(st, unresolved)) * active
    col.add(
        complaints,
        "complaint",
        rng.choice([C["call_center"], C["email"], C["web"]], complaints.sum()),
    )
    visits = rng.poisson(dyn.visit_rate(pop, st)) * active
    vc = np.repeat(np.arange(n), visits)
    col.add(visits, "visit", np.where(rng.random(len(vc)) < pop.digital[vc], C["app"], C["web"]))
    buys = rng.poisson(dyn.purchase_rate(pop, st)) * active
    bc = np.repeat(np.arange(n), buys)
    basket = PLAN_BASKET[pop.plan[bc]]
    col.add(
        buys,
        "purchase",
        rng.choice([C["web"], C["app"], C["store"]], len(bc), p=[0.5, 0.3, 0.2]),
        np.round(rng.gamma(2.0, basket / 2.0), 2),
    )
    billed = active & (pop.bill_day // 7 == week % 4)
    bill_ts = (pop.bill_day % 7) * 86_400 + 7_200
    col.add(billed.astype(np.int64), "purchase", C["billing"], pop.fee[billed], ts=bill_ts[billed])
    col.add(rng.poisson(0.1 * (0.5 + pop.engagement) / 1.5) * active, "email_open", C["email"])
    nps = (rng.random(n) < NPS_WEEKLY_RATE) & active
    answer = dyn.nps_answer(st.sat[nps], rng.normal(0, 1.0, int(nps.sum())))
    col.add(nps.astype(np.int64), "nps", C["email"], answer)

    churned = active & (rng.random(n) < dyn.churn_hazard(pop, st, week))
    churn_at = rng.integers(0, WEEK_S, size=n)
    batch = EventBatch.concat(col.parts)
    batch = batch.keep(~churned[batch.cust] | (batch.ts - t0 < churn_at[batch.cust]))
    col.parts = [batch]
    col.add(churned.astype(np.int64), "churn", C["web"], ts=churn_at[churned])
    st.alive &= ~churned
    dyn.advance(pop, st, rng, unresolved, complaints.astype(float), contacts.astype(float), week)
    return EventBatch.concat(col.parts)
