"""The text score cache: features through it equal features without it, a warm run scores only new
texts, a changed text model never reads the old scores, a killed write leaves the previous table,
and a damaged table is a clear error."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests.training.features.test_text_features import TEXTS, T, connect
from training.errors import NextbestError
from training.features import text_cache
from training.features.definition import FeatureBuilder
from training.features.text_cache import MANIFEST, TextScoreCache
from training.synth.dynamics import nps_answer
from training.synth.text import dictionary, draw_writers, text_codes
from training.text.labels import answer_classes
from training.text.model import CrossFittedText, TextModel, TextScores, fit_text_model


class Counting(TextModel):
    """The real text model, counting the texts it is asked to score."""

    def __init__(self, model: TextModel) -> None:
        super().__init__(model.sentiment, model.topics)
        self.scored = 0

    def score(self, texts: Sequence[str], customer_ids: Sequence[str] | None = None) -> TextScores:
        self.scored += len(texts)
        return super().score(texts, customer_ids)


def _fit(seed: int) -> tuple[TextModel, CrossFittedText]:
    rng = np.random.default_rng(seed)
    n = 800
    sat = rng.normal(0.0, 1.0, n)
    codes = text_codes(rng, draw_writers(rng, n), np.arange(n), np.full(n, "complaint"), sat,
                       rng.random(n) < 0.3)  # fmt: skip
    y = answer_classes(nps_answer(sat, rng.normal(0.0, 1.0, n)), "nps")
    texts = [dictionary()[c] for c in codes]
    return fit_text_model(texts, y, [f"c{i}" for i in range(n)], n_topics=4, folds=2)


@pytest.fixture(scope="module")
def fitted() -> tuple[TextModel, CrossFittedText]:
    return _fit(3)


@pytest.fixture(scope="module")
def other() -> TextModel:
    return _fit(11)[0]


def _features(model: TextModel, con: duckdb.DuckDBPyConnection, cache: Path | None = None,
              as_of: object = T) -> pd.DataFrame:  # fmt: skip
    builder = FeatureBuilder().fit(con).with_text(model)
    kept = None if cache is None else TextScoreCache.open(cache, model)
    return builder.transform(con, as_of=as_of, text_cache=kept)  # type: ignore[arg-type]


def _with_new_texts(con: duckdb.DuckDBPyConnection, texts: list[str]) -> None:
    """Add chat events of customer b the day before T, one per text."""
    new = pd.DataFrame({"customer_id": "b", "ts": T - timedelta(days=1), "channel": "chat",
                        "event_type": "chat", "value": np.nan, "text": texts})  # fmt: skip
    con.register("_new", new)
    con.execute("CREATE OR REPLACE VIEW _old AS SELECT * FROM events")
    con.execute("CREATE TABLE _all AS SELECT * FROM _old UNION ALL SELECT * FROM _new")
    con.execute("CREATE OR REPLACE VIEW events AS SELECT * FROM _all")


def test_features_with_the_cache_equal_features_without(fitted, tmp_path: Path) -> None:
    model = Counting(fitted[0])
    plain = _features(model, connect())
    distinct = len({t for _, ts, t in TEXTS if ts < T})
    assert model.scored == distinct
    cold = _features(model, connect(), tmp_path)
    assert model.scored == 2 * distinct  # a cold table scores every text once
    warm = _features(model, connect(), tmp_path)
    assert model.scored == 2 * distinct  # a warm one scores none
    pd.testing.assert_frame_equal(cold, plain)
    pd.testing.assert_frame_equal(warm, plain)
    assert TextScoreCache.open(tmp_path, model).texts == distinct


def test_a_warm_run_scores_only_new_texts(fitted, tmp_path: Path) -> None:
    model = Counting(fitted[0])
    _features(model, connect(), tmp_path)
    before = model.scored
    con = connect()
    old = TEXTS[0][2]
    _with_new_texts(con, ["la connessione cade sempre", "la connessione cade sempre", old])
    warm = _features(model, con, tmp_path)
    assert model.scored - before == 1  # the one new distinct text
    con = connect()
    _with_new_texts(con, ["la connessione cade sempre", "la connessione cade sempre", old])
    pd.testing.assert_frame_equal(warm, _features(fitted[0], con))
    assert warm.set_index("customer_id").loc["b", "texts_7d"] == 3


def test_a_changed_text_model_never_reads_the_old_scores(fitted, other, tmp_path: Path) -> None:
    assert other.digest != fitted[0].digest
    _features(fitted[0], connect(), tmp_path)
    old = json.loads((tmp_path / MANIFEST).read_text())["segments"]
    counting = Counting(other)
    changed = _features(counting, connect(), tmp_path)
    assert counting.scored == len({t for _, ts, t in TEXTS if ts < T})
    pd.testing.assert_frame_equal(changed, _features(other, connect()))
    manifest = json.loads((tmp_path / MANIFEST).read_text())
    assert manifest["text_model"] == other.digest
    assert not any((tmp_path / s).exists() for s in old)  # the old model's scores are gone
    back = Counting(fitted[0])  # and the first model starts again from nothing
    pd.testing.assert_frame_equal(_features(back, connect(), tmp_path), _features(back, connect()))


def _killed_mid_write(folder: Path, model: TextModel) -> None:
    """Child: score the new texts, and die (SIGKILL) half-way through writing their segment."""
    real = pq.write_table

    def half_then_die(table, where, **kwargs):  # type: ignore[no-untyped-def]
        real(table, where, **kwargs)
        size = os.path.getsize(where)
        with open(where, "r+b") as f:
            f.truncate(size // 2)
        os.kill(os.getpid(), signal.SIGKILL)

    text_cache.pq.write_table = half_then_die  # type: ignore[attr-defined]
    con = connect()
    _with_new_texts(con, ["il pacco non è arrivato"])
    _features(model, con, folder)


def test_a_write_killed_midway_leaves_the_previous_table(fitted, tmp_path: Path) -> None:
    model = fitted[0]
    _features(model, connect(), tmp_path)
    manifest = (tmp_path / MANIFEST).read_bytes()
    child = mp.get_context("fork").Process(target=_killed_mid_write, args=(tmp_path, model))
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert (tmp_path / MANIFEST).read_bytes() == manifest  # the half segment was never listed
    assert any(p.name.startswith(".scores-") for p in tmp_path.iterdir())  # its leftover
    counting = Counting(model)
    con = connect()
    _with_new_texts(con, ["il pacco non è arrivato"])
    after = _features(counting, con, tmp_path)
    assert counting.scored == 1  # only the text the killed run did not keep
    con = connect()
    _with_new_texts(con, ["il pacco non è arrivato"])
    pd.testing.assert_frame_equal(after, _features(model, con))
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # leftovers removed


def test_a_damaged_table_is_a_clear_error(fitted, tmp_path: Path) -> None:
    model = fitted[0]
    _features(model, connect(), tmp_path)
    [segment] = json.loads((tmp_path / MANIFEST).read_text())["segments"]
    data = (tmp_path / segment).read_bytes()
    (tmp_path / segment).write_bytes(data[: len(data) // 2])
    with pytest.raises(
        NextbestError, match=rf"{tmp_path}.*segment {segment} is unreadable.*remove"
    ):
        TextScoreCache.open(tmp_path, model)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(NextbestError, match=rf"{tmp_path}: text score cache: {MANIFEST} is unread"):
        TextScoreCache.open(tmp_path, model)


def test_runs_that_keep_the_same_texts_together_list_each_once(fitted, tmp_path: Path) -> None:
    model = fitted[0]
    first, second = TextScoreCache.open(tmp_path, model), TextScoreCache.open(tmp_path, model)
    builder = FeatureBuilder().fit(connect()).with_text(model)
    builder.transform(connect(), as_of=T, text_cache=first)
    both = builder.transform(connect(), as_of=T, text_cache=second)  # opened before first wrote
    assert TextScoreCache.open(tmp_path, model).texts == len({t for _, ts, t in TEXTS if ts < T})
    pd.testing.assert_frame_equal(both, _features(model, connect()))


def test_many_segments_are_merged(fitted, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(text_cache, "MAX_SEGMENTS", 2)
    model = fitted[0]
    for k in range(4):
        con = connect()
        _with_new_texts(con, [f"consegna in ritardo {j}" for j in range(k + 1)])
        _features(model, con, tmp_path)
    cache = TextScoreCache.open(tmp_path, model)
    assert len(cache.segments) <= 2
    assert cache.texts == len({t for _, ts, t in TEXTS if ts < T}) + 4
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MANIFEST, *cache.segments])


def test_a_cross_fitted_model_keeps_no_scores(fitted, tmp_path: Path) -> None:
    with pytest.raises(NextbestError, match="cross-fitted"):
        TextScoreCache.open(tmp_path, fitted[1])
    builder = FeatureBuilder().fit(connect()).with_text(fitted[0])
    with pytest.raises(NextbestError, match="another text model"):
        builder.transform(connect(), as_of=T, text_cache=TextScoreCache.open(tmp_path, _fit(5)[0]))


def test_scores_of_given_texts_read_the_kept_ones_and_keep_the_new(fitted, tmp_path: Path) -> None:
    """What `materialize` stores beside each journey's texts: the kept scores, the model's for
    the texts the table lacks (scored once, then kept)."""
    model = Counting(fitted[0])
    _features(model, connect(), tmp_path)
    kept = [t for _, ts, t in TEXTS if ts < T][:3]
    texts = [*dict.fromkeys(kept), "la connessione cade sempre"]
    before = model.scored
    cache = TextScoreCache.open(tmp_path, model)
    got = cache.scores(texts, model)
    assert model.scored - before == 1  # only the new text
    expected = fitted[0].score(texts)
    np.testing.assert_array_equal(got.polarity, expected.polarity)
    np.testing.assert_array_equal(got.negative, expected.negative)
    np.testing.assert_array_equal(got.topic, expected.topic)
    again = TextScoreCache.open(tmp_path, model).scores(texts, model)
    assert model.scored - before == 1  # kept now
    np.testing.assert_array_equal(again.polarity, expected.polarity)
