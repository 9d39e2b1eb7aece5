"""The text model: sentiment learned from answers in four languages, topics, persistence, cross-fitting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import f1_score, normalized_mutual_info_score, roc_auc_score

from training.synth.dynamics import nps_answer
from training.synth.text import LANGUAGES, dictionary, draw_writers, text_codes
from training.text.labels import answer_classes
from training.text.model import CrossFittedText, TextModel, fit_text_model, fold_of
from training.text.sentiment import TextSentiment

TEXTS = dictionary()


def survey_comments(n: int, seed: int) -> dict[str, np.ndarray]:
    """NPS comments of `n` customers: hidden satisfaction -> answer and words (noisy, apart)."""
    rng = np.random.default_rng(seed)
    writers = draw_writers(rng, n)
    sat = rng.normal(0.0, 1.0, n)
    trouble = rng.random(n) < 0.3
    codes = text_codes(rng, writers, np.arange(n), np.full(n, "complaint"), sat, trouble)
    answer = nps_answer(sat - 0.5 * trouble, rng.normal(0.0, 1.0, n))
    return {
        "text": np.array([TEXTS[c] for c in codes], dtype=object),
        "y": answer_classes(answer, "nps"),
        "sat": sat,
        "language": writers.language,
        "issue": writers.issue,
        "customer": np.char.add("C", np.arange(n).astype(str)),
    }


@pytest.fixture(scope="module")
def fitted() -> tuple[TextModel, CrossFittedText, dict[str, np.ndarray]]:
    train = survey_comments(3000, seed=1)
    model, crossed = fit_text_model(
        list(train["text"]), train["y"], list(train["customer"]), n_topics=16, folds=3
    )
    return model, crossed, survey_comments(1500, seed=2)


def test_sentiment_recovers_the_answers_class_in_every_language(fitted) -> None:
    model, _, test = fitted
    proba = model.sentiment.predict_proba(list(test["text"]))
    assert np.allclose(proba.sum(axis=1), 1.0)
    # the words and the answer are two noisy readings of the hidden satisfaction: compare the
    # text with what the hidden satisfaction itself tells about the answer
    assert f1_score(test["y"], proba.argmax(axis=1), average="macro") > 0.5
    ceiling = roc_auc_score(test["y"] == 0, -test["sat"])
    assert roc_auc_score(test["y"] == 0, proba[:, 0]) > 0.85 * ceiling
    scores = model.score(list(test["text"]))
    for j, lang in enumerate(LANGUAGES):
        rows = test["language"] == j
        rho = spearmanr(scores.polarity[rows], test["sat"][rows]).statistic
        assert rho > 0.6, (lang, rho)


def test_topics_find_the_problem_areas_without_labels(fitted) -> None:
    model, _, test = fitted
    topic = model.score(list(test["text"])).topic
    named = topic >= 0
    assert named.mean() > 0.5
    # topics split by language and by tone too, but still follow the problem areas (chance ~0.005)
    assert normalized_mutual_info_score(test["issue"][named], topic[named]) > 0.15
    terms = model.topic_terms(5)
    assert len(terms) == 16 and all(len(t) == 5 for t in terms)


def test_saved_model_scores_exactly_as_the_fitted_one(fitted, tmp_path: Path) -> None:
    model, _, test = fitted
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["text.json", "text.npz"]
    loaded = TextModel.load(tmp_path)
    texts = list(test["text"][:200])
    a, b = model.score(texts), loaded.score(texts)
    assert np.array_equal(a.topic, b.topic) and np.array_equal(a.negative, b.negative)
    assert np.allclose(a.polarity, b.polarity, atol=1e-6)
    assert loaded.digest == model.digest


def test_cross_fitted_scores_never_come_from_the_customers_own_label() -> None:
    """Random labels on texts unique to each customer: the final model memorises them, the
    cross-fitted scores (fold models that never saw the customer) cannot."""
    rng = np.random.default_rng(5)
    n = 600
    customers = [f"K{i}" for i in range(n)]
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    texts = ["".join(rng.choice(letters, 12)) for _ in range(n)]  # no two alike
    y = rng.integers(0, 3, n)
    strong = TextSentiment(C=1000.0, class_weight=None, min_df=1)
    model, crossed = fit_text_model(texts, y, customers, n_topics=2, folds=4, sentiment=strong)
    own = model.sentiment.predict(texts)
    oof = crossed.sentiment_proba(texts, customers).argmax(axis=1)
    assert (own == y).mean() > 0.95
    assert (oof == y).mean() < 0.45
    with pytest.raises(ValueError, match="customer id"):
        crossed.score(texts)
    held = np.arange(n) % 2 == 0  # customers the score models are tested on
    model, _ = fit_text_model(texts, y, customers, n_topics=2, folds=4, sentiment=strong,
                              held_out=held)  # fmt: skip
    own = model.sentiment.predict(texts)
    assert (own[~held] == y[~held]).mean() > 0.95 and (own[held] == y[held]).mean() < 0.45


def test_folds_are_stable_and_balanced() -> None:
    ids = [f"C{i:06d}" for i in range(5000)]
    folds = fold_of(ids, 5)
    assert np.array_equal(folds, fold_of(ids, 5))
    assert np.array_equal(fold_of(ids[100:200], 5), folds[100:200])
    assert np.bincount(folds, minlength=5).min() > 900


def test_answer_classes_follow_the_survey_scales() -> None:
    assert list(answer_classes(np.array([0, 6, 7, 8, 9, 10, np.nan]), "nps")) == [
        0,
        0,
        1,
        1,
        2,
        2,
        -1,
    ]
    assert list(answer_classes(np.array([1, 2, 3, 4, 5]), "csat")) == [0, 0, 1, 2, 2]
    with pytest.raises(ValueError, match="no answer scale"):
        answer_classes(np.array([1.0]), "ces")
