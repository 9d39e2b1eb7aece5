"""Batch model inference against its limit: the bundle's scores + uplift on one chunk of customers
vs the time LightGBM's own `Booster.predict` spends on the same boosters and the same rows.

    python bench/batch_inference.py --data DIR --model REF [--customers N]   # prints one JSON line

Every `Booster.predict` call made while the bundle scores the chunk is timed (a thin wrapper that
calls the real method), so "raw" is exactly the boosters' work on the inputs they were given and
the ratio raw / total is what our code around them (matrix building, calibration, arm loops,
net value assembly) costs. The MLflow store comes from MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import lightgbm as lgb

AS_OF = date(2026, 11, 2)


def timed_predict(spent: list[float]) -> Callable[..., Any]:
    """Booster.predict that adds its wall time to `spent`."""
    real = lgb.Booster.predict

    def predict(self: lgb.Booster, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return real(self, *args, **kwargs)
        finally:
            spent.append(time.perf_counter() - start)

    return predict


def first_chunk(data: Path, model: str, customers: int) -> tuple[Any, Any]:
    """(bundle, model matrix of the first chunk of about `customers` active customers), as batch
    scoring builds them."""
    from serving.batch.chunks import model_matrix
    from serving.batch.population import chunk_features, plan_population
    from training.data.contract import open_dataset
    from training.registry.mlflow_models import load_bundle

    bundle = load_bundle(model)
    with open_dataset(data).connect() as con:
        population = plan_population(con, bundle.config, AS_OF, customers)
        features = chunk_features(con, bundle.builder, population.chunks[0])
    return bundle, model_matrix(bundle, features)


def measure(data: Path, model: str, customers: int) -> dict[str, float]:
    bundle, X = first_chunk(data, model, customers)
    spent: list[float] = []
    lgb.Booster.predict = timed_predict(spent)  # type: ignore[method-assign]
    start = time.perf_counter()
    bundle.score_matrix(X)
    bundle.uplift_matrix(X)
    total = time.perf_counter() - start
    raw = sum(spent)
    return {
        "rows": len(X),
        "boosters_calls": len(spent),
        "inference_seconds": total,
        "raw_predict_seconds": raw,
        "ratio": raw / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--customers", type=int, default=200_000)
    args = parser.parse_args()
    print(json.dumps(measure(args.data, args.model, args.customers)))


if __name__ == "__main__":
    main()
