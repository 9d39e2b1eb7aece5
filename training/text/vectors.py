"""TF-IDF vectorizers that travel as data: parameters and vocabulary as JSON, idf as an array."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from training.text.clean import clean

WORD_PATTERN = r"(?u)\b\w\w+\b"


def char_vectorizer(max_features: int, min_df: int) -> TfidfVectorizer:
    """Character 2-5-grams inside word boundaries: robust to spelling, inflection and language."""
    return TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=(2, 5),
        preprocessor=clean,
        sublinear_tf=True,
        min_df=min_df,
        max_features=max_features,
        dtype=np.float32,
    )


def word_vectorizer(
    max_features: int,
    min_df: int,
    max_df: float = 1.0,
    ngrams: tuple[int, int] = (1, 2),
    stop_words: tuple[str, ...] = (),
) -> TfidfVectorizer:
    """Words (and word pairs): readable terms, for sentiment and for the topics."""
    return TfidfVectorizer(
        stop_words=list(stop_words) or None,
        analyzer="word",
        token_pattern=WORD_PATTERN,
        ngram_range=ngrams,
        preprocessor=clean,
        sublinear_tf=True,
        min_df=min_df,
        max_df=max_df,
        max_features=max_features,
        dtype=np.float32,
    )


def to_state(vec: TfidfVectorizer) -> tuple[dict[str, Any], np.ndarray]:
    """(JSON parameters and vocabulary, idf array) of a fitted vectorizer."""
    params = {
        "analyzer": vec.analyzer,
        "ngram_range": list(vec.ngram_range),
        "sublinear_tf": vec.sublinear_tf,
        "token_pattern": vec.token_pattern,
    }
    vocabulary = {term: int(j) for term, j in vec.vocabulary_.items()}
    return {"params": params, "vocabulary": vocabulary}, np.asarray(vec.idf_, dtype=np.float64)


def from_state(state: dict[str, Any], idf: np.ndarray) -> TfidfVectorizer:
    """A vectorizer that transforms exactly as the saved one did."""
    params = state["params"]
    vocabulary = {str(k): int(v) for k, v in state["vocabulary"].items()}
    if len(idf) != len(vocabulary) or sorted(vocabulary.values()) != list(range(len(idf))):
        raise ValueError("text vectorizer: vocabulary and idf do not match")
    vec = TfidfVectorizer(
        analyzer=params["analyzer"],
        ngram_range=tuple(params["ngram_range"]),
        sublinear_tf=bool(params["sublinear_tf"]),
        token_pattern=params["token_pattern"],
        preprocessor=clean,
        vocabulary=vocabulary,
        dtype=np.float32,
    )
    vec.idf_ = idf
    return vec
