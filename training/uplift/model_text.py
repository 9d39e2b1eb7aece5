"""A LightGBM model's text form: its tree blocks, and the map from raw score to prediction of its
objective, for code that walks the trees itself (training.uplift.arm_forest)."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import partial

import numpy as np

_TREES_END = "end of trees"
_TREE = re.compile(r"^Tree=\d+$", re.MULTILINE)

Link = Callable[[np.ndarray], np.ndarray]
# a node's `decision_type` (LightGBM's tree.h): bit 0 categorical, bit 1 default left, bits 2-3
# the missing type
CATEGORICAL, DEFAULT_LEFT = 1, 2
MISSING_ZERO, MISSING_NAN = 1, 2  # (decision_type >> 2) & 3


def _identity(raw: np.ndarray) -> np.ndarray:
    return raw


def _exp(raw: np.ndarray) -> np.ndarray:
    return np.exp(raw)


def _sigmoid(raw: np.ndarray, scale: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-scale * raw))  # as LightGBM's BinaryLogloss::ConvertOutput


def objective_link(objective: str) -> Link | None:
    """The map from raw score to prediction of a model's `objective=` header value (e.g.
    "binary sigmoid:1", "regression", "tweedie"); None for one not handled here."""
    name, *options = objective.split() or [""]
    if name == "binary":
        scales = [o.split(":", 1)[1] for o in options if o.startswith("sigmoid:")]
        return partial(_sigmoid, scale=float(scales[0])) if len(scales) == 1 else None
    if options:  # e.g. "regression sqrt": a link of its own
        return None
    if name == "regression":
        return _identity
    if name in ("tweedie", "poisson", "gamma"):
        return _exp
    return None


def tree_blocks(model: str) -> tuple[str, list[str], str]:
    """(header, tree blocks, footer) of a model string; each block starts at its `Tree=i` line."""
    end = model.index(_TREES_END)
    starts = [m.start() for m in _TREE.finditer(model, 0, end)]
    if not starts:
        raise ValueError("a LightGBM model string without trees")
    bounds = [*starts, end]
    blocks = [model[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
    return model[: starts[0]], blocks, model[end:]
