"""Churn quality against the simulator's Bayes limit: train, then score the last training snapshot.

The simulator's ground truth holds each evaluation customer's true 90-day churn probability at
2026-08-03 (the demo's last snapshot, which the churn model never fits on: it is the time-aware test
date). The AUC of those true probabilities against what really happened is the best any model can do.
This is evaluation code: it may read the ground truth; training never does.

    python bench/train_quality.py --data DIR [--store DIR]   # prints one JSON line
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

AS_OF = date(2026, 8, 3)


def realised_churn(data: Path, ids: pd.Series) -> np.ndarray:
    con = duckdb.connect()
    con.register("ids", pd.DataFrame({"customer_id": ids}))
    rows = con.execute(
        f"""SELECT ids.customer_id, count(e.customer_id) > 0 AS churned FROM ids
            LEFT JOIN read_parquet('{data}/events.parquet') e ON e.customer_id = ids.customer_id
             AND e.event_type = 'churn' AND e.ts >= DATE '{AS_OF}' AND e.ts < DATE '{AS_OF}' + 90
            GROUP BY ALL"""
    ).df()
    return ids.map(rows.set_index("customer_id")["churned"]).to_numpy(dtype=float)


def evaluate(data: Path) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    from training.data.contract import open_dataset
    from training.evaluation.metrics import expected_calibration_error
    from training.pipelines.train import train
    from training.registry.mlflow_models import load_bundle

    start = time.perf_counter()
    result = train(data)
    seconds = time.perf_counter() - start
    bundle = load_bundle(result.version)
    truth = pd.read_parquet(data.with_name(data.name + "_truth") / "customers_truth.parquet")
    truth = truth[pd.to_datetime(truth.as_of) == pd.Timestamp(AS_OF)].reset_index(drop=True)
    with open_dataset(data).connect() as con:
        features = bundle.builder.transform(con, as_of=AS_OF)
    scores = bundle.score_frame(features).set_index("customer_id")
    pred = scores.loc[truth.customer_id, "churn_probability"].to_numpy()
    y = realised_churn(data, truth.customer_id)
    return {
        "customers": len(truth),
        "churn_rate": float(y.mean()),
        "auc_model": float(roc_auc_score(y, pred)),
        "auc_bayes_limit": float(roc_auc_score(y, truth.churn_control)),
        "ece_model": float(expected_calibration_error(y, pred)),
        "ece_truth": float(expected_calibration_error(y, truth.churn_control.to_numpy())),
        "mean_pred": float(pred.mean()),
        "train_seconds": seconds,
        **{f"test_{k}": v for k, v in result.metrics.get("churn", {}).items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--store", type=Path, default=None, help="MLflow store dir (default: temp)")
    args = parser.parse_args()
    store = args.store or Path(tempfile.mkdtemp(prefix="nextbest-quality-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    os.chdir(store)
    print(json.dumps(evaluate(args.data.resolve())))


if __name__ == "__main__":
    main()
