"""Topics found without labels: NMF over word TF-IDF, each topic named by its top terms.

`stop_words` keeps words out of the topics (`fit_text_model(polar_share=...)` passes the words the
sentiment model leans on most). Off by default: on real complaints the matter words ("cancelled",
"luggage") are the most negative ones, and dropping them costs more than the tone words do.
`max_df` drops the words in more than a tenth of the texts: the function words of any language.

A text's topic is the one its TF-IDF vector loads most on (projection on the unit-norm topic
vectors), or none (-1) when it shares no topic term; projection keeps scoring one sparse product.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import NMF
from sklearn.utils.validation import check_is_fitted

from training.text import vectors


class TextTopics(TransformerMixin, BaseEstimator):
    """fit(texts) learns `n_topics` topics; `transform` gives topic weights, `assign` the topic."""

    def __init__(
        self,
        n_topics: int = 8,
        max_features: int = 20_000,
        min_df: int = 3,
        max_df: float = 0.1,
        max_texts: int = 50_000,
        random_state: int = 0,
        stop_words: tuple[str, ...] = (),
    ) -> None:
        self.n_topics = n_topics
        self.max_features = max_features
        self.min_df = min_df
        self.max_df = max_df
        self.max_texts = max_texts
        self.random_state = random_state
        self.stop_words = stop_words

    def fit(self, texts: Sequence[str], y: object = None) -> TextTopics:
        texts = list(texts)
        if len(texts) > self.max_texts:  # topics settle long before every text is read
            rng = np.random.default_rng(self.random_state)
            texts = [texts[i] for i in rng.choice(len(texts), self.max_texts, replace=False)]
        min_df = self.min_df if len(texts) >= 50 * self.min_df else 1
        try:
            self.vectorizer_ = vectors.word_vectorizer(
                self.max_features, min_df, self.max_df, (1, 1), tuple(self.stop_words)
            ).fit(texts)
        except ValueError:  # every word too rare or too common: keep them all rather than none
            self.vectorizer_ = vectors.word_vectorizer(self.max_features, 1, ngrams=(1, 1))
            self.vectorizer_.fit(texts)
        X = self.vectorizer_.transform(texts)
        nmf = NMF(n_components=self.n_topics, init="nndsvda", max_iter=400,
                  random_state=self.random_state).fit(X)  # fmt: skip
        self.components_ = np.asarray(nmf.components_, dtype=np.float32)
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        check_is_fitted(self, "components_")
        norms = np.linalg.norm(self.components_, axis=1, keepdims=True)
        unit = self.components_ / np.maximum(norms, 1e-12)
        return np.asarray(self.vectorizer_.transform(texts) @ unit.T)

    def assign(self, texts: Sequence[str]) -> np.ndarray:
        """Topic index of each text, -1 when it has no topic term."""
        weights = self.transform(texts)
        best = weights.argmax(axis=1)
        return np.where(weights.max(axis=1) > 0, best, -1).astype(np.int16)

    def top_terms(self, n: int = 8) -> list[list[str]]:
        """The `n` heaviest terms of each topic, heaviest first: how people read a topic."""
        check_is_fitted(self, "components_")
        terms = np.empty(len(self.vectorizer_.vocabulary_), dtype=object)
        for term, j in self.vectorizer_.vocabulary_.items():
            terms[j] = term
        return [[str(t) for t in terms[np.argsort(-row)[:n]]] for row in self.components_]

    # -- persistence (JSON + arrays, never pickle) ---------------------------------------------
    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        check_is_fitted(self, "components_")
        vec, idf = vectors.to_state(self.vectorizer_)
        return {"params": self.get_params(), "vectorizer": vec}, {
            "topic_idf": idf,
            "components": self.components_,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> TextTopics:
        params = state["params"] | {"stop_words": tuple(state["params"].get("stop_words", ()))}
        self = cls(**params)
        self.vectorizer_ = vectors.from_state(state["vectorizer"], arrays["topic_idf"])
        components = np.asarray(arrays["components"], dtype=np.float32)
        if components.shape != (self.n_topics, len(arrays["topic_idf"])):
            raise ValueError(f"text topics: components of shape {components.shape} do not fit")
        self.components_ = components
        return self
