"""The compiled tree walk of training.uplift.arm_forest: LightGBM's `Tree::Decision` at each node
(numerical splits with their missing-value handling, categorical bitsets), every arm of a row
down each tree together. Kept apart so that numba is imported only where trees are walked."""

from __future__ import annotations

import numpy as np
from numba import njit

from training.uplift.model_text import CATEGORICAL, DEFAULT_LEFT, MISSING_NAN, MISSING_ZERO

_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float): smaller is zero


@njit(cache=True, nogil=True)
def _goes_left(value, node, tree_cats, threshold, decision, cat_bounds, cat_bits):
    """LightGBM's Tree::NumericalDecision / CategoricalDecision for one node."""
    kind = decision[node]
    if kind & CATEGORICAL:
        if np.isnan(value):
            return False
        category = int(value)
        if category < 0:
            return False
        at = tree_cats + int(threshold[node])
        lo, hi = cat_bounds[at], cat_bounds[at + 1]
        word = category // 32
        if word >= hi - lo:
            return False
        return (cat_bits[lo + word] >> np.uint32(category % 32)) & np.uint32(1) == 1
    missing = (kind >> 2) & 3
    if np.isnan(value) and missing != MISSING_NAN:
        value = 0.0
    if (missing == MISSING_ZERO and -_ZERO <= value <= _ZERO) or (
        missing == MISSING_NAN and np.isnan(value)
    ):
        return (kind & DEFAULT_LEFT) != 0
    return value <= threshold[node]


_ONE, _ALL = np.uint64(1), np.uint64(0xFFFFFFFFFFFFFFFF)
MAX_ARMS = 64  # arms walked together: the bits of a mask


@njit(cache=True, nogil=True)
def arm_masks(codes, arm, node_cats, feature, threshold, decision, cat_bounds, cat_bits):
    """Per node that reads the arm column (`arm`), the arms (bit k: codes[k]) that go left; 0
    elsewhere. At most MAX_ARMS codes."""
    masks = np.zeros(feature.shape[0], dtype=np.uint64)
    for at in range(feature.shape[0]):
        if feature[at] != arm:
            continue
        mask = np.uint64(0)
        for k in range(codes.shape[0]):
            if _goes_left(codes[k], at, node_cats[at], threshold, decision, cat_bounds, cat_bits):
                mask |= _ONE << np.uint64(k)
        masks[at] = mask
    return masks


@njit(cache=True, nogil=True)
def walk(
    X, masks, m, node_start, leaf_start, cat_start, feature, threshold, decision, left, right,
    leaf_value, cat_bounds, cat_bits, stack_size, out,
):  # fmt: skip
    """Add each tree's leaf value for every (row, arm) to `out` (n, m), tree by tree: the m arms
    of a row go down a tree together (a bit mask) and part only where a node reads the arm,
    whose `masks` say which go left."""
    n, p = X.shape
    n_trees = leaf_start.shape[0]
    everyone = _ALL >> np.uint64(64 - m)
    row = np.empty(p, dtype=np.float64)
    stack_node = np.empty(stack_size, dtype=np.int64)
    stack_arms = np.empty(stack_size, dtype=np.uint64)
    for i in range(n):
        for j in range(p):
            value = X[i, j]
            row[j] = 0.0 if abs(value) <= _ZERO else value  # LightGBM drops near-zeros
        for t in range(n_trees):
            end = leaf_start[t + 1] if t + 1 < n_trees else leaf_value.shape[0]
            if end - leaf_start[t] == 1:
                for k in range(m):
                    out[i, k] += leaf_value[leaf_start[t]]
                continue
            nodes, cats = node_start[t], cat_start[t]
            stack_node[0], stack_arms[0] = 0, everyone
            top = 1
            while top > 0:
                top -= 1
                node, arms = stack_node[top], stack_arms[top]
                while node >= 0:
                    at = nodes + node
                    f = feature[at]
                    if f < p:
                        if _goes_left(row[f], at, cats, threshold, decision, cat_bounds, cat_bits):
                            node = left[at]
                        else:
                            node = right[at]
                        continue
                    going_left = arms & masks[at]
                    if going_left == arms:
                        node = left[at]
                    elif going_left == 0:
                        node = right[at]
                    else:
                        stack_node[top], stack_arms[top] = right[at], arms ^ going_left
                        top += 1
                        node, arms = left[at], going_left
                value = leaf_value[leaf_start[t] + ~node]
                for k in range(m):
                    if (arms >> np.uint64(k)) & _ONE:
                        out[i, k] += value
