"""Split a LightGBM model into the trees that read some features and the trees that never do.

An S-learner predicts the outcome of every arm with the arm as one more feature, but most of its
trees never split on the arm: they give the same value for every arm, so walking them once per
arm repeats work. A model's raw score is the sum of its trees' leaf values (with
`boost_from_average` the initial score sits in the first tree's leaves), so the raw score of the
trees that never read the arm, computed once per row, plus the raw score of those that do,
computed per arm, is the model's raw score; the objective's link then gives the prediction. Only
the order of the additions differs, by a few units in the last place.

LightGBM cannot predict an arbitrary subset of trees (`start_iteration` / `num_iteration` select a
range), so each part is rebuilt from the model's text form: the header without `tree_sizes` (the
loader then parses trees one after the other), the part's tree blocks renumbered, the footer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import partial
from typing import NamedTuple

import lightgbm as lgb
import numpy as np

_TREES_END = "end of trees"
_TREE = re.compile(r"^Tree=\d+$", re.MULTILINE)
_SPLIT_FEATURE = re.compile(r"^split_feature=(.*)$", re.MULTILINE)

Link = Callable[[np.ndarray], np.ndarray]


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


def reads_features(block: str, features: set[int]) -> bool:
    """Whether a tree block splits on any of `features` (a one-leaf tree splits on nothing)."""
    found = _SPLIT_FEATURE.search(block)
    if found is None or not found.group(1).strip():
        return False
    return not features.isdisjoint(int(f) for f in found.group(1).split())


def subset_model(header: str, blocks: Iterable[str]) -> str:
    """A model string of `blocks` only: trees renumbered, `tree_sizes` dropped from the header."""
    kept = [line for line in header.splitlines() if not line.startswith("tree_sizes=")]
    trees = [_TREE.sub(f"Tree={i}", block, count=1) for i, block in enumerate(blocks)]
    return "\n".join(kept) + "\n" + "".join(trees) + _TREES_END + "\n"


class FeatureSplit(NamedTuple):
    """A model as two boosters over the same columns: `free`, whose trees never read the split
    features (None if every tree does), and `bound`, whose trees do (None if none does); the raw
    scores of the two add up to the model's, and `link` maps that sum to its prediction."""

    free: lgb.Booster | None
    bound: lgb.Booster | None
    link: Link


def split_by_features(booster: lgb.Booster, features: Iterable[int]) -> FeatureSplit | None:
    """`booster` split by whether each tree reads any of `features` (column indices); None when
    the model is not one this module can split exactly (several outputs per iteration, linear
    trees, an objective without a known link)."""
    model = booster.model_to_string()
    header, blocks, _ = tree_blocks(model)
    values = dict(line.split("=", 1) for line in header.splitlines() if "=" in line)
    link = objective_link(values.get("objective", ""))
    if link is None or values.get("num_tree_per_iteration") != "1" or "is_linear=1" in model:
        return None
    wanted = set(features)
    bound = [reads_features(block, wanted) for block in blocks]

    def part(chosen: list[str]) -> lgb.Booster | None:
        return lgb.Booster(model_str=subset_model(header, chosen)) if chosen else None

    return FeatureSplit(
        part([b for b, reads in zip(blocks, bound, strict=True) if not reads]),
        part([b for b, reads in zip(blocks, bound, strict=True) if reads]),
        link,
    )
