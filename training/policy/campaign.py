"""Batch campaign constraints: a total budget and per-action volume caps over the whole population.

Unconstrained, each customer's selected action is their rank-1 action (worth doing, the online
answer). With a budget (`nextbest score --budget`) or any catalog `batch_volume_cap`, the selection
becomes `training.policy.arbitration.allocate_budget` over every customer at once — at most one action per
customer, greedy by ROI and by value, the better total kept. That needs a global view, kept compact:
one (n, k) float64 matrix of allocatable net values (8·k bytes a customer, 40 MB per million
customers with 5 actions), filled chunk by chunk; features and uplift tables are never held whole.

What `rank` means does not change: it is the customer's own ranking, the same as `POST /recommend`.
Under constraints the campaign may select a lower-ranked (cheaper, higher-ROI) action, or none; the
`selected` column of `actions` says which row the campaign sends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from training.config import Catalog
from training.policy.arbitration import allocate_budget


@dataclass(frozen=True)
class CampaignLimits:
    """Total budget (None: unlimited) and per-action volume caps in catalog order (inf: none)."""

    budget: float | None
    volume_caps: tuple[float, ...]

    @classmethod
    def of(cls, catalog: Catalog, budget: float | None) -> CampaignLimits:
        caps = tuple(
            math.inf if a.batch_volume_cap is None else float(a.batch_volume_cap)
            for a in catalog.actions
        )
        return cls(budget, caps)

    @property
    def binding(self) -> bool:
        """Whether the selection needs the population-wide allocation."""
        return self.budget is not None or any(math.isfinite(c) for c in self.volume_caps)


@dataclass(frozen=True)
class Allocation:
    """The chosen action index of every customer (−1: none), in population order, and its totals."""

    chosen: NDArray[np.int64]
    spend: float
    value: float

    @property
    def customers(self) -> int:
        return int((self.chosen >= 0).sum())


class AllocationInput:
    """The (n, k) allocatable net values of the whole population, filled chunk by chunk in order."""

    def __init__(self, customers: int, actions: int) -> None:
        self.values = np.full((customers, actions), -np.inf, dtype=np.float64)
        self.filled = 0

    def add(self, values: NDArray[np.float64]) -> None:
        """Append one chunk's rows (−inf where an action may not be given)."""
        end = self.filled + len(values)
        if end > len(self.values):
            raise ValueError(f"more rows ({end}) than the population ({len(self.values)})")
        self.values[self.filled : end] = values
        self.filled = end

    def allocate(self, cost: NDArray[np.float64], limits: CampaignLimits) -> Allocation:
        """allocate_budget over every row added (all of them: a short population is a bug)."""
        if self.filled != len(self.values):
            raise ValueError(f"{self.filled} rows added, the population has {len(self.values)}")
        caps = np.asarray(limits.volume_caps, dtype=np.float64)
        chosen = allocate_budget(self.values, cost, limits.budget, caps)
        rows = np.flatnonzero(chosen >= 0)
        spend = float(cost[chosen[rows]].sum())
        value = float(self.values[rows, chosen[rows]].sum())
        return Allocation(chosen, spend, value)
