"""Uplift figures of issue 4 on a simulated data set: training time and the policy's true value.

Runs `training.train.train` on the data set (into a private MLflow store), timing the uplift step
through the progress callback, then `training.evaluation.evaluate` on the held-out exposures with
the simulator's truth. Prints one JSON line for bench/run.py.

It also measures the *feature ceiling*: LightGBM regressions of every arm's **true** net value (the
simulator's noise-free truth, no outcome noise at all) on the same features, fitted on the other
customers and used as a policy on the evaluation customers. No uplift model learned from observed
outcomes can beat it by much: it shows how much of the oracle (which sees the customers' hidden
traits) the observable journey allows.

    .venv/bin/python bench/uplift_policy.py --data DIR --store DIR
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pyarrow.parquet as pq

UPLIFT_STEP = "training uplift models"
CEILING_PARAMS = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 31,
                  "min_child_samples": 50, "num_threads": 2, "verbose": -1}  # fmt: skip
CEILING_ROUNDS = 300


def feature_ceiling(data: Path, version: str) -> float:
    """Oracle share of the policy "the arm whose true net value, regressed on the features, is
    highest" on the evaluation customers (fitted on the other customers with truth)."""
    from training.bundle import load_bundle
    from training.contract import open_dataset
    from training.evaluation import decide, held_out_exposures, objective_weights
    from training.exposures import CONTROL
    from training.features import to_matrix
    from training.synth.generate import default_truth_dir
    from training.synth.oracle import load_exposure_truth, true_net_values, truth_columns

    bundle = load_bundle(version)
    with open_dataset(data).connect() as con:
        frame, held, exposed = held_out_exposures(con, bundle)
    rows = frame.reset_index(drop=True)
    X = to_matrix(bundle.prepare(rows), list(bundle.builder.feature_names_))
    d = decide(bundle, rows, X, exposed)
    weights = objective_weights(bundle, d.scores, len(rows))
    truth = load_exposure_truth(default_truth_dir(data), rows)
    arms = [CONTROL, *bundle.config.catalog.ids]
    net = true_net_values(truth, arms, weights, truth_columns(bundle.config), np.r_[0.0, d.cost])
    known = ~np.isnan(net).any(axis=1)
    fit, judge = known & ~held, known & held
    predicted = np.zeros((judge.sum(), len(arms)))
    for j in range(1, len(arms)):
        model = lgb.train(CEILING_PARAMS, lgb.Dataset(X[fit], net[fit, j]), CEILING_ROUNDS)
        predicted[:, j] = model.predict(X[judge])
    eligible = np.column_stack([np.ones(judge.sum(), bool), d.allowed[judge]])
    rows_judged = np.arange(judge.sum())
    chosen = np.argmax(np.where(eligible, predicted, -np.inf), axis=1)
    best = np.argmax(np.where(eligible, net[judge], -np.inf), axis=1)
    return float(net[judge][rows_judged, chosen].mean() / net[judge][rows_judged, best].mean())


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
                "feature_ceiling": feature_ceiling(args.data.resolve(), str(result.version)),
                "policies": json.loads(
                    policies.drop(columns="description").to_json(orient="index")
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
