"""Voice of the customer for the report: each text topic with its top terms, its volume by month,
its share of negative texts and its drift (share of all texts in the last month against the first)."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from training.registry.bundle import Bundle

MONTHS = 6  # whole months of texts the report shows, up to the end of the data


def evaluate_topics(con: duckdb.DuckDBPyConnection, bundle: Bundle) -> pd.DataFrame | None:
    """One row per topic over the last MONTHS months of texts (None: no text model or no text)."""
    model = bundle.builder.text_model_
    columns = {r[0] for r in con.execute("DESCRIBE events").fetchall()}
    if model is None or "text" not in columns:
        return None
    # whole months only: a month the data ends in the middle of would read as a collapse
    end = "(SELECT date_trunc('month', max(ts) + INTERVAL 1 DAY) FROM events)"
    rows = con.execute(
        "SELECT CAST(text AS VARCHAR) AS text, date_trunc('month', ts) AS month, count(*) AS n "
        f"FROM events WHERE text IS NOT NULL AND trim(text) <> '' AND ts < {end} "
        f"AND ts >= {end} - INTERVAL {MONTHS} MONTH GROUP BY ALL"
    ).df()
    if rows.empty:
        return None
    distinct = rows["text"].drop_duplicates().tolist()
    scores = model.score(distinct)
    found = pd.DataFrame({"text": distinct, "topic": scores.topic, "negative": scores.negative})
    return topic_table(rows.merge(found, on="text"), model.topic_terms(6))


def topic_table(rows: pd.DataFrame, terms: list[list[str]]) -> pd.DataFrame:
    """Topics from (month, topic, negative, n) rows: volume per month, negative share, drift."""
    rows = rows.assign(neg=rows["n"] * rows["negative"])
    by_month = rows.pivot_table(index="topic", columns="month", values="n", aggfunc="sum",
                                fill_value=0).sort_index(axis=1)  # fmt: skip
    share = by_month / by_month.sum(axis=0)
    totals = rows.groupby("topic")[["n", "neg"]].sum()
    out = pd.DataFrame(
        {
            "topic": [int(t) for t in by_month.index],
            "terms": [
                ", ".join(terms[t]) if 0 <= t < len(terms) else "(no topic term)"
                for t in by_month.index
            ],  # fmt: skip
            "texts": totals.loc[by_month.index, "n"].to_numpy(),
            "negative_share": (totals["neg"] / totals["n"]).loc[by_month.index].to_numpy(),
            "drift": (share.iloc[:, -1] - share.iloc[:, 0]).to_numpy(),
        }
    )
    for month in by_month.columns:
        out[f"{pd.Timestamp(month):%Y-%m}"] = by_month[month].to_numpy()
    return out.sort_values("texts", ascending=False, ignore_index=True).astype(
        {"negative_share": np.float64, "drift": np.float64}
    )
