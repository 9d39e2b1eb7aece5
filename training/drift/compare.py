"""How far one population moved from another: population stability index and Kolmogorov-Smirnov
per column on shared bins, and the change of the decision mix (share of customers per action).

PSI is sum((q - p) * ln(q / p)) over bins, shares floored at `FLOOR` so an empty bin is finite; the
usual reading is < 0.1 stable, 0.1-0.2 moving, > 0.2 shifted. KS here is the largest gap between the
two cumulative shares at the bin edges (numeric columns only): on binned data it can only
under-state the exact statistic, never invent drift. Both are effect sizes, not tests, so they do
not flag trivial moves merely because a million rows make them "significant".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from training.drift.profile import Profile

FLOOR = 1e-4


def psi(expected: NDArray[np.float64], actual: NDArray[np.float64]) -> float:
    """Population stability index of two share vectors over the same bins."""
    p = np.maximum(expected, FLOOR)
    q = np.maximum(actual, FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def ks(expected: NDArray[np.float64], actual: NDArray[np.float64]) -> float:
    """The largest gap between the cumulative shares (bins in order, missing last)."""
    return float(np.max(np.abs(np.cumsum(expected) - np.cumsum(actual)), initial=0.0))


@dataclass(frozen=True)
class ColumnDrift:
    """One column's distance from its base population, and whether it crosses a threshold."""

    name: str
    psi: float
    ks: float | None  # None for categorical columns
    flagged: bool

    def to_dict(self) -> dict[str, object]:
        ks_value = None if self.ks is None else round(self.ks, 6)
        return {"psi": round(self.psi, 6), "ks": ks_value, "flagged": self.flagged}


def compare(
    base: Profile, current: Profile, psi_limit: float, ks_limit: float
) -> list[ColumnDrift]:
    """Every column both profiles bin the same way, in `current`'s order, with its PSI and KS;
    flagged when PSI > `psi_limit` or KS > `ks_limit`. Columns with no rows on either side are
    left out (nothing to compare)."""
    out = []
    for name, binning in current.binnings.items():
        if base.binnings.get(name) != binning:
            continue
        p, q = base.shares(name), current.shares(name)
        if not p.any() or not q.any():
            continue
        stability = psi(p, q)
        distance = ks(p, q) if binning.kind == "numeric" else None
        flagged = stability > psi_limit or (distance is not None and distance > ks_limit)
        out.append(ColumnDrift(name, stability, distance, flagged))
    return out


@dataclass(frozen=True)
class MixShift:
    """The decision mix of two runs: each action's share of customers, and how much it moved."""

    before: dict[str, float]
    after: dict[str, float]
    limit: float

    @property
    def change(self) -> dict[str, float]:
        names = sorted(set(self.before) | set(self.after))
        return {n: self.after.get(n, 0.0) - self.before.get(n, 0.0) for n in names}

    @property
    def flagged(self) -> list[str]:
        return [n for n, d in self.change.items() if abs(d) > self.limit]

    def to_dict(self) -> dict[str, object]:
        return {
            "before": {k: round(v, 6) for k, v in self.before.items()},
            "after": {k: round(v, 6) for k, v in self.after.items()},
            "change": {k: round(v, 6) for k, v in self.change.items()},
            "flagged": self.flagged,
        }


def mix_shift(before: Mapping[str, float], after: Mapping[str, float], limit: float) -> MixShift:
    """Compare two decision mixes (action -> share of customers; "none" for no action)."""
    return MixShift(dict(before), dict(after), limit)
