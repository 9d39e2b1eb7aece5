"""Batch features through the text score cache: chunk by chunk, equal to features without it, each
distinct text scored once over all chunks and none on the next run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from serving.batch.population import iter_features, plan_population
from tests.training.features.test_text_cache import Counting, _fit
from tests.training.features.test_text_features import TEXTS, T, connect
from training.config import load_config
from training.features.definition import FeatureBuilder
from training.features.text_cache import TextScoreCache


def _chunks(model: Counting, cache: TextScoreCache | None) -> pd.DataFrame:
    con = connect()
    con.execute(
        "CREATE VIEW exposures AS SELECT 'a' AS customer_id, TIMESTAMP '2024-01-01' AS ts, "
        "'control' AS action_id WHERE false"
    )
    builder = FeatureBuilder().fit(con).with_text(model)
    population = plan_population(con, load_config(), T.date(), chunk_customers=1)
    assert len(population.chunks) == 3
    frames = [f for _, f in iter_features(con, builder, population, text_cache=cache)]
    return pd.concat(frames, ignore_index=True)


def test_batch_chunks_through_the_cache_equal_chunks_without(tmp_path: Path) -> None:
    model = Counting(_fit(3)[0])
    plain = _chunks(model, None)
    distinct = len({t for _, ts, t in TEXTS if ts < T})
    assert model.scored == distinct
    cold = _chunks(model, TextScoreCache.open(tmp_path, model))
    warm = _chunks(model, TextScoreCache.open(tmp_path, model))
    assert model.scored == 2 * distinct  # the cold run once, the warm one none
    pd.testing.assert_frame_equal(cold, plain)
    pd.testing.assert_frame_equal(warm, plain)
