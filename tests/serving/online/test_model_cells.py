"""The uplift and scores of a live customer are reused only while they are exact: `ModelCells`
reads every split of the uplift and score models' trees, rows it calls alike get the same uplift
and scores bit for bit, and the memo of a live row gives what the models compute as the clock
moves its days-since features."""

from __future__ import annotations

import copy
import math
from bisect import bisect_left
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from serving.online.decision import Decider
from serving.online.fast_predict import accelerate
from serving.online.history import History
from serving.online.live_features import LiveFeatures, events_table
from serving.online.model_cells import ModelCells, OutputsMemo
from serving.online.store import FeatureRow
from tests.serving.online.test_live_features import NOW, ingested_for, journeys  # noqa: F401
from training.config import CONTROL, SCORE_NAMES
from training.features.one_customer import OneRow
from training.registry.bundle import Bundle
from training.uplift.learners import LinearTLearner
from training.uplift.selection import SelectedUplift, base_learners

pytestmark = pytest.mark.slow
STEPS = [timedelta(seconds=s) for s in (1, 30, 600, 3600 * 5, 86400 * 3, 86400 * 20)]


def test_every_split_threshold_is_read(uplift_bundle: Bundle) -> None:
    """The thresholds per outcome and feature are those of LightGBM's own tree tables."""
    cells = ModelCells(uplift_bundle)
    p = len(uplift_bundle.builder.feature_names_)
    for outcome, model in uplift_bundle.uplift.items():
        assert isinstance(model, SelectedUplift)
        assert set(cells.cuts[outcome]) == set(model.learners_)  # one part per learner
        for name, learner in model.learners_.items():
            expected: list[set[float] | None] = [set() for _ in range(p)]
            for booster in learner.models_.values():
                _expected_splits(booster, expected, p)
            found = [None if c is None else set(c.tolist()) for c in cells.cuts[outcome][name]]
            assert sum(len(c) for c in expected if c is not None) > 50, (outcome, name)
            assert found == expected, (outcome, name)


def test_every_score_models_split_threshold_is_read(uplift_bundle: Bundle) -> None:
    """The thresholds per score column and feature are those of its booster's tree table; a
    score model that is not a LightGBM score model counts every feature as read."""
    cells = ModelCells(uplift_bundle)
    p = len(uplift_bundle.builder.feature_names_)
    assert set(cells.score_cuts) == {SCORE_NAMES[role] for role in uplift_bundle.models}
    for role, model in uplift_bundle.models.items():
        expected: list[set[float] | None] = [set() for _ in range(p)]
        _expected_splits(model.booster_, expected, p)
        found = [
            None if c is None else set(c.tolist()) for c in cells.score_cuts[SCORE_NAMES[role]]
        ]
        assert sum(len(c) for c in expected if c is not None) > 20, role
        assert found == expected, role
    odd = copy.copy(uplift_bundle)
    odd.models = {"churn": _Constant()} | {r: m for r, m in odd.models.items() if r != "churn"}
    assert ModelCells(odd).score_cuts[SCORE_NAMES["churn"]] == [None] * p


class _Constant:
    """A score model that is not a LightGBM one (its output may read any feature)."""

    def predict_score(self, X: np.ndarray) -> np.ndarray:
        return np.full(len(X), 0.5)


def _expected_splits(booster: Any, expected: list[set[float] | None], p: int) -> None:
    table = booster.trees_to_dataframe().dropna(subset=["split_feature"])
    names = booster.feature_name()
    columns = ["split_feature", "threshold", "decision_type", "missing_type"]
    for name, threshold, kind, missing in table[columns].itertuples(index=False):
        j = names.index(name)
        if j >= p:  # the S-learner's arm
            continue
        cuts = expected[j]
        if kind == "==" or missing == "Zero":  # categorical: any change counts
            expected[j] = None
        elif cuts is not None:
            cuts.add(float(threshold))


