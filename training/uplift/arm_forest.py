"""An S-learner's trees walked once per row for every arm together.

An S-learner predicts each arm's outcome with the arm as one more feature, and most of its trees
read the arm somewhere: asking LightGBM once per arm walks each of them once per arm, although
the arms part ways only at the nodes that split on the arm. `ArmForest` walks each tree once per
row with the set of arms, and splits that set at the arm's nodes only; each arm still gets one
leaf value per tree, added in tree order from 0.0, so its raw score is LightGBM's raw score of
that arm's row bit for bit (the tests check it), and the objective's link makes the prediction.

The trees come from the model's text form and are walked by a kernel compiled with numba
(training.uplift.arm_walk). A model this module cannot walk exactly (several outputs per iteration,
linear trees, an objective without a known link) gets None from `ArmForest.of`, and its learner
asks LightGBM per arm.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any, NamedTuple

import lightgbm as lgb
import numpy as np
from numpy.typing import NDArray

from training.uplift.model_text import Link, objective_link, tree_blocks

_KEPT_MASKS = 64  # tuples of codes whose masks are kept (more: made per call)
# rows x arms x trees from which walking pays for loading the kernel (numba's import and its
# compiled code: 1-2 s a process); LightGBM walks that many trees in about a second
WORTH_LOADING = 20_000_000
_loaded = False  # whether this process has walked trees (the kernel is loaded then)


class Trees(NamedTuple):
    """A model's trees as flat arrays: per tree where its nodes, leaves and categorical bitsets
    start; per node the split (children < 0 are leaves: ~child); per leaf its value."""

    node_start: NDArray[np.int64]
    leaf_start: NDArray[np.int64]
    cat_start: NDArray[np.int64]
    feature: NDArray[np.int64]
    threshold: NDArray[np.float64]
    decision: NDArray[np.int64]
    left: NDArray[np.int64]
    right: NDArray[np.int64]
    leaf_value: NDArray[np.float64]
    cat_bounds: NDArray[np.int64]
    cat_bits: NDArray[np.uint32]


class ArmForest:
    """Raw scores and predictions of a one-output LightGBM model of (features, arm) for every
    arm code at once; the arm is the column after the `n_features` features."""

    def __init__(self, trees: Trees, n_features: int, link: Link) -> None:
        self.trees = trees
        self.n_features = n_features
        self.link = link
        leaves = np.diff(np.append(trees.leaf_start, len(trees.leaf_value)))
        self._stack = int(leaves.max(initial=1)) + 1
        nodes = np.diff(np.append(trees.node_start, len(trees.feature)))
        self._node_cats = np.repeat(trees.cat_start, nodes)  # each node's tree's bitsets
        self._masks: dict[bytes, NDArray[np.uint64]] = {}  # per tuple of codes asked for

    @classmethod
    def of(cls, booster: lgb.Booster, n_features: int) -> ArmForest | None:
        """The forest of `booster` (whose column `n_features` is the arm), or None when it
        cannot be walked exactly here."""
        model = booster.model_to_string()
        header, blocks, _ = tree_blocks(model)
        values = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
        link = objective_link(values.get("objective", ""))
        if link is None or values.get("num_tree_per_iteration") != "1" or "is_linear=1" in model:
            return None
        if int(values.get("max_feature_idx", -1)) != n_features:
            return None
        return cls(parse_trees(blocks), n_features, link)

    def raw(self, X: NDArray[np.float64], codes: NDArray[np.float64]) -> NDArray[np.float64]:
        """(n, len(codes)) raw scores: row i of `X` with the arm column set to each code."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"ArmForest: expected (n, {self.n_features}) rows, got {X.shape}")
        from training.uplift import arm_walk  # numba: imported (~0.6 s) where trees are walked

        codes = np.ascontiguousarray(codes, dtype=np.float64)
        out = np.zeros((len(X), len(codes)), dtype=np.float64)
        for lo in range(0, len(codes), arm_walk.MAX_ARMS):
            part = codes[lo : lo + arm_walk.MAX_ARMS]
            raw = np.zeros((len(X), len(part)), dtype=np.float64)
            masks = self._arm_masks(part)
            arm_walk.walk(X, masks, len(part), *self.trees, self._stack, raw)
            out[:, lo : lo + len(part)] = raw
        global _loaded
        _loaded = True
        return out

    def _arm_masks(self, codes: NDArray[np.float64]) -> NDArray[np.uint64]:
        """The arm nodes' masks for these codes, made once per tuple of codes (a few a model:
        every arm, or the actions a selected model takes from this learner)."""
        from training.uplift import arm_walk

        key = codes.tobytes()
        masks = self._masks.get(key)
        if masks is None:
            t = self.trees
            masks = arm_walk.arm_masks(codes, self.n_features, self._node_cats, t.feature,
                                       t.threshold, t.decision, t.cat_bounds, t.cat_bits)  # fmt: skip
            if len(self._masks) < _KEPT_MASKS:
                self._masks[key] = masks
        return masks

    def predict(self, X: NDArray[np.float64], codes: NDArray[np.float64]) -> NDArray[np.float64]:
        """`raw` through the objective's link: what LightGBM's predict gives each arm's row."""
        return self.link(self.raw(X, codes))

    def worth_walking(self, rows: int, arms: int) -> bool:
        """Whether to walk `rows` x `arms` here rather than ask LightGBM per arm: always once
        the kernel is loaded, before that only for work that pays for loading it."""
        return _loaded or rows * arms * len(self.trees.leaf_start) >= WORTH_LOADING


