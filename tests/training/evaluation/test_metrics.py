"""Metrics on hand-made arrays whose answers are known."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from training.evaluation import metrics


def test_ece_is_zero_when_every_bin_matches_its_rate() -> None:
    y = np.array([0, 1, 0, 1, 1, 1, 1, 0])
    p = np.array([0.5, 0.5, 0.5, 0.5, 0.75, 0.75, 0.75, 0.75])
    assert metrics.expected_calibration_error(y, p, bins=2) == pytest.approx(0.0)


def test_ece_weights_each_bin_gap_by_its_size() -> None:
    # bin of 0.1s (rate 0.5, gap 0.4) and bin of 0.9s (rate 0.5, gap 0.4) -> 0.4
    y = np.array([0, 1, 0, 1])
    p = np.array([0.1, 0.1, 0.9, 0.9])
    assert metrics.expected_calibration_error(y, p, bins=2) == pytest.approx(0.4)
    # a constant prediction is one bin: |mean(y) - p|
    assert metrics.expected_calibration_error([0, 0, 0, 1], [0.5] * 4) == pytest.approx(0.25)


def test_ece_uniform_strategy_uses_fixed_edges() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.05, 0.15, 0.85, 0.95])
    # bins [0,.5) and [.5,1]: gaps |0 - .1| and |1 - .9| -> 0.1
    assert metrics.expected_calibration_error(y, p, bins=2, strategy="uniform") == pytest.approx(
        0.1
    )
    with pytest.raises(ValueError):
        metrics.expected_calibration_error(y, p, strategy="nope")  # type: ignore[arg-type]


def test_gini_of_a_perfect_ranking_is_one_and_reversed_minus_one() -> None:
    y = np.array([0.0, 0.0, 1.0, 5.0, 10.0])
    assert metrics.normalized_gini(y, y) == pytest.approx(1.0)
    assert metrics.normalized_gini(y, np.arange(5)) == pytest.approx(1.0)
    assert metrics.normalized_gini(y, -y) < -0.8


def test_gini_equals_two_auc_minus_one_for_binary_outcomes() -> None:
    rng = np.random.default_rng(3)
    y = (rng.random(400) < 0.3).astype(float)
    pred = y + rng.normal(0, 1.0, 400)
    pred[:50] = 0.0  # ties are handled the same way as the AUC does
    assert metrics.normalized_gini(y, pred) == pytest.approx(2 * metrics.roc_auc(y, pred) - 1)


def test_constant_prediction_has_zero_gini_and_random_capture() -> None:
    y = np.array([3.0, 0.0, 0.0, 7.0, 1.0, 0.0, 0.0, 0.0, 2.0, 9.0])
    assert metrics.normalized_gini(y, np.ones(10)) == pytest.approx(0.0)
    assert metrics.top_decile_capture(y, np.ones(10)) == pytest.approx(0.1)


def test_top_decile_capture_is_the_share_held_by_the_top_tenth() -> None:
    y = np.r_[np.full(18, 1.0), 11.0, 11.0]  # total 40; the top 2 of 20 rows hold 22
    pred = np.arange(20.0)
    assert metrics.top_decile_capture(y, pred) == pytest.approx(22 / 40)
    assert metrics.top_decile_capture(y, -pred) == pytest.approx(2 / 40)


def test_gain_curve_is_the_share_held_by_the_top_customers() -> None:
    y = np.array([0.0, 10.0, 30.0, 60.0])
    share, gain = metrics.gain_curve(y, [1.0, 2.0, 3.0, 4.0])
    assert share.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert gain == pytest.approx([0.0, 0.6, 0.9, 1.0, 1.0])
    _, flat = metrics.gain_curve(y, np.ones(4))  # ties share evenly: the random diagonal
    assert flat == pytest.approx(share)
    _, tied = metrics.gain_curve(y, [0.0, 0.0, 5.0, 5.0])  # the top two share 90
    assert tied == pytest.approx([0.0, 0.45, 0.9, 0.95, 1.0])
    many = np.r_[np.full(18, 1.0), 11.0, 11.0]
    s, g = metrics.gain_curve(many, np.arange(20.0))
    assert np.interp(0.1, s, g) == pytest.approx(metrics.top_decile_capture(many, np.arange(20.0)))


def test_lift_by_decile_on_a_perfect_ranking() -> None:
    y = np.repeat(np.arange(10.0, 0, -1), 10)  # decile 1 holds the 10s
    table = metrics.lift_by_decile(y, y)
    assert list(table["decile"]) == list(range(1, 11))
    assert list(table["n"]) == [10] * 10
    assert list(table["mean_y"]) == list(np.arange(10.0, 0, -1))
    assert table["lift"].iloc[0] == pytest.approx(10 / 5.5)
    assert table["cum_capture"].iloc[-1] == pytest.approx(1.0)


def test_lift_by_decile_keeps_ties_together() -> None:
    table = metrics.lift_by_decile(np.arange(20.0), np.ones(20))
    assert len(table) == 1 and table["n"].iloc[0] == 20 and table["lift"].iloc[0] == 1.0
    assert metrics.lift_by_decile([], []).empty


def test_wrappers_return_known_values() -> None:
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    assert metrics.roc_auc(y, p) == pytest.approx(0.75)
    assert metrics.pr_auc(y, p) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert metrics.brier(y, p) == pytest.approx(np.mean((y - p) ** 2))
    assert metrics.mae([1, 2, 3], [2, 2, 5]) == pytest.approx(1.0)
    assert metrics.rmse([0, 0], [3, 4]) == pytest.approx(math.sqrt(12.5))
    assert metrics.spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == pytest.approx(1.0)
    assert metrics.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "fn",
    [metrics.roc_auc, metrics.pr_auc, metrics.normalized_gini],
)
def test_one_class_gives_nan_not_an_error(fn: Callable[..., float]) -> None:
    assert math.isnan(fn(np.zeros(5), np.arange(5.0)))


@pytest.mark.parametrize("fn", [metrics.spearman, metrics.pearson])
def test_constant_series_give_nan(fn: Callable[..., float]) -> None:
    assert math.isnan(fn(np.ones(5), np.arange(5.0)))
    assert math.isnan(fn(np.arange(5.0), np.ones(5)))


@pytest.mark.parametrize(
    "fn",
    [
        metrics.roc_auc,
        metrics.brier,
        metrics.mae,
        metrics.rmse,
        metrics.spearman,
        metrics.expected_calibration_error,
        metrics.top_decile_capture,
    ],
)
def test_empty_input_gives_nan(fn: Callable[..., float]) -> None:
    assert math.isnan(fn(np.array([]), np.array([])))


def test_mismatched_lengths_are_an_error() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        metrics.mae([1, 2], [1])