def test_rows_in_the_same_cells_get_the_same_uplift(
    uplift_bundle: Bundle,
    journeys: dict[str, History],  # noqa: F811
) -> None:
    """Rows of live customers moved by the clock: where the cells say alike, the uplift is equal
    bit for bit; the clock does move features across thresholds (the check is not vacuous)."""
    alike, crossed = _alike_and_crossed(
        uplift_bundle,
        journeys,
        lambda bundle, cells, X: bundle.uplift_matrix(X),
        lambda cells, X0, X1: {o for o in cells.cuts if not cells.same(X0, X1, o)},
    )
    assert alike >= 20 and crossed >= 20


def test_rows_in_the_same_score_cells_get_the_same_scores(
    uplift_bundle: Bundle,
    journeys: dict[str, History],  # noqa: F811
) -> None:
    """Rows of live customers moved by the clock: where the cells say a score model's trees are
    walked alike, its score is equal bit for bit; the clock does move rows across its thresholds."""
    alike, crossed = _alike_and_crossed(
        uplift_bundle,
        journeys,
        lambda bundle, cells, X: {
            n: v for n, v in bundle.score_matrix(X).items() if n in cells.score_cuts
        },
        lambda cells, X0, X1: set(cells.changes(X0, X1, [])[1]),
    )
    assert alike >= 20 and crossed >= 10


def test_a_live_rows_memo_gives_what_the_models_compute(
    uplift_bundle: Bundle,
    journeys: dict[str, History],  # noqa: F811
) -> None:
    """`Decider.model_outputs` of kept rows moved by the clock (uplift from the memo while the
    cells hold) equals the models run on the same rows without a memo."""
    bundle = accelerate(copy.deepcopy(uplift_bundle))
    live, decider = LiveFeatures(bundle), Decider(bundle)
    reused = scores_reused = 0
    for k, customer in enumerate(list(journeys)[:10]):
        events = ingested_for(customer, k)
        live.row(journeys[customer], events, NOW, (customer, 7))
        for step in STEPS[:4]:
            row = live.kept(customer, 7, NOW + step)
            if row is None:
                row = live.row(journeys[customer], events, NOW + step, (customer, 7))
            assert row.memo is not None
            calls, scored = _count_uplift(bundle), _count_scores(bundle)
            scores, uplift = decider.model_outputs(row)
            reused += calls.n == 0
            scores_reused += scored.n == 0
            bundle.uplift_matrix = calls.wrapped  # type: ignore[method-assign]
            bundle.models = scored.models
            fresh = decider.model_outputs(FeatureRow(row.vector, row.namespace))
            assert scores == fresh[0]
            for outcome, values in fresh[1].items():
                np.testing.assert_array_equal(uplift[outcome], values, err_msg=customer)
    live.close()
    assert reused >= 10 and scores_reused >= 10


def test_a_linear_learner_on_one_outcome_leaves_the_others_reused(
    uplift_bundle: Bundle,
    journeys: dict[str, History],  # noqa: F811
) -> None:
    """A linear learner reads every feature, so its outcome's uplift is computed again whenever
    the clock moves the row; the other outcomes' uplift still comes from the memo, and every
    outcome equals what the models compute."""
    bundle = accelerate(copy.deepcopy(uplift_bundle))
    linear_outcome = next(iter(bundle.uplift))
    actions = base_learners(bundle.uplift[linear_outcome])[0].actions_
    bundle.uplift[linear_outcome] = _linear(bundle, list(actions), seed=3)
    live, decider = LiveFeatures(bundle), Decider(bundle)
    asked: list[str] = []
    for customer, row in _moved_rows(live, decider, journeys, 10):
        assert row.memo is not None
        calls = _count_uplift(bundle)
        _, uplift = decider.model_outputs(row)
        bundle.uplift_matrix = calls.wrapped  # type: ignore[method-assign]
        asked += calls.outcomes
        fresh = decider.model_outputs(FeatureRow(row.vector, row.namespace))[1]
        for outcome, values in fresh.items():
            np.testing.assert_array_equal(uplift[outcome], values, err_msg=customer)
    live.close()
    assert asked.count(linear_outcome) == 30  # every move: the linear learner reads the clock
    assert len(asked) - 30 < 10, asked  # the trees' outcomes: reused but for a crossing or two


