"""Distributed training of the score models (`nextbest train --engine dask`) through LightGBM's own
Dask integration, `lightgbm.DaskLGBMClassifier` / `DaskLGBMRegressor`.

Only the boosting moves: `dask_boosting` installs `DaskBooster` as the score models' BoosterTrainer
(training.scores.base.BOOSTER_TRAINER) for the duration of a block, so snapshots, splits, calibration,
evaluation, MLflow logging and the bundle are the pipeline's usual ones, and the model kept is a
plain LightGBM booster like any other.

LightGBM's Dask estimators do not support early stopping (workers would stop at different rounds).
They do evaluate an `eval_set` every round, so all `n_estimators` rounds run and the booster is cut
back to the best round on the validation rows — the model early stopping would have kept, at the
price of the extra rounds. The validation rows are spread over the workers like the fitting rows, and
each worker scores its own share, so the curve read back is one worker's: a sample of the full one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np

from training.scores.base import BOOSTER_TRAINER, BoostRequest

if TYPE_CHECKING:
    from distributed import Client

HIGHER_IS_BETTER = {"auc", "average_precision", "ndcg", "map"}  # LightGBM metrics to maximise
VALID = "valid"
PER_WORKER = {"num_threads", "n_jobs"}  # Dask gives each worker its own threads: not ours to set


@contextmanager
def dask_client(scheduler: str | None, workers: int) -> Iterator[Client]:
    """A client of the cluster at `scheduler`, or of a new LocalCluster of `workers` processes with
    one thread each (LightGBM and DuckDB bring their own threads; one per core is the budget)."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.WARNING,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


class DaskBooster:
    """A BoosterTrainer that boosts on a Dask cluster with LightGBM's Dask estimators."""

    def __init__(self, client: Client) -> None:
        self.client = client

    @staticmethod
    def _array(values: np.ndarray, workers: int) -> Any:
        """`values` as a dask array split by rows into one block per worker."""
        import dask.array as da

        rows = max(1, -(-len(values) // workers))
        return da.from_array(values, chunks=(rows, *values.shape[1:]))

    def __call__(self, request: BoostRequest) -> tuple[lgb.Booster, int]:
        params = {k: v for k, v in request.params.items() if k not in PER_WORKER}
        estimator = (
            lgb.DaskLGBMClassifier if params["objective"] == "binary" else lgb.DaskLGBMRegressor
        )
        model = estimator(client=self.client, n_estimators=request.rounds, **params)
        stop = len(request.y_stop) > 0
        # counted once: a worker joining or leaving between two counts split X and y unalike
        workers = max(1, len(self.client.scheduler_info()["workers"]))
        model.fit(
            self._array(request.X, workers),
            self._array(request.y, workers),
            eval_X=(self._array(request.X_stop, workers),) if stop else None,
            eval_y=(self._array(request.y_stop, workers),) if stop else None,
            eval_names=[VALID] if stop else None,
            feature_name=request.feature_names,
            categorical_feature=request.categorical,
        )
        booster: lgb.Booster = model.booster_
        return booster, best_round(model.evals_result_, params.get("metric"), request.rounds)


def best_round(evals: dict[str, dict[str, list[float]]], metric: str | None, rounds: int) -> int:
    """The 1-based best round of the validation curve of `metric` (all rounds when none)."""
    curves = evals.get(VALID, {})
    curve = curves.get(metric or "", next(iter(curves.values()), None))
    if not curve:
        return rounds
    values = np.asarray(curve, dtype=np.float64)
    best = np.argmax(values) if metric in HIGHER_IS_BETTER else np.argmin(values)
    return int(best) + 1


@contextmanager
def dask_boosting(client: Client) -> Iterator[None]:
    """Within the block, score models boost on `client`'s cluster."""
    token = BOOSTER_TRAINER.set(DaskBooster(client))
    try:
        yield
    finally:
        BOOSTER_TRAINER.reset(token)


@contextmanager
def training_engine(engine: str, scheduler: str | None, workers: int) -> Iterator[None]:
    """`nextbest train --engine`: "local" changes nothing, "dask" boosts on a cluster."""
    if engine == "local":
        yield
        return
    with dask_client(scheduler, workers) as client, dask_boosting(client):
        yield
