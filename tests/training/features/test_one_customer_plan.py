"""The compiled plan gathers counts and extremes as a spec-by-spec loop computes them."""

from __future__ import annotations

import numpy as np

from training.features.one_customer_plan import NO_AGE, ages_as_days, compile_plan
from training.features.sql import Spec

SPECS = [
    Spec("a_7d", "events", "count", (0, 2), 0),
    Spec("any_30d", "events", "count", None, 1),
    Spec("nothing", "events", "count", (), 1),
    Spec("rate", "events", "rate", (1,), 1),
    Spec("last_a", "events", "last", (0, 2), -1),
    Spec("first_b", "events", "first", (1,), -1),
    Spec("mean", "events", "mean", (0,), 1),
    Spec("topic_7d", "texts", "count", (1,), 0),
    Spec("texts_30d", "texts", "count", None, 1),
]
CODES = [s.select if s.select is not None else (0, 1, 2) for s in SPECS]


def plan() -> dict:
    return compile_plan(SPECS, CODES, {"events": 3, "channels": 1, "exposures": 1, "texts": 2},
                        {"events": 3, "channels": 3, "exposures": 3, "texts": 3})  # fmt: skip


def test_counts_sum_the_cells_of_their_codes_at_their_window() -> None:
    counts = np.arange(9, dtype=float)  # code * 3 + window
    events = plan()["events"]
    np.testing.assert_array_equal(events.counted["n"].columns, [0, 1, 2])
    np.testing.assert_array_equal(events.counted["n"].sums(counts), [0 + 6, 1 + 4 + 7, 0])
    texts = plan()["texts"]
    np.testing.assert_array_equal(texts.counted["n"].columns, [7, 8])
    np.testing.assert_array_equal(texts.counted["n"].sums(np.arange(6.0)), [3, 1 + 4])


def test_extremes_take_the_smallest_age_of_their_codes_and_none_is_missing() -> None:
    events = plan()["events"]
    assert events.last is not None and events.first is not None
    amin = np.array([50, 10, NO_AGE])
    assert events.last.smallest(amin).tolist() == [50]
    assert events.first.smallest(np.array([-5, NO_AGE, -9])).tolist() == [NO_AGE]
    days = ages_as_days(np.array([86_400_000_000 // 2, NO_AGE]))
    assert days[0] == np.float32(0.5) and np.isnan(days[1])


def test_value_sums_and_means_are_left_to_the_spec_by_spec_loop() -> None:
    gathered = {j for p in plan().values() for j in p.columns()}
    assert gathered == {0, 1, 2, 3, 4, 5, 7, 8}
