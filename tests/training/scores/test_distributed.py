"""`nextbest train --engine dask`: the score models boosted by LightGBM's Dask estimators on a real
2-worker LocalCluster, then evaluated by the usual pipeline against their baselines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.training.registry.test_bundle import CLASSES, FAST, Trained, train_all
from training.evaluation.score_metrics import score_metrics
from training.scores.base import BOOSTER_TRAINER, fit_on
from training.scores.distributed import best_round, dask_boosting, dask_client


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    with dask_client(None, workers=2) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        yield client


@pytest.fixture(scope="module")
def trained(small_world: Path) -> Trained:
    return train_all(small_world)


def test_best_round_reads_the_validation_curve() -> None:
    assert best_round({"valid": {"l2": [3.0, 1.0, 2.0]}}, "l2", 3) == 2
    assert best_round({"valid": {"auc": [0.6, 0.7, 0.65]}}, "auc", 3) == 2
    assert best_round({}, "l2", 7) == 7  # a worker without validation rows: every round


@pytest.mark.slow
@pytest.mark.parametrize("role", ["churn", "satisfaction", "value"])
def test_dask_boosted_models_beat_their_baselines(
    role: str, trained: Trained, client: object
) -> None:
    data = trained.sets[role]
    with dask_boosting(client):  # type: ignore[arg-type]
        model = fit_on(CLASSES[role](**FAST), data)
    assert BOOSTER_TRAINER.get() is None  # the seam is restored after the block
    assert 0 < model.best_iteration_ <= FAST["n_estimators"]
    metrics = score_metrics(model, data)
    local = trained.metrics[role]
    main = model.main_metric
    if role == "churn":  # the baseline is a strong one here: stay near the in-process model
        assert metrics[main] > 0.6 and metrics[main] > local[main] - 0.03
        return
    better = metrics[main] > metrics[f"baseline_{main}"]
    assert better if model.greater_is_better else not better, metrics
