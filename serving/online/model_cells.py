"""When a customer's model outputs can be reused: the cells of the models' trees.

A tree sends a row left at a numerical split when `value <= threshold`, so two rows that are on
the same side of every threshold of every tree (and alike in missing values) walk the same paths
and get the same leaves: the same predictions, bit for bit. A live customer's row moves with the
clock in a few features only (days since an event: `training.features.one_customer.OneRow.at`),
and most of the time none of them crosses a threshold between two requests, so the uplift and
scores of the last request still hold. `ModelCells` holds every threshold per feature of each
outcome's uplift models, per learner of the outcome, and of each score model (a LightGBM score
is a function of its booster's raw output); a feature it cannot reason about (a categorical
split, zero-as-missing, a linear learner reading every feature) counts as changed whenever its
value changes, for that learner or score only: the others are still reused. `OutputsMemo` keeps
one customer's last uplift and scores with the row they were computed on.
"""

from __future__ import annotations

import threading
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray

from training.config import SCORE_NAMES
from training.registry.bundle import Bundle
from training.scores.base import LightGBMScoreModel
from training.uplift.arm_forest import Trees, parse_trees
from training.uplift.learners import DRLearner, SLearner, TLearner, XLearner
from training.uplift.model_text import CATEGORICAL, MISSING_ZERO, tree_blocks
from training.uplift.selection import SelectedUplift, base_learners

_TREE_LEARNERS = (SLearner, TLearner, XLearner, DRLearner)  # models_ are LightGBM boosters only
Uplift = dict[str, NDArray[np.float64]]
Scores = dict[str, float]  # a score model's output by score column (SCORE_NAMES)
Cuts = list[NDArray[np.float64] | None]


class ModelCells:
    """Per uplift outcome and part (each learner of a SelectedUplift, or the one model: part
    ""), and per score column of a score model, the sorted thresholds per feature of every
    numerical split of its trees, or None for a feature whose every change may change its
    predictions."""

    def __init__(self, bundle: Bundle) -> None:
        p = len(bundle.builder.feature_names_)
        self.cuts: dict[str, dict[str, Cuts]] = {
            outcome: {part: _cuts(learners, p) for part, learners in _parts(model).items()}
            for outcome, model in bundle.uplift.items()
        }
        self.score_cuts: dict[str, Cuts] = {
            SCORE_NAMES[role]: _score_cuts(model, p) for role, model in bundle.models.items()
        }
        n = sum(map(len, self.cuts.values())) + len(self.score_cuts)
        bits = iter(1 << i for i in range(n))  # one bit per part or score: a set is an int
        self._bits = {
            outcome: [(part, next(bits)) for part in parts] for outcome, parts in self.cuts.items()
        }
        self._score_bits = [(name, next(bits)) for name in self.score_cuts]
        self._every = (1 << n) - 1
        owned = [
            (bit, self.cuts[o][part]) for o, parts in self._bits.items() for part, bit in parts
        ]
        owned += [(bit, self.score_cuts[name]) for name, bit in self._score_bits]
        self._features = _feature_cells(owned, p)

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
        return self.changes(old, new, outcomes)[0]

    def changes(
        self, old: NDArray[np.float32], new: NDArray[np.float32], outcomes: Iterable[str]
    ) -> tuple[dict[str, list[str]], list[str]]:
        """`moved_each`, and the score columns through whose models' trees `new` walks
        otherwise than `old`, the rows compared once."""
        moved = self._moved(old, new)
        parts = {outcome: [part for part, bit in self._bits[outcome] if moved & bit]
                 for outcome in outcomes}  # fmt: skip
        return parts, [name for name, bit in self._score_bits if moved & bit]

    def _moved(self, old: NDArray[np.float32], new: NDArray[np.float32]) -> int:
        """The bits of every part, of any outcome, and of every score model through whose trees
        `new` walks otherwise than `old`: those moved by each changed feature, or all of them when
        a value went missing or came back (which way the splits send a missing value is not read
        here)."""
        changed = np.flatnonzero(old != new)
        moved = 0
        for a, b, j in zip(
            old[changed].tolist(), new[changed].tolist(), changed.tolist(), strict=True
        ):
            if a != a or b != b:  # NaN != NaN
                if a == a or b == b:
                    return self._every
                continue  # both missing: alike
            moved |= self._features[j].moved(a, b)
            if moved == self._every:  # nothing left to learn from the other changes
                break
        return moved


class _FeatureCells:
    """One feature's thresholds over every part of every outcome, each with the bits of the parts
    that own it, and the bits of the parts for which any change of the feature counts."""

    __slots__ = ("exact", "spans", "values")

    def __init__(self, owners: dict[float, int], exact: int) -> None:
        self.values = sorted(owners)
        self.spans = _or_spans([owners[v] for v in self.values])
        self.exact = exact

    def moved(self, a: float, b: float) -> int:
        """The bits of the parts a change from `a` to `b` (neither missing) moves: the exact ones,
        and the owners of a threshold t with min(a, b) <= t < max(a, b), i.e. of a part whose
        count of thresholds below the value (bisect_left) differs."""
        lo, hi = bisect_left(self.values, a), bisect_left(self.values, b)
        if lo > hi:
            lo, hi = hi, lo
        if lo == hi:
            return self.exact
        k = (hi - lo).bit_length() - 1  # two spans of 2**k thresholds cover [lo, hi)
        return self.exact | self.spans[k][lo] | self.spans[k][hi - (1 << k)]


