"""Sentiment learned from the customers' own answers: character and word TF-IDF with a multinomial
logistic regression over negative / neutral / positive. No downloaded weights and no language list:
it learns whatever languages the answers are written in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from training.text import vectors
from training.text.labels import CLASSES


class TextSentiment(ClassifierMixin, BaseEstimator):
    """fit(texts, classes) with classes 0 negative, 1 neutral, 2 positive; predict_proba gives
    the three probabilities (a class absent in training gets 0), `polarity` P(pos) - P(neg)."""

    def __init__(
        self,
        max_char_features: int = 150_000,
        max_word_features: int = 50_000,
        min_df: int = 2,
        C: float = 4.0,
        class_weight: str | None = "balanced",
        max_iter: int = 1000,
    ) -> None:
        self.max_char_features = max_char_features
        self.max_word_features = max_word_features
        self.min_df = min_df
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter

    def fit(self, texts: Sequence[str], y: np.ndarray) -> TextSentiment:
        y = np.asarray(y, dtype=np.int64)
        if len(texts) != len(y):
            raise ValueError(f"{len(texts)} texts but {len(y)} labels")
        if not set(np.unique(y)) <= {0, 1, 2} or len(np.unique(y)) < 2:
            raise ValueError(
                "labels must be classes 0/1/2 (negative/neutral/positive), two at least"
            )
        min_df = self.min_df if len(texts) >= 20 * self.min_df else 1
        self.char_ = vectors.char_vectorizer(self.max_char_features, min_df)
        self.word_ = vectors.word_vectorizer(self.max_word_features, min_df)
        X = sp.hstack([self.char_.fit_transform(texts), self.word_.fit_transform(texts)])
        return self._fit_matrix(X.tocsr(), y)

    def twin(self, X: sp.csr_matrix, y: np.ndarray) -> TextSentiment:
        """A model with these vocabularies (unsupervised: no label in them) whose classifier is
        fitted on rows `X` of `matrix` alone: cross-fitting vectorises the texts once."""
        check_is_fitted(self, "coef_")
        twin = TextSentiment(**self.get_params())
        twin.char_, twin.word_ = self.char_, self.word_
        return twin._fit_matrix(X, np.asarray(y, dtype=np.int64))

    def _fit_matrix(self, X: sp.csr_matrix, y: np.ndarray) -> TextSentiment:
        if len(np.unique(y)) < 2:
            raise ValueError("text sentiment: the labels hold a single class")
        lr = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter)
        lr.fit(X, y)
        self.classes_ = np.arange(len(CLASSES))
        self.coef_, self.intercept_ = _three_classes(lr)
        return self

    def matrix(self, texts: Sequence[str]) -> sp.csr_matrix:
        """The TF-IDF features (characters, then words) of some texts."""
        return sp.hstack([self.char_.transform(texts), self.word_.transform(texts)], format="csr")

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        check_is_fitted(self, "coef_")
        return np.asarray(self.matrix(texts) @ self.coef_.T) + self.intercept_

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        z = self.decision_function(texts)
        z = z - z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return p / p.sum(axis=1, keepdims=True)

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.predict_proba(texts).argmax(axis=1))

    def polarity(self, texts: Sequence[str]) -> np.ndarray:
        """P(positive) - P(negative), in [-1, 1]."""
        p = self.predict_proba(texts)
        return p[:, 2] - p[:, 0]

    def polar_words(self, share: float) -> tuple[str, ...]:
        """The `share` of single words whose weights separate the classes most (tone words)."""
        check_is_fitted(self, "coef_")
        offset = len(self.char_.vocabulary_)
        words = [(t, j) for t, j in self.word_.vocabulary_.items() if " " not in t]
        spread = np.array([np.ptp(self.coef_[:, offset + j]) for _, j in words])
        keep = int(round(share * len(words)))
        return tuple(sorted(words[k][0] for k in np.argsort(-spread, kind="stable")[:keep]))

    # -- persistence (JSON + arrays, never pickle) ---------------------------------------------
    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        check_is_fitted(self, "coef_")
        char, char_idf = vectors.to_state(self.char_)
        word, word_idf = vectors.to_state(self.word_)
        arrays = {"char_idf": char_idf, "word_idf": word_idf,
                  "coef": self.coef_, "intercept": self.intercept_}  # fmt: skip
        return {"params": self.get_params(), "char": char, "word": word}, arrays

    @classmethod
    def from_state(cls, state: dict[str, Any], arrays: dict[str, np.ndarray]) -> TextSentiment:
        self = cls(**state["params"])
        self.char_ = vectors.from_state(state["char"], arrays["char_idf"])
        self.word_ = vectors.from_state(state["word"], arrays["word_idf"])
        width = len(arrays["char_idf"]) + len(arrays["word_idf"])
        coef = np.asarray(arrays["coef"], dtype=np.float32)
        if coef.shape != (len(CLASSES), width) or arrays["intercept"].shape != (len(CLASSES),):
            raise ValueError(
                f"text sentiment: coefficients of shape {coef.shape}, not (3, {width})"
            )
        self.classes_ = np.arange(len(CLASSES))
        self.coef_, self.intercept_ = coef, np.asarray(arrays["intercept"], dtype=np.float64)
        return self


def _three_classes(lr: LogisticRegression) -> tuple[np.ndarray, np.ndarray]:
    """(3, p) coefficients and 3 intercepts as softmax logits, whatever classes were seen: an
    unseen class gets logit -inf-like (never predicted), a binary fit its two logits +-z/2."""
    coef = np.zeros((len(CLASSES), lr.coef_.shape[1]), dtype=np.float32)
    intercept = np.full(len(CLASSES), -1e9)
    seen = [int(c) for c in lr.classes_]
    if len(seen) == 2:
        pair = ((-0.5 * lr.coef_[0], -0.5 * lr.intercept_[0]),
                (0.5 * lr.coef_[0], 0.5 * lr.intercept_[0]))  # fmt: skip
        for c, (w, b) in zip(seen, pair, strict=True):
            coef[c], intercept[c] = w, b
        return coef, intercept
    for row, c in enumerate(seen):
        coef[c], intercept[c] = lr.coef_[row], lr.intercept_[row]
    return coef, intercept
