"""Uplift figures of issue 4 on a simulated data set: training time and the policy's true value.

Runs `training.train.train` on the data set (into a private MLflow store), timing the uplift step
through the progress callback, then `training.evaluation.evaluate` on the held-out exposures with
the simulator's truth. Prints one JSON line for bench/run.py.

    .venv/bin/python bench/uplift_policy.py --data DIR --store DIR
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pyarrow.parquet as pq

UPLIFT_STEP = "training uplift models"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True)
    args = parser.parse_args()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.store.resolve() / 'mlflow.db'}"
    os.chdir(args.store)  # artifacts (./mlruns) go beside the store

    from training.evaluation import evaluate
    from training.train import train

    marks: dict[str, float] = {}

    def step(message: str) -> None:
        marks[message] = time.perf_counter()

    start = time.perf_counter()
    result = train(args.data.resolve(), step=step)
    train_seconds = time.perf_counter() - start
    uplift_start = next(t for m, t in marks.items() if m.startswith(UPLIFT_STEP))
    uplift_seconds = marks["registering the bundle"] - uplift_start
    evaluation, _ = evaluate(args.data.resolve(), result.version, args.store / "report")
    policies = evaluation.policies.set_index("policy")
    print(
        json.dumps(
            {
                "train_seconds": train_seconds,
                "uplift_seconds": uplift_seconds,
                "exposures": pq.ParquetFile(args.data / "exposures.parquet").metadata.num_rows,
                "held_out": evaluation.exposures,
                "policies": json.loads(
                    policies.drop(columns="description").to_json(orient="index")
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
