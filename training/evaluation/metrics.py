"""Model-quality metrics as pure functions of (truth, prediction) arrays.

Every function returns NaN instead of raising when the metric is undefined on its input (empty
arrays, one class only, a constant series), so an evaluation on a thin slice reports "unknown"
rather than crashing a training run. Ranking metrics treat tied predictions fairly: a tie group
counts as if its members were in random order (the expected value over orderings), never by row
order.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats
from sklearn import metrics as skm

NAN = float("nan")


def _pair(y: ArrayLike, pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as flat float64 arrays of one length."""
    a = np.asarray(y, dtype=np.float64).ravel()
    b = np.asarray(pred, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"truth and prediction differ in length: {a.size} != {b.size}")
    return a, b


def _two_classes(y: np.ndarray) -> bool:
    return y.size > 0 and 0 < int(np.count_nonzero(y)) < y.size


def _varies(x: np.ndarray) -> bool:
    return x.size > 1 and bool(np.ptp(x) > 0)


# ---------------------------------------------------------------------------------------------
# thin wrappers: NaN on degenerate input


def roc_auc(y: ArrayLike, p: ArrayLike) -> float:
    """Area under the ROC curve; NaN with one class."""
    a, b = _pair(y, p)
    return float(skm.roc_auc_score(a, b)) if _two_classes(a) else NAN


def pr_auc(y: ArrayLike, p: ArrayLike) -> float:
    """Average precision (area under the precision-recall curve); NaN with one class."""
    a, b = _pair(y, p)
    return float(skm.average_precision_score(a, b)) if _two_classes(a) else NAN


def brier(y: ArrayLike, p: ArrayLike) -> float:
    """Mean squared error of probabilities; NaN on empty input."""
    a, b = _pair(y, p)
    return float(np.mean((a - b) ** 2)) if a.size else NAN


def mae(y: ArrayLike, pred: ArrayLike) -> float:
    """Mean absolute error; NaN on empty input."""
    a, b = _pair(y, pred)
    return float(np.mean(np.abs(a - b))) if a.size else NAN


def rmse(y: ArrayLike, pred: ArrayLike) -> float:
    """Root mean squared error; NaN on empty input."""
    a, b = _pair(y, pred)
    return float(np.sqrt(np.mean((a - b) ** 2))) if a.size else NAN


def spearman(y: ArrayLike, pred: ArrayLike) -> float:
    """Spearman rank correlation; NaN when either side is constant."""
    a, b = _pair(y, pred)
    return float(stats.spearmanr(a, b).statistic) if _varies(a) and _varies(b) else NAN


def pearson(y: ArrayLike, pred: ArrayLike) -> float:
    """Pearson correlation; NaN when either side is constant."""
    a, b = _pair(y, pred)
    return float(np.corrcoef(a, b)[0, 1]) if _varies(a) and _varies(b) else NAN


# ---------------------------------------------------------------------------------------------
# calibration


def expected_calibration_error(
    y: ArrayLike,
    p: ArrayLike,
    bins: int = 15,
    strategy: Literal["quantile", "uniform"] = "quantile",
) -> float:
    """Mean |observed rate - mean predicted probability| over bins, weighted by bin size.

    Quantile bins (the default) hold equal numbers of rows, so a score concentrated near the base
    rate is still judged on many bins; tied quantile edges merge their bins.
    """
    a, b = _pair(y, p)
    if a.size == 0:
        return NAN
    if strategy == "quantile":
        edges = np.unique(np.quantile(b, np.linspace(0.0, 1.0, bins + 1)))
    elif strategy == "uniform":
        edges = np.linspace(0.0, 1.0, bins + 1)
    else:
        raise ValueError(f"strategy must be 'quantile' or 'uniform', not {strategy!r}")
    which = np.searchsorted(edges[1:-1], b, side="right")
    gap = np.bincount(which, weights=a - b, minlength=len(edges) - 1)
    return float(np.sum(np.abs(gap)) / a.size)


