"""When a customer's uplift can be reused: the cells of the uplift models' trees.

A tree sends a row left at a numerical split when `value <= threshold`, so two rows that are on
the same side of every threshold of every tree (and alike in missing values) walk the same paths
and get the same leaves: the same predictions, bit for bit. A live customer's row moves with the
clock in a few features only (days since an event: `training.features.one_customer.OneRow.at`),
and most of the time none of them crosses a threshold between two requests, so the uplift of
the last request still holds. `UpliftCells` holds every threshold of each outcome's uplift models
per feature, per learner of the outcome; a feature it cannot reason about (a categorical split,
zero-as-missing, a linear learner reading every feature) counts as changed whenever its value
changes, for that learner only: the outcome's other learners, and the other outcomes, are still
reused. `UpliftMemo` keeps one customer's last uplift with the row it was computed on.
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Iterable
from typing import Any

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray

from training.registry.bundle import Bundle
from training.uplift.arm_forest import Trees, parse_trees
from training.uplift.learners import DRLearner, SLearner, TLearner, XLearner
from training.uplift.model_text import CATEGORICAL, MISSING_ZERO, tree_blocks
from training.uplift.selection import SelectedUplift, base_learners

_TREE_LEARNERS = (SLearner, TLearner, XLearner, DRLearner)  # models_ are LightGBM boosters only
Uplift = dict[str, NDArray[np.float64]]


class UpliftCells:
    """Per uplift outcome and part (each learner of a SelectedUplift, or the one model: part
    ""), the sorted thresholds per feature of every numerical split of its trees, or None for a
    feature whose every change may change its predictions."""

    def __init__(self, bundle: Bundle) -> None:
        p = len(bundle.builder.feature_names_)
        self.cuts: dict[str, dict[str, list[NDArray[np.float64] | None]]] = {
            outcome: {part: _cuts(learners, p) for part, learners in _parts(model).items()}
            for outcome, model in bundle.uplift.items()
        }
        self._lists = {  # the same as lists: for one value, bisect beats numpy's call overhead
            outcome: {part: [None if c is None else c.tolist() for c in cuts]
                      for part, cuts in parts.items()}
            for outcome, parts in self.cuts.items()
        }  # fmt: skip

    def same(self, old: NDArray[np.float32], new: NDArray[np.float32], outcome: str) -> bool:
        """Whether rows `old` and `new` walk the same paths through every tree of `outcome`."""
        return not self.moved(old, new, outcome)

    def moved(self, old: NDArray[np.float32], new: NDArray[np.float32], outcome: str) -> list[str]:
        """The parts of `outcome` through whose trees `new` walks otherwise than `old`."""
        return self.moved_each(old, new, [outcome])[outcome]

    def moved_each(
        self, old: NDArray[np.float32], new: NDArray[np.float32], outcomes: Iterable[str]
    ) -> dict[str, list[str]]:
        """`moved` for each of `outcomes`, the rows compared once."""
        changed = [(float(old[j]), float(new[j]), j) for j in np.flatnonzero(old != new).tolist()]
        changed = [c for c in changed if not (math.isnan(c[0]) and math.isnan(c[1]))]
        return {
            outcome: [part for part, cuts in self._lists[outcome].items()
                      if _crosses(cuts, changed)]
            for outcome in outcomes
        }  # fmt: skip


def _crosses(cuts: list[list[float] | None], changed: list[tuple[float, float, int]]) -> bool:
    """Whether a change (old value, new value, feature) crosses a threshold of `cuts`."""
    for a, b, j in changed:  # NaN != NaN: both missing was left out
        cut = cuts[j]
        if cut is None or math.isnan(a) or math.isnan(b):
            return True
        if bisect_left(cut, a) != bisect_left(cut, b):  # thresholds below each
            return True
    return False


def _parts(model: Any) -> dict[str, list[Any]]:
    """A served uplift model's parts: each learner of a SelectedUplift, else the model itself."""
    if isinstance(model, SelectedUplift):
        return {name: [learner] for name, learner in model.learners_.items()}
    return {"": base_learners(model)}


def _cuts(learners: Iterable[Any], p: int) -> list[NDArray[np.float64] | None]:
    """The thresholds per feature of the learners' trees (None: any change counts)."""
    cuts: list[set[float]] = [set() for _ in range(p)]
    exact = np.zeros(p, dtype=bool)
    for learner in learners:
        boosters = list(learner.models_.values())
        if not isinstance(learner, _TREE_LEARNERS) or not all(map(_is_booster, boosters)):
            exact[:] = True  # e.g. a linear learner: every feature counts
            continue
        for booster in boosters:
            _add_splits(parse_trees(tree_blocks(_model_string(booster))[1]), cuts, exact)
    return [None if exact[j] else np.array(sorted(cuts[j]), dtype=np.float64) for j in range(p)]


class UpliftMemo:
    """One customer's last uplift per bundle, with the row it was computed on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[int, tuple[Bundle, NDArray[np.float32], Uplift]] = {}

    def get(self, bundle: Bundle, cells: UpliftCells, row: NDArray[np.float32]) -> Uplift:
        """The uplift kept for `bundle` of the outcomes whose trees `row` walks as the row it was
        computed on did (empty: nothing kept, or every outcome moved)."""
        return {o: u for o, (u, moved) in self.reusable(bundle, cells, row).items() if not moved}

    def reusable(
        self, bundle: Bundle, cells: UpliftCells, row: NDArray[np.float32]
    ) -> dict[str, tuple[NDArray[np.float64], list[str]]]:
        """Per outcome, the uplift kept for `bundle` and the parts (UpliftCells) whose trees `row`
        walks otherwise than the row it was computed on (empty: all of it still holds)."""
        entry = self.entry(bundle)
        if entry is None:
            return {}
        computed_on, uplift = entry
        moved = cells.moved_each(computed_on, row, uplift)
        return {o: (u, moved[o]) for o, u in uplift.items()}

    def entry(self, bundle: Bundle) -> tuple[NDArray[np.float32], Uplift] | None:
        """(the row, its uplift) kept for `bundle`, or None."""
        with self._lock:
            kept = self._kept.get(id(bundle))
        return None if kept is None or kept[0] is not bundle else (kept[1], kept[2])

    def put(self, bundle: Bundle, row: NDArray[np.float32], uplift: Uplift) -> None:
        """Keep `uplift` (made read-only: every later request shares it) for `row`."""
        for values in uplift.values():
            values.flags.writeable = False
        with self._lock:
            self._kept[id(bundle)] = (bundle, row.copy(), uplift)


def _is_booster(model: Any) -> bool:
    return isinstance(getattr(model, "booster", model), lgb.Booster)


def _model_string(model: Any) -> str:
    booster: lgb.Booster = getattr(model, "booster", model)  # a FastBooster wraps one
    return booster.model_to_string()


def _add_splits(trees: Trees, cuts: list[set[float]], exact: np.ndarray) -> None:
    """Add the thresholds of every numerical split of `trees` to `cuts` (per feature); mark the
    features of categorical and zero-as-missing splits in `exact`."""
    mine = trees.feature < len(cuts)  # not an S-learner's arm column
    feature, threshold, kind = trees.feature[mine], trees.threshold[mine], trees.decision[mine]
    odd = (kind & CATEGORICAL != 0) | ((kind >> 2) & 3 == MISSING_ZERO)
    exact[feature[odd]] = True
    for f, t in zip(feature[~odd].tolist(), threshold[~odd].tolist(), strict=True):
        cuts[f].add(t)
