"""A population's distribution, compact: each column's bins and the count of rows in each.

Numeric columns are cut at quantiles of a reference sample (the cut points are data values, so ties
such as many zeros fall into one bin); categorical columns (model-matrix codes 0..k-1) have one bin
per category. Every column has one more bin, last, for missing values and unseen categories, so a
rising share of gaps is drift too. Counts add up chunk by chunk (`ProfileBuilder`), so a run of any
size is profiled in one pass at the memory of its largest chunk. Saved as plain JSON.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from training.errors import NextbestError

Kind = Literal["numeric", "categorical"]
FORMAT = 1


@dataclass(frozen=True)
class Binning:
    """How one column is binned: numeric cut points (len(edges) + 1 value bins) or `categories`
    codes; the last bin holds missing values (and codes outside 0..categories-1)."""

    kind: Kind
    edges: tuple[float, ...] = ()
    categories: int = 0

    @property
    def size(self) -> int:
        values = len(self.edges) + 1 if self.kind == "numeric" else self.categories
        return values + 1

    def counts(self, values: NDArray[Any]) -> NDArray[np.int64]:
        """Rows per bin of `values` (any float dtype; NaN is missing)."""
        values = np.asarray(values)
        missing = np.isnan(values)
        if self.kind == "numeric":
            index = np.searchsorted(np.asarray(self.edges, dtype=values.dtype), values, "right")
        else:
            codes = np.where(missing, -1, values).astype(np.int64)
            index = np.where((codes >= 0) & (codes < self.categories), codes, self.size - 1)
        index[missing] = self.size - 1
        return np.bincount(index, minlength=self.size).astype(np.int64)


def bin_of(binning: Binning, value: float | None) -> int:
    """The bin of one value (as `Binning.counts` would count it), without building arrays."""
    missing = binning.size - 1
    if value is None or value != value:  # NaN
        return missing
    if binning.kind == "numeric":
        return bisect.bisect_right(binning.edges, value)
    code = int(value)
    return code if 0 <= code < binning.categories else missing


def fit_binning(values: NDArray[Any], kind: Kind, bins: int, categories: int = 0) -> Binning:
    """The binning of one column from a reference sample: `bins` quantile bins (fewer when values
    repeat) for numbers, one bin per category for codes."""
    if kind == "categorical":
        return Binning("categorical", categories=categories)
    seen = np.asarray(values, dtype=np.float64)
    seen = seen[~np.isnan(seen)]
    if len(seen) == 0:
        return Binning("numeric")
    cuts = np.quantile(seen, np.arange(1, bins) / bins, method="higher")
    edges = np.unique(np.concatenate([[seen.min()], cuts]))
    return Binning("numeric", tuple(float(e) for e in edges))


@dataclass(frozen=True)
class Profile:
    """Columns' binnings and counts: the distribution of one population (training or a run)."""

    binnings: dict[str, Binning]
    counts: dict[str, NDArray[np.int64]]
    rows: int

    def shares(self, name: str) -> NDArray[np.float64]:
        counts = self.counts[name]
        total = counts.sum()
        return counts / total if total else np.zeros(len(counts))

    def to_dict(self) -> dict[str, Any]:
        columns = {
            name: {
                "kind": b.kind,
                **({"edges": list(b.edges)} if b.kind == "numeric" else {}),
                **({"categories": b.categories} if b.kind == "categorical" else {}),
                "counts": [int(c) for c in self.counts[name]],
            }
            for name, b in self.binnings.items()
        }
        return {"format": FORMAT, "rows": self.rows, "columns": columns}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        """Read `to_dict` output; anything malformed is a NextbestError."""
        try:
            if data["format"] != FORMAT:
                raise ValueError(f"format {data['format']} is not {FORMAT}")
            binnings, counts = {}, {}
            for name, column in data["columns"].items():
                kind = column["kind"]
                if kind not in ("numeric", "categorical"):
                    raise ValueError(f"column {name}: unknown kind {kind!r}")
                edges = tuple(float(e) for e in column.get("edges", ()))
                binning = Binning(kind, edges, int(column.get("categories", 0)))
                count = np.asarray(column["counts"], dtype=np.int64)
                if len(count) != binning.size:
                    raise ValueError(f"column {name}: {len(count)} counts for {binning.size} bins")
                binnings[name], counts[name] = binning, count
            return cls(binnings, counts, int(data["rows"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise NextbestError(f"not a readable drift profile ({exc})") from None


@dataclass
class ProfileBuilder:
    """Counts of rows per bin, added chunk by chunk (`add`, `add_matrix`), for fixed binnings."""

    binnings: dict[str, Binning]
    rows: int = 0
    _counts: dict[str, NDArray[np.int64]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._counts = {n: np.zeros(b.size, dtype=np.int64) for n, b in self.binnings.items()}

    def add(self, columns: Mapping[str, NDArray[Any]], rows: int) -> None:
        """Add one chunk: a column per binned name (names not binned are ignored)."""
        for name, values in columns.items():
            if name in self._counts:
                self._counts[name] += self.binnings[name].counts(values)
        self.rows += rows

    def add_matrix(self, X: NDArray[Any], names: Iterable[str]) -> None:
        """Add one chunk given as a matrix whose columns are `names`."""
        self.add({n: X[:, j] for j, n in enumerate(names) if n in self._counts}, len(X))

    def profile(self) -> Profile:
        return Profile(
            dict(self.binnings), {n: c.copy() for n, c in self._counts.items()}, self.rows
        )


def fit_profile(
    columns: Mapping[str, NDArray[Any]],
    categories: Mapping[str, int],
    bins: int,
) -> Profile:
    """Bin every column on this sample and count it: the reference other populations are compared
    with. `categories` names the categorical columns with their number of categories."""
    binnings = {
        name: fit_binning(
            values,
            "categorical" if name in categories else "numeric",
            bins,
            categories.get(name, 0),
        )
        for name, values in columns.items()
    }
    rows = len(next(iter(columns.values()))) if columns else 0
    builder = ProfileBuilder(binnings)
    builder.add(columns, rows)
    return builder.profile()


@dataclass(frozen=True)
class Reference:
    """The training reference a bundle carries: its features' and scores' profiles."""

    features: Profile
    scores: Profile

    def to_dict(self) -> dict[str, Any]:
        return {"features": self.features.to_dict(), "scores": self.scores.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Reference:
        try:
            return cls(Profile.from_dict(data["features"]), Profile.from_dict(data["scores"]))
        except (KeyError, TypeError) as exc:
            raise NextbestError(f"not a readable drift reference ({exc})") from None

    def builders(self) -> tuple[ProfileBuilder, ProfileBuilder]:
        """Empty builders on this reference's bins: (features, scores)."""
        return ProfileBuilder(self.features.binnings), ProfileBuilder(self.scores.binnings)


def fit_reference(
    X: NDArray[Any],
    names: list[str],
    scores: Mapping[str, NDArray[Any]],
    categories: Mapping[str, int],
    bins: int,
) -> Reference:
    """The reference of a model matrix (columns `names`) and its scores."""
    features = fit_profile({n: X[:, j] for j, n in enumerate(names)}, categories, bins)
    return Reference(features, fit_profile(scores, {}, bins))
