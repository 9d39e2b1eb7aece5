"""Which snapshot lifetime value is judged on: the latest whose label window the data observed."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest

from training.data.lifetime import latest_complete
from training.errors import NextbestError

DATES = [datetime(2026, 2, 1), datetime(2026, 5, 2), datetime(2026, 7, 31)]


def test_the_latest_snapshot_with_its_whole_window_observed() -> None:
    # 2026-07-31 + 90 days = 2026-10-29: observed by 2026-11-02, not by 2026-10-15
    assert latest_complete(DATES, 90, datetime(2026, 11, 2)) == pd.Timestamp("2026-07-31")
    assert latest_complete(DATES, 90, datetime(2026, 10, 15)) == pd.Timestamp("2026-05-02")
    assert latest_complete(DATES[::-1], 90, datetime(2026, 10, 15)) == pd.Timestamp("2026-05-02")


def test_without_a_whole_window_or_an_end_of_observation() -> None:
    assert latest_complete(DATES, 90, datetime(2026, 3, 1)) == pd.Timestamp("2026-02-01")
    assert latest_complete(DATES, 90, None) == pd.Timestamp("2026-07-31")
    with pytest.raises(NextbestError, match="no snapshot"):
        latest_complete([], 90, None)