def test_a_linear_learner_among_an_outcomes_learners_is_the_only_one_computed_again(
    uplift_bundle: Bundle,
    journeys: dict[str, History],  # noqa: F811
) -> None:
    """A selected model whose first action a linear learner predicts (the trees the others):
    moving the row with the clock computes the linear learner's action again, the trees' actions
    come from the memo, and the whole outcome equals what the models compute, bit for bit."""
    bundle = accelerate(copy.deepcopy(uplift_bundle))
    outcome = next(iter(bundle.uplift))
    trees = base_learners(bundle.uplift[outcome])[0]
    actions = list(trees.actions_)
    linear = _linear(bundle, actions, seed=5)
    choice = {a: "lin" if i == 0 else "trees" for i, a in enumerate(actions)}
    bundle.uplift[outcome] = SelectedUplift({"lin": linear, "trees": trees}, choice)
    live, decider = LiveFeatures(bundle), Decider(bundle)
    parts: list[tuple[str, ...]] = []
    of_learners = bundle.uplift_of_learners

    def counted(X: np.ndarray, which: str, names: Any) -> Any:
        parts.append(tuple(names))
        return of_learners(X, which, names)

    bundle.uplift_of_learners = counted  # type: ignore[method-assign]
    for customer, row in _moved_rows(live, decider, journeys, 8):
        _, uplift = decider.model_outputs(row)
        fresh = decider.model_outputs(FeatureRow(row.vector, row.namespace))[1]
        np.testing.assert_array_equal(uplift[outcome], fresh[outcome], err_msg=customer)
    live.close()
    assert parts.count(("lin",)) >= 20, parts  # the linear learner reads the clock: every move
    assert all(names in (("lin",), ("lin", "trees"), ("trees", "lin")) for names in parts)


def test_a_memo_refuses_another_bundle_and_moved_rows_across_a_threshold(
    uplift_bundle: Bundle,
) -> None:
    cells = ModelCells(uplift_bundle)
    outcome = next(iter(uplift_bundle.uplift))
    cuts = next(iter(cells.cuts[outcome].values()))
    j = next(j for j, c in enumerate(cuts) if c is not None and len(c) > 1)
    cut = float(cuts[j][0])  # type: ignore[index]
    left = np.float32(cut)
    if float(left) > cut:  # (in float64: numpy would compare in float32)
        left = np.nextafter(left, np.float32(-np.inf))  # the largest float32 <= the threshold
    row = np.zeros(len(cuts), dtype=np.float32)
    row[j] = left
    memo, uplift = OutputsMemo(), {outcome: np.arange(3.0)}
    memo.put(uplift_bundle, row, uplift)
    assert memo.get(uplift_bundle, cells, row) == uplift
    assert memo.get(copy.copy(uplift_bundle), cells, row) == {}
    right = row.copy()
    right[j] = np.nextafter(left, np.float32(np.inf))  # past the threshold: right
    assert memo.get(uplift_bundle, cells, right) == {}
    missing = row.copy()
    missing[j] = np.nan
    assert memo.get(uplift_bundle, cells, missing) == {}
    with pytest.raises(ValueError):
        uplift[outcome][0] = 1.0  # shared by later requests: read-only


def test_moved_each_says_what_reading_each_part_alone_says(uplift_bundle: Bundle) -> None:
    """`moved_each` (every part's thresholds merged per feature, the parts as bits) gives what
    reading each part's thresholds one change at a time gives, on random pairs of rows: missing
    values, values on a threshold, beside one and between two, one feature changed or many; on
    the bundle's trees and with a linear learner (every feature exact) among an outcome's."""
    bundle = copy.deepcopy(uplift_bundle)
    outcome = next(iter(bundle.uplift))
    trees = base_learners(bundle.uplift[outcome])[0]
    actions = list(trees.actions_)
    choice = {a: "lin" if i == 0 else "trees" for i, a in enumerate(actions)}
    linear = _linear(bundle, actions, seed=7)
    bundle.uplift[outcome] = SelectedUplift({"lin": linear, "trees": trees}, choice)
    rng = np.random.default_rng(11)
    seen = {"none": 0, "some": 0, "all": 0}
    for cells in (ModelCells(uplift_bundle), ModelCells(bundle)):
        pools = _value_pools(cells, rng)
        for old, new in _row_pairs(pools, rng, 1500):
            outcomes = rng.permutation(list(cells.cuts))[: rng.integers(1, len(cells.cuts) + 1)]
            found = cells.moved_each(old, new, outcomes.tolist())
            expected = _moved_part_by_part(cells, old, new, outcomes.tolist())
            assert list(found.items()) == list(expected.items()), (old, new)
            moved = sum(map(len, found.values()))
            every = sum(len(cells.cuts[o]) for o in found)
            seen["none" if moved == 0 else "all" if moved == every else "some"] += 1
    assert min(seen.values()) >= 300, seen  # not vacuous: each kind of answer, many times


