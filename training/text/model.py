"""The text model a feature builder scores events' text with: sentiment + topics, saved as JSON and
an .npz of arrays (never pickle), and its cross-fitted form for building training rows.

Cross-fitting: customers are split into folds by a stable hash of their id; fold j's texts are
scored by a sentiment model fitted on the other folds' labels only, so no score model ever sees a
text score fitted on its own label. The topics are unsupervised and shared by all folds.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from training.text.sentiment import TextSentiment
from training.text.topics import TextTopics

FORMAT = 1
JSON_FILE, ARRAYS_FILE = "text.json", "text.npz"
POLAR_SHARE = 0.0  # share of words kept out of the topics for carrying sentiment (0: none)


@dataclass(frozen=True)
class TextScores:
    """Per text: polarity P(pos) - P(neg) in [-1, 1], negative (the likeliest class), topic (-1 none)."""

    polarity: np.ndarray
    negative: np.ndarray
    topic: np.ndarray


class TextScorer(Protocol):
    """What the feature definition needs of a text model: its topics, a digest and scores, and
    whether a text's score depends on who wrote it (`per_customer`: cross-fitted)."""

    per_customer: bool

    @property
    def n_topics(self) -> int: ...

    @property
    def digest(self) -> str: ...

    def topic_terms(self, n: int = 8) -> list[list[str]]: ...

    def group_of(self, customer_ids: Sequence[str]) -> np.ndarray: ...

    def score(
        self, texts: Sequence[str], customer_ids: Sequence[str] | None = None
    ) -> TextScores: ...


def fold_of(customer_ids: Sequence[str] | pd.Series, folds: int) -> np.ndarray:
    """The stable fold (0..folds-1) of each customer id: the same id is always in the same fold."""
    ids = pd.Series(customer_ids, dtype="object").astype(str)
    h = pd.util.hash_pandas_object(ids, index=False).to_numpy()
    return (h % np.uint64(folds)).astype(np.int64)


class TextModel:
    """A fitted sentiment model and topic model, scored together."""

    per_customer = False

    def __init__(self, sentiment: TextSentiment, topics: TextTopics) -> None:
        self.sentiment = sentiment
        self.topics = topics

    @property
    def n_topics(self) -> int:
        return int(self.topics.n_topics)

    def topic_terms(self, n: int = 8) -> list[list[str]]:
        return self.topics.top_terms(n)

    def group_of(self, customer_ids: Sequence[str]) -> np.ndarray:
        """One group for everyone: a text's score does not depend on who wrote it."""
        return np.zeros(len(customer_ids), dtype=np.int64)

    def score(self, texts: Sequence[str], customer_ids: Sequence[str] | None = None) -> TextScores:
        """Scores of some texts (`customer_ids` is ignored: one model serves every customer)."""
        return _scores(self.sentiment.predict_proba(texts), self.topics.assign(texts))

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        s_state, s_arrays = self.sentiment.to_state()
        t_state, t_arrays = self.topics.to_state()
        return {"format": FORMAT, "sentiment": s_state, "topics": t_state}, s_arrays | t_arrays

    @property
    def digest(self) -> str:
        """Hash of everything the scores depend on (the feature version records it)."""
        if not hasattr(self, "_digest"):
            self._digest = _digest(*self.to_state())
        return self._digest

    def save(self, folder: Path | str) -> None:
        """Write text.json and text.npz into `folder` (which must exist)."""
        state, arrays = self.to_state()
        folder = Path(folder)
        (folder / JSON_FILE).write_text(json.dumps(state, sort_keys=True), encoding="utf-8")
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        (folder / ARRAYS_FILE).write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, folder: Path | str) -> TextModel:
        """Read a model written by `save`; arrays are read without pickle."""
        folder = Path(folder)
        state = json.loads((folder / JSON_FILE).read_text(encoding="utf-8"))
        if state.get("format") != FORMAT:
            raise ValueError(f"text model format {state.get('format')!r} is not {FORMAT}")
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return cls(
            TextSentiment.from_state(state["sentiment"], arrays),
            TextTopics.from_state(state["topics"], arrays),
        )


