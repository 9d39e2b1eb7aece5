"""The simulated world: its calendar, its customers (static attributes and latent traits) and its knobs.

Everything random is drawn from generators seeded by (seed, chunk), so a data set is reproducible and
chunks can be simulated independently with bounded memory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import date, timedelta

import numpy as np

PLANS = np.array(["basic", "standard", "premium"])
CONTRACTS = np.array(["monthly", "annual", "two_year"])
REGIONS = np.array(["north", "south", "east", "west", "capital"])
AGE_BANDS = np.array(["18-24", "25-34", "35-49", "50-64", "65+"])
PAYMENT_METHODS = np.array(["card", "direct_debit", "invoice"])

#: monthly fee and the mean basket of an ad-hoc purchase, by plan
PLAN_FEE = np.array([25.0, 40.0, 65.0])
PLAN_BASKET = np.array([30.0, 45.0, 70.0])


@dataclass(frozen=True)
class Campaign:
    """A past campaign: in week `week`, a random `reach` share of active customers is assigned an arm.

    `targeted=False` draws arms uniformly (a randomized test); `targeted=True` uses the known,
    feature-dependent propensities of `campaigns.targeted_probabilities`.
    """

    week: int
    targeted: bool
    reach: float = 0.3
    #: indices into actions.ARMS a randomized campaign draws from (None: every arm); control
    #: (0) among them keeps a control group
    arms: tuple[int, ...] | None = None


@dataclass(frozen=True)
class WorldConfig:
    """The calendar and the sizes of the simulation; the defaults are the waves design (the demo
    world reaches more customers with the same calendar: DESIGNS["demo"])."""

    start: date = date(2024, 11, 4)  # a Monday; weeks run Monday to Sunday
    weeks: int = 104
    chunk_size: int = 25_000
    # two targeted waves between randomized ones; the last, randomized wave reaches most active
    # customers, so that the held-out exposures can tell a policy's value from doing nothing
    campaigns: tuple[Campaign, ...] = (
        Campaign(26, targeted=False),
        Campaign(40, targeted=True),
        Campaign(54, targeted=False, reach=0.5),
        Campaign(68, targeted=True),
        Campaign(82, targeted=False, reach=0.8),
    )
    #: weeks at which the ground truth is computed for the evaluation customers (91: the last
    #: training snapshot of the demo config, 104: the end of the data, "today" for batch scoring)
    truth_weeks: tuple[int, ...] = (91, 104)
    truth_customers: int = 50_000  # the first N customers are the evaluation customers
    truth_reps: int = 16  # Monte-Carlo paths per customer and arm
    effect_weeks: int = 13  # an action works for 13 weeks (the 90-day outcome window)
    late_joiner_share: float = 0.2
    #: churn log-odds an action adds, on top of its effect in actions.py, for every customer it
    #: reaches while in force, by action id: a truly harmful action (positive values; none by
    #: default), which a policy that recommends it must be seen to lose money on
    harm: dict[str, float] = field(default_factory=dict)
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for action, logit in self.harm.items():
            if not isinstance(logit, int | float) or not math.isfinite(logit) or logit <= 0:
                raise ValueError(
                    f"WorldConfig.harm[{action!r}] must be a positive, finite churn log-odds "
                    f"shift; got {logit!r}"
                )

    def week_start(self, week: int) -> date:
        return self.start + timedelta(weeks=week)

    @property
    def end(self) -> date:
        return self.week_start(self.weeks)


@dataclass
class Population:
    """Static attributes (observable) and latent traits (never written to the data set) of a chunk."""

    ids: np.ndarray
    plan: np.ndarray  # index into PLANS
    contract: np.ndarray  # index into CONTRACTS
    region: np.ndarray
    age_band: np.ndarray
    payment: np.ndarray
    paperless: np.ndarray
    fee: np.ndarray
    signup_week: np.ndarray  # negative: joined before the window starts
    bill_day: np.ndarray  # day of the 4-week cycle on which the monthly bill is issued
    sat0: np.ndarray  # long-run satisfaction (latent)
    price_sens: np.ndarray  # 0..1 (latent)
    engagement: np.ndarray  # > 0, mean ~1 (latent)
    service_need: np.ndarray  # > 0, mean ~1 (latent)
    digital: np.ndarray  # 0..1 preference for app/chat over web/call (latent)

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx: np.ndarray) -> Population:
        """The customers at positions `idx` (may repeat them, for Monte-Carlo paths)."""
        return Population(**{k: v[idx] for k, v in vars(self).items()})


def customer_ids(first: int, n: int) -> np.ndarray:
    """Stable, zero-padded string ids so that lexical and numeric order agree."""
    return np.char.add("C", np.char.zfill(np.arange(first, first + n).astype(str), 8))


def draw_population(rng: np.random.Generator, first: int, n: int, cfg: WorldConfig) -> Population:
    """Draw `n` customers; latent traits correlate with the observable attributes, as in real CX data."""
    age = rng.choice(5, size=n, p=[0.12, 0.25, 0.3, 0.22, 0.11])
    plan = rng.choice(3, size=n, p=[0.5, 0.35, 0.15])
    contract = rng.choice(3, size=n, p=[0.55, 0.3, 0.15])
    tenure_weeks = np.minimum(rng.exponential(150.0, size=n), 600).astype(np.int64)
    late = rng.random(n) < cfg.late_joiner_share
    signup_week = np.where(late, rng.integers(0, cfg.weeks - 14, size=n), -tenure_weeks)
    young = (age <= 1).astype(float)
    price_sens = np.clip(rng.beta(2.0, 3.0, size=n) + 0.15 * young - 0.1 * (plan == 2), 0, 1)
    need = rng.gamma(4.0, 0.25, size=n) * (1 + 0.15 * (age >= 3))
    return Population(
        ids=customer_ids(first, n),
        plan=plan,
        contract=contract,
        region=rng.choice(5, size=n, p=[0.2, 0.2, 0.2, 0.15, 0.25]),
        age_band=age,
        payment=rng.choice(3, size=n, p=[0.45, 0.4, 0.15]),
        paperless=rng.random(n) < 0.6 + 0.2 * young,
        fee=np.round(PLAN_FEE[plan] * rng.uniform(0.85, 1.15, size=n), 2),
        signup_week=signup_week,
        bill_day=rng.integers(0, 28, size=n),
        sat0=rng.normal(0.0, 1.0, size=n) + 0.2 * (plan == 2),
        price_sens=price_sens,
        engagement=rng.lognormal(-0.125, 0.5, size=n),
        service_need=need,
        digital=np.clip(rng.beta(2.0, 2.0, size=n) + 0.25 * young - 0.25 * (age >= 3), 0, 1),
    )


#: `nextbest synth --design`: the campaign history of the simulated business
DESIGNS: dict[str, tuple[Campaign, ...]] = {
    # the demo world (`make data`): the waves' calendar, each wave reaching every active customer,
    # so that the held-out exposures of a 20k world can tell a good policy from doing nothing
    "demo": tuple(replace(c, reach=1.0) for c in WorldConfig().campaigns),
    # several waves, randomized and targeted, reaching part of the customers (the test worlds)
    "waves": WorldConfig().campaigns,
    # one randomized campaign on one date, every action against control
    "single": (Campaign(78, targeted=False, reach=0.6),),
    # one randomized offer (a retention discount) against control, on one date
    "offer": (Campaign(78, targeted=False, reach=0.6, arms=(0, 1)),),
}


def design_config(design: str) -> WorldConfig:
    """The world of a named campaign design (a key of DESIGNS)."""
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {', '.join(DESIGNS)}; got {design!r}")
    return WorldConfig(campaigns=DESIGNS[design])
