"""Evaluation figures for the model runs and the report.

Each function builds a fresh `matplotlib.figure.Figure` on the Agg canvas and returns it: no pyplot,
so no global figure state leaks between runs or threads and nothing needs a display. Callers save
or log the figure (`fig.savefig(path)`) and may simply drop it afterwards.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike

from training.evaluation import metrics

SIZE = (6.0, 4.5)


def _figure(size: tuple[float, float] = SIZE) -> Figure:
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def calibration_curve(y: ArrayLike, p: ArrayLike, bins: int = 15) -> Figure:
    """Observed rate against mean predicted probability in quantile bins, with the diagonal and
    the expected calibration error in the title."""
    a, b = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    fig = _figure()
    ax = fig.add_subplot()
    if a.size:
        edges = np.unique(np.quantile(b, np.linspace(0, 1, bins + 1)))
        which = np.searchsorted(edges[1:-1], b, side="right")
        count = np.bincount(which, minlength=len(edges) - 1)
        keep = count > 0
        mean_p = np.bincount(which, weights=b, minlength=len(count))[keep] / count[keep]
        rate = np.bincount(which, weights=a, minlength=len(count))[keep] / count[keep]
        ax.plot(mean_p, rate, "o-", label="model")
        top = float(max(mean_p.max(), rate.max(), 1e-3)) * 1.05
    else:
        top = 1.0
    ax.plot([0, top], [0, top], "--", color="grey", label="perfect")
    ece = metrics.expected_calibration_error(a, b, bins=bins)
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed rate",
        title=f"Calibration (ECE {ece:.4f}, {a.size:,} rows)",
        xlim=(0, top),
        ylim=(0, top),
    )
    ax.legend(loc="upper left")
    return fig


def feature_importance(names: Sequence[str], gains: ArrayLike, top: int = 20) -> Figure:
    """Horizontal bars of the `top` features by importance (gain), largest at the top, as a share
    of the total so models of different sizes compare."""
    g = np.asarray(gains, dtype=float)
    total = float(g.sum())
    share = g / total if total > 0 else g
    order = np.argsort(-share, kind="stable")[:top][::-1]
    fig = _figure((6.0, max(2.5, 0.28 * len(order) + 1.0)))
    ax = fig.add_subplot()
    ax.barh([names[i] for i in order], share[order])
    ax.set(xlabel="share of total gain", title=f"Feature importance (top {len(order)})")
    ax.tick_params(axis="y", labelsize=8)
    return fig


def lift_by_decile(y: ArrayLike, pred: ArrayLike) -> Figure:
    """Mean outcome per prediction decile (1 = highest predictions) against the overall mean."""
    table = metrics.lift_by_decile(y, pred)
    fig = _figure()
    ax = fig.add_subplot()
    ax.bar(table["decile"].astype(int), table["mean_y"], label="mean outcome")
    if len(table):
        overall = float(np.mean(np.asarray(y, dtype=float)))
        ax.axhline(overall, ls="--", color="grey", label="overall mean")
        ax.plot(
            table["decile"].astype(int),
            table["mean_pred"],
            "o-",
            color="C1",
            label="mean prediction",
        )
    ax.set(
        xlabel="decile of prediction (1 = highest)",
        ylabel="mean outcome",
        title="Lift by decile",
        xticks=range(1, 11),
    )
    ax.legend()
    return fig


def predicted_vs_actual(y: ArrayLike, pred: ArrayLike, max_points: int = 5000) -> Figure:
    """Scatter of actual against predicted values (a seeded sample of at most `max_points`), with
    the diagonal and the mean actual per prediction decile."""
    a, b = np.asarray(y, dtype=float), np.asarray(pred, dtype=float)
    fig = _figure()
    ax = fig.add_subplot()
    if a.size:
        pick = np.random.default_rng(0).permutation(a.size)[:max_points]
        ax.scatter(b[pick], a[pick], s=6, alpha=0.3, label="rows")
        table = metrics.lift_by_decile(a, b)
        ax.plot(table["mean_pred"], table["mean_y"], "o-", color="C1", label="decile means")
        lo, hi = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        ax.plot([lo, hi], [lo, hi], "--", color="grey", label="perfect")
        ax.legend(loc="upper left")
    r = metrics.pearson(a, b)
    ax.set(xlabel="predicted", ylabel="actual", title=f"Predicted vs actual (r {r:.3f})")
    return fig


def gain_chart(y: ArrayLike, pred: ArrayLike) -> Figure:
    """Share of the realised total held by the top x% of customers by prediction, beside a
    perfect ranking (by the outcome itself) and a random one; the top decile's share in the title."""
    share, captured = metrics.gain_curve(y, pred)
    best_share, best = metrics.gain_curve(y, y)
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot(share, captured, label="model")
    ax.plot(best_share, best, ":", color="C2", label="perfect")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="random")
    top = float(np.interp(0.1, share, captured))
    ax.set(
        xlabel="share of customers, highest predictions first",
        ylabel="share of realised total",
        title=f"Gain (top 10% hold {top:.0%})",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax.legend(loc="lower right")
    return fig


def decile_calibration(y: ArrayLike, pred: ArrayLike) -> Figure:
    """Mean realised against mean predicted value per prediction decile, with the diagonal:
    points above it are deciles the model undervalues."""
    table = metrics.lift_by_decile(y, pred)
    fig = _figure()
    ax = fig.add_subplot()
    if len(table):
        ax.plot(table["mean_pred"], table["mean_y"], "o-", label="deciles")
        for d, xp, yp in zip(table["decile"], table["mean_pred"], table["mean_y"], strict=True):
            ax.annotate(str(int(d)), (xp, yp), textcoords="offset points", xytext=(4, -10))
        top = float(max(table["mean_pred"].max(), table["mean_y"].max(), 1e-9)) * 1.05
    else:
        top = 1.0
    ax.plot([0, top], [0, top], "--", color="grey", label="perfect")
    ax.set(
        xlabel="mean predicted value",
        ylabel="mean realised value",
        title="Calibration by decile (1 = highest predictions)",
        xlim=(0, top),
        ylim=(0, top),
    )
    ax.legend(loc="upper left")
    return fig
