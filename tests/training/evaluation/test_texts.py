"""The report's topics: volume by month, negative share, drift, and their section of the page."""

from __future__ import annotations

import pandas as pd

from training.evaluation.report import render_html
from training.evaluation.texts import topic_table


def rows() -> pd.DataFrame:
    """Topic 0 grows from 2 to 6 texts (all negative), topic 1 stays at 2, one text has no topic."""
    jan, feb = pd.Timestamp("2026-01-01"), pd.Timestamp("2026-02-01")
    return pd.DataFrame(
        [
            (jan, 0, True, 2),
            (feb, 0, True, 6),
            (jan, 1, False, 2),
            (feb, 1, True, 1),
            (feb, 1, False, 1),
            (feb, -1, False, 1),
        ],  # fmt: skip
        columns=["month", "topic", "negative", "n"],
    )


def test_topic_table_counts_shares_and_drift() -> None:
    table = topic_table(rows(), [["bill", "<refund>"], ["wifi", "signal"]]).set_index("topic")
    assert list(table.index) == [0, 1, -1]  # by volume
    assert table.loc[0, "terms"] == "bill, <refund>" and table.loc[-1, "terms"] == "(no topic term)"
    assert table.loc[0, "texts"] == 8 and table.loc[1, "texts"] == 4
    assert table.loc[0, "negative_share"] == 1.0 and table.loc[1, "negative_share"] == 0.25
    assert table.loc[0, "2026-01"] == 2 and table.loc[0, "2026-02"] == 6
    # topic 0: 2 of 4 texts in January, 6 of 9 in February
    assert abs(table.loc[0, "drift"] - (6 / 9 - 2 / 4)) < 1e-12


def test_the_report_shows_the_topics_escaped() -> None:
    page = render_html(None, {}, None, topic_table(rows(), [["bill", "<refund>"], ["wifi"]]))
    assert 'id="topics"' in page and "Voice of the customer" in page
    assert "bill, &lt;refund&gt;" in page and "<refund>" not in page
    assert "+16.7 pts" in page  # topic 0's drift