def _moved_part_by_part(
    cells: ModelCells, old: np.ndarray, new: np.ndarray, outcomes: list[str]
) -> dict[str, list[str]]:
    """The moved parts as first written: each part reads the changes (one side missing, or a
    feature exact for it, moves it) until one has a different count of its thresholds below."""
    changed = [(float(old[j]), float(new[j]), j) for j in np.flatnonzero(old != new).tolist()]
    changed = [c for c in changed if not (math.isnan(c[0]) and math.isnan(c[1]))]

    def crosses(cuts: list[np.ndarray | None]) -> bool:
        for a, b, j in changed:
            cut = cuts[j]
            if cut is None or math.isnan(a) or math.isnan(b):
                return True
            if bisect_left(cut.tolist(), a) != bisect_left(cut.tolist(), b):
                return True
        return False

    return {o: [part for part, cuts in cells.cuts[o].items() if crosses(cuts)] for o in outcomes}


def _value_pools(cells: ModelCells, rng: np.random.Generator) -> list[np.ndarray]:
    """Per feature, values to draw rows from: its thresholds (of every part), the floats just
    beside them, midpoints between two, values past the ends, random ones and a missing one."""
    p = len(next(iter(next(iter(cells.cuts.values())).values())))
    pools = []
    for j in range(p):
        cuts = [c[j] for parts in cells.cuts.values() for c in parts.values() if c[j] is not None]
        t = np.unique(np.concatenate([np.zeros(0), *cuts]))
        pools.append(np.concatenate([
            t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf), (t[1:] + t[:-1]) / 2,
            t[:1] - 1, t[-1:] + 1, rng.normal(size=3), [np.nan],
        ]))  # fmt: skip
    return pools


