"""Texts paired with survey answers: which texts learn which label, and when there is no model."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from training.config import Config, load_config
from training.data.contract import open_dataset
from training.data.texts import fit_texts, text_pairs


def dataset(root: Path, with_text: bool = True) -> Path:
    """a: a comment on an NPS answer, a chat before the as-of date and a detractor answer after
    it; b: a chat 100 days before (outside the 90-day context) and a promoter answer after; c: a
    chat before and only a CSAT comment after."""
    root.mkdir()
    pd.DataFrame({"customer_id": ["a", "b", "c"]}).to_csv(root / "customers.csv", index=False)
    rows = [
        ("a", "2026-01-10", "email", "nps", 9, "great, thanks"),
        ("a", "2026-02-20", "chat", "chat", None, "still no refund"),
        ("a", "2026-03-15", "email", "nps", 3, None),
        ("b", "2025-11-20", "chat", "chat", None, "old note"),
        ("b", "2026-03-20", "email", "nps", 10, None),
        ("c", "2026-02-25", "chat", "chat", None, "waiting"),
        ("c", "2026-06-20", "email", "csat", 2, "slow"),
    ]
    frame = pd.DataFrame(
        rows, columns=["customer_id", "ts", "channel", "event_type", "value", "text"]
    )
    if not with_text:
        frame = frame.drop(columns="text")
    frame.to_csv(root / "events.csv", index=False)
    return root


def config(**text: object) -> Config:
    base = load_config(None)
    return base.model_copy(update={"text": base.text.model_copy(update=text)})


def test_comments_and_snapshot_texts_learn_their_labels(tmp_path: Path) -> None:
    with open_dataset(dataset(tmp_path / "d")).connect() as con:
        pairs = text_pairs(con, config(), [date(2026, 3, 1)])
    got = sorted(zip(pairs.customers, pairs.texts, pairs.classes.tolist(), strict=True))
    assert got == [
        ("a", "great, thanks", 0),  # 50 days before the date: the detractor label after it
        ("a", "great, thanks", 2),  # a promoter's own comment
        ("a", "still no refund", 0),
        ("c", "slow", 0),  # a CSAT comment with its own answer (2 of 5)
    ]
    # b's chat is older than the 90-day context; c has no NPS answer after the date (no label)


def test_no_text_or_too_few_pairs_is_a_reason_not_an_error(tmp_path: Path) -> None:
    with open_dataset(dataset(tmp_path / "plain", with_text=False)).connect() as con:
        assert fit_texts(con, config(), [date(2026, 3, 1)]) == "text: no events carry text"
    with open_dataset(dataset(tmp_path / "d")).connect() as con:
        reason = fit_texts(con, config(), [date(2026, 3, 1)])
        assert isinstance(reason, str) and "4 texts paired" in reason
        assert fit_texts(con, config(enabled=False), []) == "text: disabled in the config"


def test_pairs_are_capped_by_a_seeded_sample(tmp_path: Path) -> None:
    with open_dataset(dataset(tmp_path / "d")).connect() as con:
        first = text_pairs(con, config(max_pairs=2), [date(2026, 3, 1)])
        again = text_pairs(con, config(max_pairs=2), [date(2026, 3, 1)])
    assert len(first) == 2 and first.texts == again.texts