# ---------------------------------------------------------------------------------------------
# ranking of amounts (value, LTV)


def gains_curve(y: ArrayLike, pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative share of rows (x) against cumulative share of total `y` (g), rows taken by
    decreasing prediction; one point per group of tied predictions, starting at (0, 0).

    Linear interpolation between the points is the expectation over random orders within ties.
    """
    a, b = _pair(y, pred)
    order = np.argsort(-b, kind="stable")
    a, b = a[order], b[order]
    ends = np.flatnonzero(np.r_[b[1:] != b[:-1], True])  # last row of each tie group
    x = np.r_[0.0, (ends + 1) / a.size]
    g = np.r_[0.0, np.cumsum(a)[ends] / np.sum(a)]
    return x, g


def _gini_area(y: np.ndarray, pred: np.ndarray) -> float:
    x, g = gains_curve(y, pred)
    return float(np.trapezoid(g, x) - 0.5)


def normalized_gini(y: ArrayLike, pred: ArrayLike) -> float:
    """Gini of `pred` ranking `y` divided by the Gini of the perfect ranking: 1 perfect, 0 random,
    negative when reversed. Equals 2 AUC - 1 for a 0/1 `y`. NaN if `y` sums to 0 or is constant."""
    a, b = _pair(y, pred)
    if not _varies(a) or np.sum(a) == 0:
        return NAN
    best = _gini_area(a, a)
    return _gini_area(a, b) / best if best != 0 else NAN


def top_decile_capture(y: ArrayLike, pred: ArrayLike) -> float:
    """Share of the total of `y` held by the 10% of rows with the highest prediction (0.1 is
    random, tied rows at the boundary count pro rata). NaN if `y` sums to 0."""
    a, b = _pair(y, pred)
    if a.size == 0 or np.sum(a) == 0:
        return NAN
    x, g = gains_curve(a, b)
    return float(np.interp(0.1, x, g))


def lift_by_decile(y: ArrayLike, pred: ArrayLike) -> pd.DataFrame:
    """One row per prediction decile (1 = highest predictions): rows, mean prediction, mean
    outcome, lift over the overall mean outcome and cumulative share of the outcome total.

    Tied predictions stay in one decile (by average rank), so deciles can differ in size.
    """
    a, b = _pair(y, pred)
    columns = ["decile", "n", "mean_pred", "mean_y", "lift", "cum_capture"]
    if a.size == 0:
        return pd.DataFrame(columns=columns)
    rank = stats.rankdata(-b, method="average")  # 1 = highest prediction
    decile = np.minimum(np.ceil(rank / a.size * 10).astype(int), 10)
    frame = pd.DataFrame({"decile": decile, "pred": b, "y": a})
    out = frame.groupby("decile", sort=True).agg(
        n=("y", "size"), mean_pred=("pred", "mean"), mean_y=("y", "mean")
    )
    overall = float(np.mean(a))
    out["lift"] = out["mean_y"] / overall if overall != 0 else NAN
    total = float(np.sum(a))
    out["cum_capture"] = (out["mean_y"] * out["n"]).cumsum() / total if total != 0 else NAN
    return out.reset_index()[columns]


def gain_curve(y: ArrayLike, pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Share of customers (highest predictions first) against the share of the outcome total
    they hold: the gain chart, from (0, 0) to (1, 1). Tied predictions share their outcome
    evenly, so the curve does not depend on the order of tied rows."""
    a, b = _pair(y, pred)
    total = float(np.sum(a))
    if a.size == 0 or total == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])
    order = np.argsort(-b, kind="stable")
    starts = np.unique(-b[order], return_index=True)[1]
    sizes = np.diff(np.append(starts, a.size))
    shared = np.repeat(np.add.reduceat(a[order], starts) / sizes, sizes)
    return np.arange(a.size + 1) / a.size, np.append(0.0, np.cumsum(shared) / total)
