"""The specs of a feature definition compiled into index arrays, so that `OneCustomer` gathers
most of a row at once instead of spec by spec: counts (of rows, of distinct days, of unresolved
and resolved rows) are sums of one aggregate's cells over a spec's codes at its window, and the
days since the last or first row are extremes over a spec's codes.

Every gathered sum adds whole numbers in float64 (exact in any order), so a gathered row equals
the spec-by-spec one bit for bit; value sums, whose rounding depends on the order of addition,
stay spec by spec (`OneCustomer.row`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.features import sql as fs

COUNTED = {"count": "n", "days": "nd", "unresolved": "nrf"}  # stat -> the aggregate it sums
NO_AGE = np.iinfo(np.int64).max  # an age cell of a code without rows (largest ages: negated)


@dataclass(frozen=True)
class Gather:
    """Features (`columns`, indices in the row) that each sum some cells of a flat aggregate."""

    columns: np.ndarray  # (k,) int64
    cells: np.ndarray  # flat cell index (code * n_buckets + window) of each term
    owner: np.ndarray  # the position in `columns` each term adds to

    def sums(self, flat: np.ndarray) -> np.ndarray:
        """(k,) float64: each feature's sum of its cells of `flat`."""
        return np.bincount(self.owner, weights=flat[self.cells], minlength=len(self.columns))


@dataclass(frozen=True)
class Extreme:
    """Features (`columns`) that are the smallest age over some codes (last: of the per-code
    smallest ages; first: of the per-code largest ages, negated)."""

    columns: np.ndarray  # (k,) int64
    mask: np.ndarray  # (k, n_codes) bool: the codes each feature reads

    def smallest(self, ages: np.ndarray) -> np.ndarray:
        """(k,) int64 ages; NO_AGE where none of a feature's codes has a row."""
        return np.where(self.mask, ages[None, :], NO_AGE).min(axis=1)


@dataclass(frozen=True)
class SourcePlan:
    """One aggregated source's gathered features."""

    counted: dict[str, Gather]  # aggregate name (COUNTED values) -> its features
    rate: Gather | None  # the rate features' cells (of the resolved and unresolved counts)
    last: Extreme | None
    first: Extreme | None

    def columns(self) -> list[int]:
        found = [g.columns for g in self.counted.values()]
        found += [self.rate.columns] if self.rate is not None else []
        found += [e.columns for e in (self.last, self.first) if e is not None]
        return [int(j) for part in found for j in part]


GATHERED = {"events", "channels", "exposures", "texts"}


def compile_plan(
    specs: Sequence[fs.Spec],
    codes: Sequence[Sequence[int] | None],
    n_codes: dict[str, int],
    n_buckets: dict[str, int],
) -> dict[str, SourcePlan]:
    """Per aggregated source, the plan of its count, days, unresolved, rate, last and first
    features (texts: its counts); `codes[j]` are the codes spec j aggregates."""
    plans: dict[str, SourcePlan] = {}
    for source in GATHERED:
        mine = [(j, s, tuple(codes[j] or ())) for j, s in enumerate(specs) if s.source == source]
        if source == "texts":  # a text count of every text counts every topic code
            mine = [(j, s, c if s.select is not None else tuple(range(n_codes[source])))
                    for j, s, c in mine if s.stat == "count"]  # fmt: skip
        nb = n_buckets[source]

        def gather(stat: str, found: list = mine, nb: int = nb) -> Gather:
            chosen = [(j, s, c) for j, s, c in found if s.stat == stat]
            cells = [code * nb + s.window for _, s, c in chosen for code in c]
            owner = [k for k, (_, _, c) in enumerate(chosen) for _ in c]
            return Gather(_ints([j for j, _, _ in chosen]), _ints(cells), _ints(owner))

        def extreme(stat: str, found: list = mine, source: str = source) -> Extreme | None:
            chosen = [(j, c) for j, s, c in found if s.stat == stat]
            if not chosen:
                return None
            mask = np.zeros((len(chosen), n_codes[source]), dtype=bool)
            for k, (_, c) in enumerate(chosen):
                mask[k, list(c)] = True
            return Extreme(_ints([j for j, _ in chosen]), mask)

        counted = {field: gather(stat) for stat, field in COUNTED.items()}
        rate = gather("rate") if source != "texts" else None
        plans[source] = SourcePlan(counted, rate, extreme("last"), extreme("first"))
    return plans


def _ints(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def ages_as_days(ages: np.ndarray) -> np.ndarray:
    """Fractional days of ages in microseconds as the SQL computes them (a double division, then
    float32), as float64; NaN where there is no age."""
    days = (ages / fs.DAY_US).astype(np.float32).astype(np.float64)
    return np.where(ages == NO_AGE, np.nan, days)
