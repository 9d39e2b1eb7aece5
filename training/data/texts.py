"""Texts paired with survey answers, to fit the text model on (docs/data.md, "Text").

Two kinds of pairs, both labelled negative / neutral / positive on the survey's scale: the comment
on a survey event with that event's answer, and every text a customer wrote in the `context_days`
before an as-of date with that snapshot's satisfaction label (the next answer). Censored labels
are left out, as for the score models.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import duckdb
import numpy as np
import pandas as pd

from training.config import Config
from training.data.outcomes import compute_outcomes, is_label_observed
from training.data.snapshots import active_spine, data_span, holdout_mask
from training.text.labels import SURVEY_CUTS, answer_classes
from training.text.model import CrossFittedText, TextModel, fit_text_model

_SPINE = "_nextbest_text_spine"


@dataclass(frozen=True)
class TextPairs:
    """Labelled texts: text i, its class (0 negative .. 2 positive) and its writer."""

    texts: list[str]
    classes: np.ndarray
    customers: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def has_text(con: duckdb.DuckDBPyConnection) -> bool:
    """Does the events view carry a text column with at least one text?"""
    columns = {r[0] for r in con.execute("DESCRIBE events").fetchall()}
    if "text" not in columns:
        return False
    return bool(con.execute("SELECT count(text) > 0 FROM events").fetchall()[0][0])


def comment_pairs(con: duckdb.DuckDBPyConnection, config: Config) -> pd.DataFrame:
    """Survey comments with their own answer (survey types with a known scale)."""
    frames = []
    for survey in config.features.survey_event_types:
        if survey not in SURVEY_CUTS:
            continue
        sql = (
            "SELECT customer_id, ts, text, value FROM events WHERE event_type = $t "
            "AND text IS NOT NULL AND value IS NOT NULL"
        )
        rows = con.execute(_sample(sql, config), {"t": survey}).df().drop(columns="ts")
        rows["y"] = answer_classes(rows.pop("value").to_numpy(), survey)
        frames.append(rows)
    return pd.concat(frames, ignore_index=True) if frames else _empty()


def snapshot_pairs(
    con: duckdb.DuckDBPyConnection, config: Config, dates: list[date]
) -> pd.DataFrame:
    """Texts of the `context_days` before each as-of date with that date's satisfaction label."""
    found = config.outcome_for_role("satisfaction")
    if found is None or found[1].kind != "last" or found[1].event_types[0] not in SURVEY_CUTS:
        return _empty()
    name, spec = found
    until = data_span(con, config).observed_until
    churn = config.outcome_for_role("churn")
    frames = []
    for as_of in dates:
        spine = active_spine(con, as_of, churn[1] if churn else None)
        con.execute(f"CREATE OR REPLACE TEMP TABLE {_SPINE} AS {spine}")
        labels = compute_outcomes(con, _SPINE, {name: spec})
        if until is not None:
            labels = labels[is_label_observed(labels["as_of"], spec, until)]
        labels = labels.dropna(subset=[name])
        labels = pd.DataFrame({"customer_id": labels["customer_id"],
                               "y": answer_classes(labels[name].to_numpy(), spec.event_types[0])})  # fmt: skip
        con.register("_nextbest_text_labels", labels)
        try:
            sql = (
                "SELECT e.customer_id, e.ts, e.text, l.y FROM events e "
                "JOIN _nextbest_text_labels l ON e.customer_id = l.customer_id "
                "WHERE e.text IS NOT NULL AND e.ts < $t "
                f"AND e.ts >= $t - INTERVAL {int(config.text.context_days)} DAY"
            )
            at = {"t": pd.Timestamp(as_of).to_pydatetime()}
            rows = con.execute(_sample(sql, config), at).df().drop(columns="ts")
        finally:
            con.unregister("_nextbest_text_labels")
        frames.append(rows)
    con.execute(f"DROP TABLE IF EXISTS {_SPINE}")
    return pd.concat(frames, ignore_index=True) if frames else _empty()


def text_pairs(con: duckdb.DuckDBPyConnection, config: Config, dates: list[date]) -> TextPairs:
    """Labelled texts: survey comments, then texts before each snapshot; at most
    `text.max_pairs`, a seeded sample when there are more."""
    both = pd.concat([comment_pairs(con, config), snapshot_pairs(con, config, dates)])
    both = both[both["y"] >= 0]
    if len(both) > config.text.max_pairs:
        both = both.sample(config.text.max_pairs, random_state=7).sort_index(kind="stable")
    return TextPairs(
        texts=both["text"].astype(str).tolist(),
        classes=both["y"].to_numpy(dtype=np.int64),
        customers=both["customer_id"].astype(str).tolist(),
    )


def fit_texts(
    con: duckdb.DuckDBPyConnection, config: Config, dates: list[date]
) -> tuple[TextModel, CrossFittedText] | str:
    """The text model and its cross-fitted twin, or why none can be fitted on this data. The
    final model never learns from the customers the score models are tested on (the held-out
    ones of `split_for`), so `evaluate`, which scores with it, stays honest."""
    if not config.text.enabled:
        return "text: disabled in the config"
    if not has_text(con):
        return "text: no events carry text"
    pairs = text_pairs(con, config, dates)
    if len(pairs) < config.text.min_pairs or len(np.unique(pairs.classes)) < 2:
        return (
            f"text: {len(pairs)} texts paired with a survey answer, of "
            f"{len(np.unique(pairs.classes))} classes (need {config.text.min_pairs} and 2)"
        )
    topic_texts = [t for (t,) in con.execute(
        "SELECT text FROM events WHERE text IS NOT NULL USING SAMPLE 50000 ROWS (reservoir, 7)"
    ).fetchall()]  # fmt: skip
    return fit_text_model(
        pairs.texts,
        pairs.classes,
        pairs.customers,
        topic_texts=topic_texts,
        n_topics=config.text.topics,
        folds=config.text.folds,
        held_out=holdout_mask(pd.Series(pairs.customers, dtype="str")),
    )


def _sample(sql: str, config: Config) -> str:
    """`sql` cut to a seeded sample of `text.max_pairs` rows (all of them when fewer), in a
    stable order: millions of texts need not all be read to learn their tone."""
    return (
        f"SELECT * FROM ({sql}) USING SAMPLE reservoir({int(config.text.max_pairs)} ROWS) "
        "REPEATABLE (7) ORDER BY customer_id, ts"
    )


def _empty() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": pd.Series([], dtype=str),
                         "text": pd.Series([], dtype=str), "y": pd.Series([], dtype=np.int64)})  # fmt: skip