def _or_spans(owners: list[int]) -> list[list[int]]:
    """A sparse table: row k, item i, is the OR of owners[i : i + 2**k], so the OR of any range
    is that of two items."""
    spans = [owners]
    while 2 << (len(spans) - 1) <= len(owners):
        last, step = spans[-1], 1 << (len(spans) - 1)
        spans.append([last[i] | last[i + step] for i in range(len(last) - step)])
    return spans


def _feature_cells(owned: list[tuple[int, Cuts]], p: int) -> list[_FeatureCells]:
    """Per feature, the thresholds of every part (its bit, its cuts) merged, with their owners'
    bits."""
    owners: list[dict[float, int]] = [{} for _ in range(p)]
    exact = [0] * p
    for bit, cuts in owned:
        for j, cut in enumerate(cuts):
            if cut is None:
                exact[j] |= bit
                continue
            for t in cut.tolist():
                owners[j][t] = owners[j].get(t, 0) | bit
    return [_FeatureCells(owners[j], exact[j]) for j in range(p)]


def _parts(model: Any) -> dict[str, list[Any]]:
    """A served uplift model's parts: each learner of a SelectedUplift, else the model itself."""
    if isinstance(model, SelectedUplift):
        return {name: [learner] for name, learner in model.learners_.items()}
    return {"": base_learners(model)}


def _cuts(learners: Iterable[Any], p: int) -> Cuts:
    """The thresholds per feature of the learners' trees (None: any change counts)."""
    boosters: list[Any] = []
    for learner in learners:
        models = list(learner.models_.values())
        if not isinstance(learner, _TREE_LEARNERS) or not all(map(_is_booster, models)):
            return [None] * p  # e.g. a linear learner: every feature counts
        boosters += models
    return _booster_cuts(boosters, p)


def _score_cuts(model: Any, p: int) -> Cuts:
    """The thresholds per feature of a score model's trees: a LightGBM score model's output is a
    function of its booster's raw score; any other model reads every feature."""
    booster = getattr(model, "booster_", None)
    if not isinstance(model, LightGBMScoreModel) or not _is_booster(booster):
        return [None] * p
    return _booster_cuts([booster], p)


def _booster_cuts(boosters: Iterable[Any], p: int) -> Cuts:
    """The thresholds per feature of the boosters' trees (None: any change counts)."""
    cuts: list[set[float]] = [set() for _ in range(p)]
    exact = np.zeros(p, dtype=bool)
    for booster in boosters:
        _add_splits(parse_trees(tree_blocks(_model_string(booster))[1]), cuts, exact)
    return [None if exact[j] else np.array(sorted(cuts[j]), dtype=np.float64) for j in range(p)]


@dataclass(frozen=True)
class Outputs:
    """A customer's last model outputs, with the row they were computed on: the uplift per
    outcome (read-only), and the score models' outputs (None: not kept, e.g. a row shared by a
    worker of an earlier version)."""

    row: NDArray[np.float32]
    uplift: Uplift
    scores: Scores | None


class OutputsMemo:
    """One customer's last model outputs per bundle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: dict[int, tuple[Bundle, Outputs]] = {}

    def get(self, bundle: Bundle, cells: ModelCells, row: NDArray[np.float32]) -> Uplift:
        """The uplift kept for `bundle` of the outcomes whose trees `row` walks as the row it was
        computed on did (empty: nothing kept, or every outcome moved)."""
        uplift, _ = self.reusable(bundle, cells, row)
        return {o: u for o, (u, moved) in uplift.items() if not moved}

    def reusable(
        self, bundle: Bundle, cells: ModelCells, row: NDArray[np.float32]
    ) -> tuple[dict[str, tuple[NDArray[np.float64], list[str]]], Scores]:
        """Per outcome, the uplift kept for `bundle` and the parts (ModelCells) whose trees `row`
        walks otherwise than the row it was computed on (empty: all of it still holds); and the
        kept scores whose models' trees `row` walks as that row did."""
        kept = self.entry(bundle)
        if kept is None:
            return {}, {}
        moved, scores_moved = cells.changes(kept.row, row, kept.uplift)
        held = (kept.scores or {}).items()
        scores = {n: v for n, v in held if n in cells.score_cuts and n not in scores_moved}
        return {o: (u, moved[o]) for o, u in kept.uplift.items()}, scores

    def entry(self, bundle: Bundle) -> Outputs | None:
        """The outputs kept for `bundle`, or None."""
        with self._lock:
            kept = self._kept.get(id(bundle))
        return None if kept is None or kept[0] is not bundle else kept[1]

    def put(
        self,
        bundle: Bundle,
        row: NDArray[np.float32],
        uplift: Uplift,
        scores: Scores | None = None,
    ) -> None:
        """Keep `uplift` (made read-only: every later request shares it) and `scores` for
        `row`."""
        for values in uplift.values():
            values.flags.writeable = False
        outputs = Outputs(row.copy(), uplift, None if scores is None else dict(scores))
        with self._lock:
            self._kept[id(bundle)] = (bundle, outputs)


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