class CrossFittedText:
    """Per-fold sentiment models and the shared topics: scores texts out of fold by customer."""

    per_customer = True

    def __init__(self, sentiments: list[TextSentiment], topics: TextTopics) -> None:
        self.sentiments = sentiments
        self.topics = topics

    @property
    def n_topics(self) -> int:
        return int(self.topics.n_topics)

    def topic_terms(self, n: int = 8) -> list[list[str]]:
        return self.topics.top_terms(n)

    @property
    def digest(self) -> str:
        parts = [TextModel(s, self.topics).digest for s in self.sentiments]
        return "crossfit-" + hashlib.sha256("".join(parts).encode()).hexdigest()[:16]

    def group_of(self, customer_ids: Sequence[str]) -> np.ndarray:
        """Each customer's fold: writers of one fold share the scores of a text."""
        return fold_of(customer_ids, len(self.sentiments))

    def sentiment_proba(
        self, texts: Sequence[str], customer_ids: Sequence[str] | None
    ) -> np.ndarray:
        """Class probabilities of each text from the model of its customer's fold."""
        if customer_ids is None or len(customer_ids) != len(texts):
            raise ValueError("cross-fitted text scores need the customer id of every text")
        folds = fold_of(customer_ids, len(self.sentiments))
        proba = np.zeros((len(texts), 3))
        for j, model in enumerate(self.sentiments):
            rows = np.flatnonzero(folds == j)
            if len(rows):
                proba[rows] = model.predict_proba([texts[int(i)] for i in rows])
        return proba

    def score(self, texts: Sequence[str], customer_ids: Sequence[str] | None = None) -> TextScores:
        proba = self.sentiment_proba(texts, customer_ids)
        return _scores(proba, self.topics.assign(texts))


def fit_text_model(
    texts: Sequence[str],
    classes: np.ndarray,
    customer_ids: Sequence[str],
    topic_texts: Sequence[str] | None = None,
    n_topics: int = 8,
    folds: int = 5,
    sentiment: TextSentiment | None = None,
    polar_share: float = POLAR_SHARE,
    held_out: np.ndarray | None = None,
) -> tuple[TextModel, CrossFittedText]:
    """The final model (all labels) and its cross-fitted twin (fold j without fold j's customers).

    `texts[i]` is labelled `classes[i]` and written by `customer_ids[i]`; the topics are fitted on
    `topic_texts` (default: the labelled texts), without the `polar_share` of words that carry
    the most sentiment. Rows where `held_out` is True (the customers score models are tested on)
    never teach the final model, so an evaluation with it stays honest; the folds use every row.
    """
    template = sentiment if sentiment is not None else TextSentiment()
    texts, y = list(texts), np.asarray(classes)
    learn = np.ones(len(texts), dtype=bool) if held_out is None else ~np.asarray(held_out)
    final = TextSentiment(**template.get_params())
    final.fit([t for t, keep in zip(texts, learn, strict=True) if keep], y[learn])
    topics = TextTopics(n_topics=n_topics, stop_words=final.polar_words(polar_share))
    topics.fit(topic_texts if topic_texts is not None else texts)
    X, fold = final.matrix(texts), fold_of(customer_ids, folds)
    fold_models = [final.twin(X[fold != j], y[fold != j]) for j in range(folds)]
    return TextModel(final, topics), CrossFittedText(fold_models, topics)


def _scores(proba: np.ndarray, topic: np.ndarray) -> TextScores:
    return TextScores(
        polarity=(proba[:, 2] - proba[:, 0]).astype(np.float32),
        negative=proba.argmax(axis=1) == 0,
        topic=topic,
    )


def _digest(state: dict[str, Any], arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps(state, sort_keys=True).encode())
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()[:16]