def _row_pairs(
    pools: list[np.ndarray], rng: np.random.Generator, n: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """`n` pairs (old, new), float64 or float32: old drawn from the pools, new the same but for a
    few features (one to a dozen) drawn again, or moved to the next float."""
    sizes = np.array([len(pool) for pool in pools])
    for i in range(n):
        drawn = (rng.random(len(pools)) * sizes).astype(int).tolist()
        old = np.array([pool[k] for pool, k in zip(pools, drawn, strict=True)])
        new = old.copy()
        for j in rng.choice(len(pools), size=rng.choice([1, 2, 3, 6, 12]), replace=False):
            near = rng.random() < 0.5 and not np.isnan(old[j])
            new[j] = np.nextafter(old[j], rng.choice([-np.inf, np.inf])) if near else (
                pools[j][rng.integers(len(pools[j]))])  # fmt: skip
        dtype = np.float32 if i % 2 else np.float64
        yield old.astype(dtype), new.astype(dtype)


Outputs = Callable[[Bundle, ModelCells, np.ndarray], dict[str, np.ndarray]]


def _alike_and_crossed(
    uplift_bundle: Bundle,
    stored: dict[str, History],
    outputs: Outputs,
    moved: Callable[[ModelCells, np.ndarray, np.ndarray], set[str]],
) -> tuple[int, int]:
    """Over live rows moved by the clock (`_moved_by_the_clock`), each output (by name) whose
    trees the cells say the moved row walks alike (not in `moved`) must be equal bit for bit;
    (such outputs of rows that differ, outputs the cells call moved)."""
    bundle = accelerate(copy.deepcopy(uplift_bundle))
    live, cells = LiveFeatures(bundle), ModelCells(bundle)
    alike = crossed = 0
    for customer, X0, X1 in _moved_by_the_clock(live, stored):
        before, after = outputs(bundle, cells, X0), outputs(bundle, cells, X1)
        changed = moved(cells, X0[0], X1[0])
        for name, values in before.items():
            if name in changed:
                crossed += 1
                continue
            alike += int(not np.array_equal(X0, X1, equal_nan=True))
            np.testing.assert_array_equal(after[name], values, err_msg=customer)
    live.close()
    return alike, crossed


def _moved_by_the_clock(
    live: LiveFeatures, stored: dict[str, History]
) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """For each customer with live events, (customer, their model row now, the row moved by the
    clock by one of STEPS), each row of shape (1, p), nothing kept."""
    for k, customer in enumerate(stored):
        events = ingested_for(customer, k)
        X0 = _one(live, stored[customer], events, NOW).vector[None, :]
        for step in STEPS:
            yield customer, X0, _one(live, stored[customer], events, NOW + step).vector[None, :]


def _one(live: LiveFeatures, history: History, events: list, when: datetime) -> OneRow:
    """The one-customer row of a journey with live events as of `when` (nothing kept)."""
    table = pa.concat_tables([history.events, events_table(events, history.events.schema)])
    return live.fast.row(history.customers, table, history.exposures, when)


def _moved_rows(
    live: LiveFeatures,
    decider: Decider,
    stored: dict[str, History],
    n: int,
) -> Iterator[tuple[str, FeatureRow]]:
    """For each of `n` customers with live events, their kept row (its uplift computed) moved
    by the clock to each of the first three STEPS; a row whose span ended is computed anew,
    with the same memo."""
    for k, customer in enumerate(list(stored)[:n]):
        events = ingested_for(customer, k)
        live.row(stored[customer], events, NOW, (customer, 7))
        decider.model_outputs(live.kept(customer, 7, NOW))
        for step in STEPS[:3]:
            row = live.kept(customer, 7, NOW + step)
            if row is None:
                row = live.row(stored[customer], events, NOW + step, (customer, 7))
            yield customer, row


def _linear(bundle: Bundle, actions: list[str], seed: int) -> LinearTLearner:
    """A linear learner of `actions` fitted on random rows of the bundle's features."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(600, len(bundle.builder.feature_names_)))
    treatment = np.array([CONTROL, *actions])[np.arange(600) % (len(actions) + 1)]
    y = (rng.random(600) < 0.3 + 0.05 * (X[:, 0] > 0)).astype(float)
    return LinearTLearner().fit(X, treatment, y)


class _Calls:
    def __init__(self, bundle: Bundle) -> None:
        self.n, self.bundle, self.wrapped = 0, bundle, bundle.uplift_matrix
        self.outcomes: list[str] = []

    def __call__(self, X: np.ndarray, outcomes: Any = None) -> dict[str, np.ndarray]:
        self.n += 1
        self.outcomes += list(self.bundle.uplift if outcomes is None else outcomes)
        return self.wrapped(X, outcomes)


class _ScoreCalls:
    """The bundle's score models, each counting the rows it scores, in place of the originals
    (`models`) until put back."""

    def __init__(self, bundle: Bundle) -> None:
        self.models, self.n = bundle.models, 0
        bundle.models = {role: self._counted(model) for role, model in bundle.models.items()}

    def _counted(self, model: Any) -> Any:
        counted = copy.copy(model)
        predict = model.predict_score

        def predict_score(X: np.ndarray) -> np.ndarray:
            self.n += 1
            return predict(X)

        counted.predict_score = predict_score
        return counted


def _count_scores(bundle: Bundle) -> _ScoreCalls:
    """Count the bundle's score model calls until `bundle.models = .models` puts them back."""
    return _ScoreCalls(bundle)


def _count_uplift(bundle: Bundle) -> _Calls:
    """Count the bundle's uplift_matrix calls until the next `bundle.uplift_matrix = .wrapped`."""
    calls = _Calls(bundle)
    bundle.uplift_matrix = calls  # type: ignore[method-assign]
    return calls
