"""The Dask engine's parts: the bundle shipped as bytes and loaded once per worker by a plugin, and
map_partitions scoring on a real 2-worker LocalCluster equal to in-process scoring."""

from __future__ import annotations

from pathlib import Path

import dask.dataframe as dd
import pandas as pd
import pytest

from serving.batch.chunks import empty_candidates, score_chunk
from serving.batch.dask_engine import BundleFiles, BundlePlugin, loaded_bundles, score_partition
from serving.batch.population import chunk_features, plan_population
from training.data.contract import open_dataset
from training.registry.bundle import Bundle
from training.scores.distributed import dask_client

AS_OF = pd.Timestamp("2026-11-02").date()


@pytest.fixture(scope="module")
def features(small_world: Path, uplift_bundle: Bundle) -> pd.DataFrame:
    with open_dataset(small_world).connect() as con:
        population = plan_population(con, uplift_bundle.config, AS_OF, 800)
        return chunk_features(con, uplift_bundle.builder, population.chunks[0])


@pytest.mark.slow
def test_bundle_files_round_trip_and_name_the_bundle(
    uplift_bundle: Bundle, features: pd.DataFrame
) -> None:
    files = BundleFiles.of(uplift_bundle)
    assert files.digest == BundleFiles.of(uplift_bundle).digest  # same bundle, same name
    assert not any(name.endswith((".pkl", ".pickle")) for name in files.files)
    expected = score_chunk(uplift_bundle, features)
    pd.testing.assert_frame_equal(score_chunk(files.load(), features), expected)


@pytest.mark.slow
def test_plugin_loads_once_per_worker_and_map_partitions_scores_the_same(
    uplift_bundle: Bundle, features: pd.DataFrame, tmp_path: Path
) -> None:
    files = BundleFiles.of(uplift_bundle)
    half = len(features) // 2
    for i, part in enumerate((features.iloc[:half], features.iloc[half:])):
        part.to_parquet(tmp_path / f"part-{i}.parquet", index=False)
    with dask_client(None, workers=2) as client:
        client.register_plugin(BundlePlugin(files))
        assert list(client.run(loaded_bundles).values()) == [[files.digest]] * 2
        parts = dd.read_parquet(str(tmp_path / "part-*.parquet"), split_row_groups=False)
        scored = parts.map_partitions(
            score_partition, files.digest, meta=empty_candidates(uplift_bundle)
        )
        result = scored.compute().reset_index(drop=True)
    pd.testing.assert_frame_equal(result, score_chunk(uplift_bundle, features))
