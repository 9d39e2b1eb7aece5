"""Text features through the one feature definition: known answers from the real text model,
no leakage, missing (never an error) without text, and the text model in the saved state."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import duckdb
import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pytest

from training.errors import NextbestError
from training.features.definition import FeatureBuilder, feature_descriptions, to_matrix
from training.features.one_customer import OneCustomer
from training.synth.dynamics import nps_answer
from training.synth.text import dictionary, draw_writers, text_codes
from training.text.labels import answer_classes
from training.text.model import CrossFittedText, TextModel, fit_text_model

T = datetime(2024, 3, 1)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
TOPICS = 6


@pytest.fixture(scope="module")
def fitted() -> tuple[TextModel, CrossFittedText]:
    rng = np.random.default_rng(3)
    n = 1500
    sat = rng.normal(0.0, 1.0, n)
    codes = text_codes(rng, draw_writers(rng, n), np.arange(n), np.full(n, "complaint"), sat,
                       rng.random(n) < 0.3)  # fmt: skip
    texts = [dictionary()[c] for c in codes]
    y = answer_classes(nps_answer(sat, rng.normal(0.0, 1.0, n)), "nps")
    return fit_text_model(texts, y, [f"c{i}" for i in range(n)], n_topics=TOPICS, folds=2)


@pytest.fixture(scope="module")
def model(fitted: tuple[TextModel, CrossFittedText]) -> TextModel:
    return fitted[0]


TEXTS = [
    ("a", T - 2 * DAY, "servizio pessimo, sono furioso, la bolletta è sbagliata"),
    ("a", T - 20 * DAY, "excellent service, thank you so much"),
    ("a", T - 60 * DAY, "ich bin enttäuscht, netz ausgefallen"),
    ("a", T - 200 * DAY, "tout va bien, merci"),
    ("a", T, "une honte, je vais résilier"),  # at T: excluded
    ("a", T + DAY, "never again, totally disappointed"),  # future: excluded
]


def connect(with_text: bool = True) -> duckdb.DuckDBPyConnection:
    """Customer a wrote texts (and made a visit); b made only a visit; c did nothing."""
    rows = [(c, ts, "chat", "chat", None, text) for c, ts, text in TEXTS]
    rows += [("a", T - 5 * DAY, "web", "visit", None, None),
             ("b", T - 5 * DAY, "web", "visit", None, None)]  # fmt: skip
    events = pd.DataFrame(
        rows, columns=["customer_id", "ts", "channel", "event_type", "value", "text"]
    )
    events["value"] = events["value"].astype("float64")
    con = duckdb.connect()
    con.register("_c", pd.DataFrame({"customer_id": ["a", "b", "c"]}))
    con.execute("CREATE VIEW customers AS SELECT * FROM _c")
    con.register("_e", events if with_text else events.drop(columns="text"))
    text = ", CAST(text AS VARCHAR) AS text" if with_text else ""
    con.execute(
        "CREATE VIEW events AS SELECT customer_id, CAST(ts AS TIMESTAMP) AS ts, channel, "
        f"event_type, CAST(value AS DOUBLE) AS value{text} FROM _e"
    )
    return con


def test_text_features_from_the_model_scores(model: TextModel) -> None:
    con = connect()
    builder = FeatureBuilder().fit(con).with_text(model)
    frame = builder.transform(con, as_of=T).set_index("customer_id")
    seen = [t for _, ts, t in TEXTS if ts < T]  # newest first
    scores = model.score(seen)
    a = frame.loc["a"]
    assert a["texts_7d"] == 1 and a["texts_30d"] == 2 and a["texts_90d"] == 3
    assert a["texts_365d"] == 4
    assert a["text_score_last"] == pytest.approx(scores.polarity[0], abs=1e-6)
    assert a["text_score_mean_90d"] == pytest.approx(scores.polarity[:3].mean(), abs=1e-6)
    assert a["text_negative_share_365d"] == pytest.approx(scores.negative.mean())
    assert a["days_since_last_text"] == pytest.approx(2.0)
    assert scores.negative[0] and a["days_since_last_negative_text"] == pytest.approx(2.0)
    assert scores.polarity[0] < 0 < scores.polarity[1]  # the model reads tone in any language
    counts = [a[f"text_topic_{k}_count_365d"] for k in range(TOPICS)]
    expected = np.bincount(scores.topic[scores.topic >= 0], minlength=TOPICS)
    assert counts == list(expected)
    for customer in ("b", "c"):  # no text: counts 0, the rest missing
        r = frame.loc[customer]
        assert r["texts_365d"] == 0 and r["text_topic_0_count_30d"] == 0
        assert np.isnan(r["text_score_last"]) and np.isnan(r["text_score_mean_365d"])
        assert np.isnan(r["days_since_last_negative_text"])


def test_cross_fitted_scores_follow_the_writer(fitted: tuple[TextModel, CrossFittedText]) -> None:
    con = connect()
    crossed = fitted[1]
    builder = FeatureBuilder().fit(con).with_text(crossed)
    a = builder.transform(con, as_of=T).set_index("customer_id").loc["a"]
    seen = [t for _, ts, t in TEXTS if ts < T]
    expected = crossed.score(seen, ["a"] * len(seen)).polarity
    assert a["text_score_last"] == pytest.approx(expected[0], abs=1e-6)
    assert a["text_score_mean_365d"] == pytest.approx(expected.mean(), abs=1e-6)


def test_events_without_a_text_column_give_missing_text_features(model: TextModel) -> None:
    builder = FeatureBuilder().fit(connect()).with_text(model)
    frame = builder.transform(connect(with_text=False), as_of=T)
    assert list(frame.columns[2:]) == builder.feature_names_
    assert (frame["texts_365d"] == 0).all() and frame["text_score_mean_365d"].isna().all()


def test_later_texts_change_nothing(model: TextModel) -> None:
    con = connect()
    builder = FeatureBuilder().fit(con).with_text(model)
    before = builder.transform(con, as_of=T)
    con.execute("CREATE TABLE _more AS SELECT * FROM events")
    con.execute("INSERT INTO _more VALUES ('a', TIMESTAMP '2024-03-01', 'chat', 'chat', NULL, "
                "'servizio eccellente, grazie mille')")  # fmt: skip
    con.execute("CREATE OR REPLACE VIEW events AS SELECT * FROM _more")
    pd.testing.assert_frame_equal(before, builder.transform(con, as_of=T))


def test_without_a_text_model_there_are_no_text_features_and_the_version_is_unchanged(
    model: TextModel,
) -> None:
    con = connect()
    plain = FeatureBuilder().fit(con)
    version, names = plain.version, list(plain.feature_names_)
    assert not [n for n in names if "text" in n]
    assert "text" not in plain.to_dict()
    with_text = FeatureBuilder().fit(con).with_text(model)
    assert with_text.version != version
    assert with_text.with_text(None).version == version and with_text.feature_names_ == names


def test_state_with_a_text_model_round_trips_and_refuses_another(
    model: TextModel, tmp_path
) -> None:
    con = connect()
    builder = FeatureBuilder().fit(con).with_text(model)
    state = json.loads(json.dumps(builder.to_dict()))
    assert state["text"]["topics"] == TOPICS and len(state["text"]["topic_terms"]) == TOPICS
    model.save(tmp_path)
    again = FeatureBuilder.from_dict(state, text_model=TextModel.load(tmp_path))
    assert again.version == builder.version
    pd.testing.assert_frame_equal(again.transform(con, as_of=T), builder.transform(con, as_of=T))
    with pytest.raises(NextbestError, match="needs the text model"):
        FeatureBuilder.from_dict(state)
    plain = FeatureBuilder().fit(con).to_dict()
    with pytest.raises(NextbestError, match="has no text model"):
        FeatureBuilder.from_dict(plain, text_model=model)


def test_text_features_read_like_sentences() -> None:
    text = feature_descriptions(
        [
            "texts_30d",
            "text_score_mean_90d",
            "text_negative_share_30d",
            "text_topic_2_count_30d",
            "days_since_last_negative_text",
            "text_score_last",
        ],  # fmt: skip
        topic_terms=[["a"], ["b"], ["bill", "invoice", "refund"]],
    )
    assert text["texts_30d"] == "texts written in the last 30 days"
    assert text["text_topic_2_count_30d"] == "texts about bill, invoice, refund in the last 30 days"
    assert text["text_negative_share_30d"] == "share of negative texts in the last 30 days"
    assert text["days_since_last_negative_text"] == "days since the last negative text"


def texts_world(seed: int) -> duckdb.DuckDBPyConnection:
    """40 customers writing texts from the synthetic dictionary around T: repeated texts, texts
    at equal times (the last tone breaks ties), blank and missing texts, and events without."""
    rng = np.random.default_rng(seed)
    words = dictionary()
    rows = []
    for k in range(40):
        for _ in range(int(rng.integers(0, 12))):
            ts = T - timedelta(hours=int(rng.integers(-200, 9000)))
            text = str(words[int(rng.integers(len(words)))])
            kind = rng.random()
            text = "   " if kind < 0.05 else None if kind < 0.1 else text
            rows.append((f"c{k}", ts, "chat", "chat", None, text))
            if rng.random() < 0.2:  # the same moment, another text
                rows.append((f"c{k}", ts, "chat", "chat", None, str(words[int(rng.integers(50))])))
    events = pd.DataFrame(
        rows, columns=["customer_id", "ts", "channel", "event_type", "value", "text"]
    )
    events["value"] = events["value"].astype("float64")
    con = duckdb.connect()
    con.register("_c", pd.DataFrame({"customer_id": [f"c{k}" for k in range(40)]}))
    con.execute("CREATE VIEW customers AS SELECT * FROM _c")
    con.register("_e", events)
    con.execute(
        "CREATE VIEW events AS SELECT customer_id, CAST(ts AS TIMESTAMP) AS ts, channel, "
        "event_type, CAST(value AS DOUBLE) AS value, CAST(text AS VARCHAR) AS text FROM _e"
    )
    return con


@pytest.mark.parametrize("seed", [1, 2])
def test_the_one_customer_path_computes_text_features_as_the_reference(
    model: TextModel, seed: int
) -> None:
    """Text features of one customer (the service's live path) equal the DuckDB reference's,
    bit for bit, at as-of times that slide the windows past texts."""
    con = texts_world(seed)
    builder = FeatureBuilder().fit(con).with_text(model)
    one = OneCustomer(builder)
    tables = {t: con.sql(f"SELECT * FROM {t}").to_arrow_table() for t in ("customers", "events")}  # fmt: skip
    text_columns = [j for j, n in enumerate(builder.feature_names_) if "text" in n]
    assert len(text_columns) > 20
    moves = 0
    for as_of in (T, T + 3 * DAY + timedelta(hours=5), T - 40 * DAY):
        reference = builder.transform(con, as_of=as_of)
        expected = to_matrix(reference, builder.feature_names_)
        for k, customer in enumerate(reference["customer_id"]):
            customers = tables["customers"].filter(
                pc.equal(tables["customers"]["customer_id"], customer)
            )
            assert one.unsupported(customers, tables["events"], None) is None
            got = one.row(customers, tables["events"], None, as_of)
            np.testing.assert_array_equal(got.vector, expected[k], err_msg=f"{customer} {as_of}")
            # the row of an hour before, moved to this time when nothing else changed since
            moved = one.row(customers, tables["events"], None, as_of - HOUR).at(got.now)
            if moved is not None:
                np.testing.assert_array_equal(moved.vector, got.vector)
                moves += 1
    assert np.nanmax(expected[:, text_columns]) > 0  # texts were counted
    assert moves > 10


def test_the_one_customer_path_leaves_cross_fitted_text_to_the_reference(fitted) -> None:
    """A cross-fitted text model (training's: scores depend on the writer's fold) is refused;
    the final model and no model at all are computed on the one-customer path."""
    final, crossed = fitted
    con = connect()
    builder = FeatureBuilder().fit(con)
    tables = {t: con.sql(f"SELECT * FROM {t}").to_arrow_table() for t in ("customers", "events")}  # fmt: skip
    first = tables["customers"].slice(0, 1)
    reason = OneCustomer(builder.with_text(crossed)).unsupported(first, tables["events"], None)
    assert reason is not None and "cross-fitted" in reason
    for text_model in (final, None):
        one = OneCustomer(builder.with_text(text_model))
        assert one.unsupported(first, tables["events"], None) is None