def load_kernel() -> None:
    """Load the compiled walk now (a service's start) rather than on a first request: one walk
    of a forest of one split on the arm."""
    ints = partial(np.array, dtype=np.int64)
    one = Trees(
        node_start=ints([0]), leaf_start=ints([0]), cat_start=ints([0]), feature=ints([1]),
        threshold=np.array([0.5]), decision=ints([2]), left=ints([-1]), right=ints([-2]),
        leaf_value=np.array([0.0, 1.0]), cat_bounds=ints([]), cat_bits=np.zeros(0, np.uint32),
    )  # fmt: skip
    ArmForest(one, 1, np.asarray).raw(np.zeros((1, 1)), np.array([0.0, 1.0]))


def parse_trees(blocks: list[str]) -> Trees:
    """The flat arrays of a model's tree blocks (their `key=values` lines, as LightGBM writes
    them: thresholds and leaf values with every digit, so they parse back exactly)."""
    trees = [dict(line.split("=", 1) for line in b.splitlines() if "=" in line) for b in blocks]
    split = [t for t in trees if int(t["num_leaves"]) > 1]  # a one-leaf tree has no nodes
    leaves = [int(t["num_leaves"]) for t in trees]
    bounds = [_ints(t["cat_boundaries"]) if _has_cats(t) else None for t in trees]
    cats = [t for t in trees if _has_cats(t)]
    shift = np.cumsum([0] + [int(b[-1]) for b in bounds if b is not None])  # after the last's
    return Trees(
        node_start=_starts([n - 1 if n > 1 else 0 for n in leaves]),
        leaf_start=_starts(leaves),
        cat_start=_starts([0 if b is None else len(b) for b in bounds]),
        feature=_joined(_ints(t["split_feature"]) for t in split),
        threshold=_joined((_floats(t["threshold"]) for t in split), np.float64),
        decision=_joined(_ints(t["decision_type"]) for t in split),
        left=_joined(_ints(t["left_child"]) for t in split),
        right=_joined(_ints(t["right_child"]) for t in split),
        leaf_value=_joined((_floats(t["leaf_value"]) for t in trees), np.float64),
        cat_bounds=_joined(
            b + s for b, s in zip([b for b in bounds if b is not None], shift, strict=False)
        ),
        cat_bits=_joined((_ints(t["cat_threshold"]) for t in cats), np.uint32),
    )


def _starts(sizes: list[int]) -> NDArray[np.int64]:
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def _has_cats(tree: dict[str, str]) -> bool:
    return int(tree["num_leaves"]) > 1 and int(tree.get("num_cat", "0")) > 0


def _joined(parts: Iterable[NDArray[Any]], dtype: type = np.int64) -> NDArray[Any]:
    arrays = list(parts)
    return np.concatenate(arrays).astype(dtype) if arrays else np.empty(0, dtype=dtype)


def _ints(text: str) -> NDArray[np.int64]:
    return np.array(text.split(), dtype=np.int64)


def _floats(text: str) -> NDArray[np.float64]:
    return np.array(text.split(), dtype=np.float64)
