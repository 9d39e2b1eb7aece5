"""Live rows shared between workers: what one worker wrote, another decodes to the same row and
uplift; a damaged or foreign row is refused (None), never an error; an older row never replaces
a newer one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from serving.online.events import EventStore
from serving.online.live_rows import SharedRow, decode, encode, ensure_schema, get, prune, put
from training.features.one_customer import OneRow

P, K = 6, 3


def shared_row(seed: int = 0) -> SharedRow:
    rng = np.random.default_rng(seed)
    vector = rng.normal(size=P).astype(np.float32)
    vector[2] = np.nan
    row = OneRow(vector, {"plan": "pro", "region": None}, 1_700_000_000_000_000,
                 {1: 1_699_000_000_000_000}, (1_699_900_000_000_000, 1_700_100_000_000_000))  # fmt: skip
    uplift = {"churn": rng.normal(size=K), "revenue": rng.normal(size=K)}
    scores = {"churn_probability": float(rng.uniform()), "satisfaction": np.nan}
    return SharedRow(row, vector.copy(), uplift, scores)


def test_a_row_decodes_to_what_was_encoded() -> None:
    written = shared_row()
    read = decode(*encode(written), n_features=P, k=K)
    assert read is not None and read.uplift is not None and read.uplift_row is not None
    np.testing.assert_array_equal(read.row.vector, written.row.vector)
    assert (read.row.categories, read.row.now) == (written.row.categories, written.row.now)
    assert (read.row.since, read.row.valid) == (written.row.since, written.row.valid)
    np.testing.assert_array_equal(read.uplift_row, written.uplift_row)
    assert list(read.uplift) == ["churn", "revenue"]
    for name, values in written.uplift.items():
        np.testing.assert_array_equal(read.uplift[name], values)
    assert read.scores is not None and written.scores is not None
    assert read.scores["churn_probability"] == written.scores["churn_probability"]  # bit for bit
    assert list(read.scores) == list(written.scores) and np.isnan(read.scores["satisfaction"])
    later = written.row.now + 86_400_000_000  # a day later: the days-since feature moves
    moved, expected = read.row.at(later), written.row.at(later)
    assert moved is not None and expected is not None
    np.testing.assert_array_equal(moved.vector, expected.vector)
    assert moved.vector[1] != written.row.vector[1]


def test_a_row_without_uplift_keeps_none() -> None:
    written = SharedRow(shared_row().row, None, None)
    read = decode(*encode(written), n_features=P, k=K)
    assert read is not None and read.uplift is None and read.uplift_row is None


def test_a_row_written_without_scores_keeps_its_uplift_and_no_scores() -> None:
    """A row an earlier version wrote (no scores in its state) still gives its uplift."""
    state, vector, uplift_row, uplift = encode(shared_row())
    older = json.dumps({k: v for k, v in json.loads(state).items() if k != "scores"})
    read = decode(older, vector, uplift_row, uplift, n_features=P, k=K)
    assert read is not None and read.uplift is not None and read.scores is None


@pytest.mark.parametrize(
    "damage",
    [
        "state not json",
        "vector too short",
        "uplift of other actions",
        "since out of range",
        "scores not numbers",
    ],
)
def test_a_damaged_or_foreign_row_is_refused(damage: str) -> None:
    state, vector, uplift_row, uplift = encode(shared_row())
    if damage == "state not json":
        state = state[:-3]
    elif damage == "vector too short":
        vector = vector[:-4]
    elif damage == "uplift of other actions":
        uplift = (uplift or b"") + np.zeros(2).tobytes()
    elif damage == "scores not numbers":
        state = state.replace('"churn_probability": ', '"churn_probability": "x", "y": ')
    else:
        state = state.replace("[[1, ", "[[99, ")
    assert decode(state, vector, uplift_row, uplift, n_features=P, k=K) is None


def test_only_the_same_sequence_and_runtime_is_read_and_older_never_wins(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.sqlite")
    ensure_schema(store)
    newer, older = shared_row(1), shared_row(2)
    put(store, "c1", 7, "bundle-a|1:2", newer)
    put(store, "c1", 5, "bundle-a|1:2", older)  # a slower worker, an earlier event: ignored
    found = get(store, "c1", 7, "bundle-a|1:2", P, K)
    assert found is not None
    np.testing.assert_array_equal(found.row.vector, newer.row.vector)
    assert get(store, "c1", 5, "bundle-a|1:2", P, K) is None  # the customer's event 7 came since
    assert get(store, "c1", 7, "bundle-b|1:2", P, K) is None  # another bundle's row
    assert get(store, "c2", 7, "bundle-a|1:2", P, K) is None
    put(store, "c1", 9, "bundle-a|1:2", older)
    assert get(store, "c1", 9, "bundle-a|1:2", P, K) is not None
    put(store, "c2", 3, "bundle-b|1:2", newer)
    assert prune(store, "bundle-b|1:2") == 1  # a worker loaded bundle b: a's rows go
    assert get(store, "c1", 9, "bundle-a|1:2", P, K) is None
    assert get(store, "c2", 3, "bundle-b|1:2", P, K) is not None
    store.close()
