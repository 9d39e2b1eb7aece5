"""Evaluation figures: fresh Agg figures, no pyplot state, robust to thin or empty input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from matplotlib.figure import Figure

from training.evaluation import plots


@pytest.fixture()
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    p = rng.beta(1, 8, 2000)
    return (rng.random(2000) < p).astype(float), p


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def test_every_plot_renders_without_touching_pyplot(scored: tuple[np.ndarray, np.ndarray]) -> None:
    import matplotlib.pyplot as plt

    y, p = scored
    before = plt.get_fignums()
    figures = [
        plots.calibration_curve(y, p),
        plots.feature_importance([f"f{i}" for i in range(30)], np.arange(30.0), top=20),
        plots.lift_by_decile(y, p),
        plots.predicted_vs_actual(y * 10 + p, p * 10),
        plots.gain_chart(y * 10 + p, p * 10),
        plots.decile_calibration(y * 10 + p, p * 10),
    ]
    for fig in figures:
        assert isinstance(fig, Figure) and _png(fig).startswith(b"\x89PNG")
    assert plt.get_fignums() == before


def test_feature_importance_shows_the_top_features_largest_first() -> None:
    fig = plots.feature_importance(["a", "b", "c", "d"], [1.0, 5.0, 0.0, 3.0], top=2)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["d", "b"]  # barh draws bottom-up: the largest is on top


def test_plots_accept_empty_and_degenerate_input() -> None:
    empty = np.array([])
    for fig in (
        plots.calibration_curve(empty, empty),
        plots.lift_by_decile(empty, empty),
        plots.predicted_vs_actual(empty, empty),
        plots.feature_importance([], []),
        plots.calibration_curve(np.zeros(10), np.full(10, 0.2)),
        plots.gain_chart(empty, empty),
        plots.gain_chart(np.zeros(10), np.arange(10.0)),
        plots.decile_calibration(empty, empty),
    ):
        assert _png(fig)


def test_gain_chart_names_the_top_decile_share() -> None:
    y = np.r_[np.full(18, 1.0), 11.0, 11.0]  # the top 2 of 20 hold 22 of 40
    fig = plots.gain_chart(y, np.arange(20.0))
    assert fig.axes[0].get_title() == "Gain (top 10% hold 55%)"
    model = fig.axes[0].get_lines()[0].get_ydata()
    assert model[2] == pytest.approx(22 / 40) and model[-1] == pytest.approx(1.0)
