"""Text signals (issue 20): the text model against same-run peers on real tweets, and what text adds
on the simulator. Prints one JSON line per figure.

Airline tweets (real, human-labelled): a stratified 70/30 split (seed 42); the text model
(`TextSentiment`: char + word TF-IDF, multinomial logistic regression), a lexicon peer (VADER, its
compound score with the usual +-0.05 cut-offs) and a word TF-IDF + logistic regression peer (same C
and class weights as the text model) on the same held-out 30%: macro-F1 over negative / neutral /
positive and ROC-AUC of negative vs rest. Then the topics (fitted on the training tweets) against
the human reasons of the held-out negatives: normalized mutual information and the contingency table.

Simulator (a small synthetic world with texts in it/de/fr/en): the satisfaction and churn models
with and without the text features on the same split (text scored out of fold, as `train` does),
and the out-of-fold text score of each customer against the hidden satisfaction, per language.

    .venv/bin/python bench/text_quality.py [--src ../shared/datasets/airline_tweets.csv] [--customers 4000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, normalized_mutual_info_score, roc_auc_score
from sklearn.model_selection import train_test_split

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SRC = REPO.parent / "shared" / "datasets" / "airline_tweets.csv"
CLASSES = {"negative": 0, "neutral": 1, "positive": 2}


def emit(**figure: object) -> None:
    print(json.dumps(figure), flush=True)


def airline(src: Path) -> None:
    from training.text.labels import answer_classes
    from training.text.sentiment import TextSentiment
    from training.text.topics import TextTopics

    raw = pd.read_csv(src, dtype="str", keep_default_na=False)
    y = raw["airline_sentiment"].map(CLASSES).to_numpy()
    texts = raw["text"].tolist()
    train, test = train_test_split(np.arange(len(raw)), test_size=0.3, stratify=y, random_state=42)
    tr, te = [texts[i] for i in train], [texts[i] for i in test]
    assert np.array_equal(answer_classes(y * 2.0 + 1.0, "csat"), y)  # the importer's reading

    start = time.perf_counter()
    ours = TextSentiment().fit(tr, y[train])
    p_ours = ours.predict_proba(te)
    fit_s = time.perf_counter() - start
    scores = {"text model (char+word TF-IDF, LR)": (p_ours.argmax(axis=1), p_ours[:, 0])}

    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    compound = np.array([vader.polarity_scores(t)["compound"] for t in te])
    vader_class = np.where(compound <= -0.05, 0, np.where(compound >= 0.05, 2, 1))
    scores["VADER (lexicon)"] = (vader_class, -compound)

    word = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    lr = LogisticRegression(C=ours.C, class_weight=ours.class_weight, max_iter=1000)
    lr.fit(word.fit_transform(tr), y[train])
    p_word = lr.predict_proba(word.transform(te))
    scores["word TF-IDF + LR"] = (p_word.argmax(axis=1), p_word[:, 0])

    for name, (pred, negativity) in scores.items():
        emit(
            figure="airline_sentiment",
            model=name,
            macro_f1=round(float(f1_score(y[test], pred, average="macro")), 4),
            roc_auc_negative=round(float(roc_auc_score(y[test] == 0, negativity)), 4),
            n_train=len(train),
            n_test=len(test),
        )

    reasons = raw["negativereason"].to_numpy()
    topics = TextTopics(n_topics=10).fit(tr)  # as `fit_text_model` fits them
    negative = test[y[test] == 0]
    topic = topics.assign([texts[i] for i in negative])
    table = pd.crosstab(pd.Series(reasons[negative], name="reason"), pd.Series(topic, name="topic"))
    emit(
        figure="airline_topics",
        nmi=round(float(normalized_mutual_info_score(reasons[negative], topic)), 4),
        n=len(negative),
        top_terms=[" ".join(t) for t in topics.top_terms(6)],
        contingency={r: {str(k): int(v) for k, v in row.items()} for r, row in table.iterrows()},
        fit_seconds=round(fit_s, 1),
    )


def simulator(customers: int) -> None:
    from training.config import load_config
    from training.data.contract import open_dataset
    from training.data.snapshots import build_snapshots, data_span, resolve_as_of, split_for
    from training.data.texts import fit_texts
    from training.evaluation import metrics
    from training.features.definition import FeatureBuilder
    from training.scores.base import fit_on
    from training.scores.churn import ChurnModel
    from training.scores.satisfaction import SatisfactionModel
    from training.synth.generate import synthesize
    from training.synth.world import WorldConfig

    config = load_config(None)
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "world"
        synthesize(customers, out, seed=5, cfg=replace(WorldConfig(), truth_reps=2))
        with open_dataset(out).connect() as con:
            builder = FeatureBuilder(config.features).fit(con)
            dates = resolve_as_of(config, data_span(con, config))
            fitted = fit_texts(con, config, dates)
            assert not isinstance(fitted, str), fitted
            builder.with_text(fitted[1])  # out of fold, as training does
            frame = build_snapshots(con, builder, config, dates)
            truth = pd.read_parquet(Path(work) / "world_truth" / "customers_truth.parquet")
            truth["as_of"] = pd.to_datetime(truth["as_of"])
            con.register("_truth", truth[["customer_id", "as_of"]])
            features = builder.transform(con, spine="_truth")
    names = builder.feature_names_
    plain = [n for n in names if not n.startswith(("text", "days_since_last_text",
                                                   "days_since_last_negative_text"))]  # fmt: skip
    for role, outcome in (("satisfaction", "satisfaction"), ("churn", "churn")):
        spec = config.outcomes[outcome]
        for label, cols in (("with text", names), ("without text", plain)):
            data = split_for(frame, outcome, cols, spec.horizon_days)
            model = SatisfactionModel(survey_type="nps") if role == "satisfaction" else ChurnModel()
            model = fit_on(model, data)
            pred = model.predict_score(data.X_test)
            if role == "satisfaction":
                emit(figure="sim_satisfaction", features=label, n_features=len(cols),
                     mae=round(metrics.mae(data.y_test, pred), 4),
                     spearman=round(metrics.spearman(data.y_test, pred), 4), n_test=len(pred))  # fmt: skip
            else:
                emit(figure="sim_churn", features=label,
                     auc=round(metrics.roc_auc(data.y_test, pred), 4), n_test=len(pred))  # fmt: skip
    merged = truth.merge(features, on=["customer_id", "as_of"])
    for window in ("90d", "365d"):
        column = f"text_score_mean_{window}"
        for lang, rows in merged.groupby("language"):
            seen = rows[rows[column].notna()]
            rho = spearmanr(seen[column], seen["satisfaction_latent"]).statistic
            emit(figure="sim_text_vs_hidden", language=lang, feature=column,
                 spearman=round(float(rho), 4), n=len(seen))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC)
    parser.add_argument("--customers", type=int, default=4000)
    parser.add_argument("--skip-simulator", action="store_true")
    args = parser.parse_args()
    if args.src.exists():
        airline(args.src)
    if not args.skip_simulator:
        simulator(args.customers)


if __name__ == "__main__":
    main()
