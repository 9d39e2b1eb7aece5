"""The online store: what `materialize` writes is exactly the bundle's model matrix of the active
customers, read back by id; it is replaced atomically and refused by a bundle of other features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from serving.online.store import (
    FORMAT,
    FeatureRow,
    OnlineStore,
    model_outputs,
    namespace_rows,
    write_store,
)
from tests.serving.conftest import World
from training.config import SCORE_COLUMNS
from training.errors import NextbestError

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("server")]


def test_materialized_rows_are_the_bundle_matrix(world: World) -> None:
    from serving.online.store import active_features
    from training.features.definition import to_matrix
    from training.registry.mlflow_models import load_bundle

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", world.tracking_uri)
        bundle = load_bundle(None)
    store = OnlineStore(world.store)
    features = active_features(bundle, world.data, store.info.as_of)
    matrix = to_matrix(bundle.prepare(features), bundle.builder.feature_names_)
    assert store.info.customers == len(features)
    assert store.info.feature_version == bundle.builder.version
    store.check_compatible(bundle.builder.version)
    outputs = model_outputs(bundle, matrix)
    width = len(SCORE_COLUMNS) + len(bundle.uplift) * len(bundle.config.catalog)
    assert outputs.shape == (len(features), width)
    for i in range(0, len(features), 97):
        row = store.get(features["customer_id"].iloc[i])
        assert isinstance(row, FeatureRow)
        np.testing.assert_array_equal(row.vector, matrix[i])
        np.testing.assert_array_equal(row.outputs, outputs[i])  # the models' own answers
    plan = store.get(features["customer_id"].iloc[0])
    assert plan is not None and isinstance(plan.namespace["plan"], str)
    assert store.get("not-a-customer") is None
    with pytest.raises(NextbestError, match="materialize"):
        store.check_compatible("another-version")


def test_a_store_is_replaced_whole(tmp_path) -> None:
    path = tmp_path / "store.sqlite"
    meta = {"format": FORMAT, "feature_version": "v1", "feature_names": ["a"], "as_of": "2026-01-01",
            "customers": 1, "model_version": "1", "created_at": "now"}  # fmt: skip
    out = np.zeros((1, 3))
    write_store(path, ["c1"], np.ones((1, 1), np.float32), [{}], meta, out)
    old = OnlineStore(path)
    with pytest.raises(ValueError):  # a failing write (lengths differ) leaves the old file
        write_store(
            path,
            ["c1", "c2"],
            np.zeros((1, 1), np.float32),
            [{}],
            meta | {"feature_version": "v2"},
            out,
        )
    assert OnlineStore(path).info.feature_version == "v1"
    write_store(
        path, ["c2"], np.zeros((1, 1), np.float32), [{}], meta | {"feature_version": "v2"}, out
    )
    assert OnlineStore(path).info.feature_version == "v2"
    assert old.get("c1") is not None  # an open reader keeps its complete file


def test_namespace_values_are_what_batch_rules_read() -> None:
    frame = pd.DataFrame(
        {"n": [1.5, np.nan], "plan": pd.Categorical(["basic", None]), "flag": [True, False]}
    )
    assert namespace_rows(frame, ["n", "plan", "flag"]) == [
        {"n": 1.5, "plan": "basic", "flag": 1.0},
        {"n": None, "plan": None, "flag": 0.0},
    ]
    assert namespace_rows(frame, []) == [{}, {}]


def test_a_missing_store_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(NextbestError, match="materialize"):
        OnlineStore(tmp_path / "nothing.sqlite")
