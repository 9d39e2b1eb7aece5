"""Uplift figures of issue 4 on a simulated data set: training time and the policy's true value.

Runs `training.pipelines.train.train` on the data set (into a private MLflow store), timing the uplift step
through the progress callback, then `training.pipelines.evaluate.evaluate` on the held-out exposures with
the simulator's truth. Prints one JSON line for bench/run.py.

It also measures the *feature ceiling*: LightGBM regressions of every arm's **true** net value (the
simulator's noise-free truth, no outcome noise at all) on the same features, fitted on the other
customers and used as a policy on the evaluation customers. No uplift model learned from observed
outcomes can beat it by much: it shows how much of the oracle (which sees the customers' hidden
traits) the observable journey allows. And the *truth swaps*: the learned policy's share of the
oracle when one outcome's predicted uplift is replaced by the true one, which says which outcome's
uplift model limits the policy most.

    .venv/bin/python bench/uplift_policy.py --data DIR --store DIR
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pyarrow.parquet as pq

UPLIFT_STEP = "training uplift models"
if TYPE_CHECKING:
    from training.config import Config
    from training.evaluation.decisions import Decisions


class TruthRows(NamedTuple):
    """A bundle's decisions beside the simulator's truth, for every exposure."""

    config: Config
    X: np.ndarray
    decisions: Decisions
    net: np.ndarray  # (n, arms) true net value of each arm vs control; NaN without truth
    fit: np.ndarray  # rows with truth of the other customers
    judge: np.ndarray  # rows with truth of the evaluation customers
    true_uplift: dict[str, np.ndarray]  # outcome -> (n, actions) true uplift


def truth_rows(data: Path, version: str) -> TruthRows:
    """Decisions of bundle `version` for every exposure, with the truth where it exists."""
    from training.config import CONTROL
    from training.data.contract import open_dataset
    from training.evaluation.decisions import decide, held_out_exposures, objective_weights
    from training.features.definition import to_matrix
    from training.registry.mlflow_models import load_bundle
    from training.synth.generate import default_truth_dir
    from training.synth.oracle import (
        load_exposure_truth,
        true_net_values,
        true_uplift,
        truth_columns,
    )

    bundle = load_bundle(version)
    with open_dataset(data).connect() as con:
        frame, held, exposed = held_out_exposures(con, bundle)
    rows = frame.reset_index(drop=True)
    X = to_matrix(bundle.prepare(rows), list(bundle.builder.feature_names_))
    d = decide(bundle, rows, X, exposed)
    weights = objective_weights(bundle, d.scores, len(rows))
    truth = load_exposure_truth(default_truth_dir(data), rows)
    arms = [CONTROL, *bundle.config.catalog.ids]
    prefixes = truth_columns(bundle.config)
    net = true_net_values(truth, arms, weights, prefixes, np.r_[0.0, d.cost])
    known = ~np.isnan(net).any(axis=1)
    uplift = true_uplift(truth, arms, prefixes)
    return TruthRows(bundle.config, X, d, net, known & ~held, known & held, uplift)


def judged_arms(t: TruthRows) -> np.ndarray:
    """(judged rows, arms) the arms each evaluation row with truth may get: nothing always."""
    return np.column_stack([np.ones(t.judge.sum(), bool), t.decisions.allowed[t.judge]])


def oracle_share(t: TruthRows, chosen: np.ndarray) -> float:
    """True value of the arms `chosen` for the evaluation rows with truth, over the oracle's."""
    net = t.net[t.judge]
    best = np.argmax(np.where(judged_arms(t), net, -np.inf), axis=1)
    rows = np.arange(len(net))
    return float(net[rows, chosen].mean() / net[rows, best].mean())


def feature_ceiling(t: TruthRows) -> float:
    """Oracle share of the policy "the arm whose true net value, regressed on the features, is
    highest" on the evaluation customers (fitted on the other customers with truth)."""
    from training.synth.oracle import ceiling_arms

    return oracle_share(t, ceiling_arms(t.X[t.fit], t.net[t.fit], t.X[t.judge], judged_arms(t)))


def truth_swaps(t: TruthRows) -> dict[str, float]:
    """Oracle share of the learned policy when one outcome's predicted uplift is replaced by the
    truth: which outcome's uplift model limits the policy most."""
    from training.evaluation.decisions import learned_arms
    from training.policy.arbitration import Candidates
    from training.policy.value import net_value

    config, d = t.config, t.decisions
    uplift = {o: u[t.judge] for o, u in d.uplift.items()}
    scores = {k: v[t.judge] for k, v in d.scores.items()}
    shares = {}
    for outcome, truth in t.true_uplift.items():
        swapped = uplift | {outcome: truth[t.judge]}
        value = net_value(swapped, scores, d.cost, config.objective, config.outcomes)
        candidates = Candidates(
            config.catalog.ids, d.cost, value.expected_value, d.allowed[t.judge]
        )
        shares[outcome] = oracle_share(t, learned_arms(candidates))
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--store", type=Path, required=True)
    args = parser.parse_args()
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.store.resolve() / 'mlflow.db'}"
    os.chdir(args.store)  # artifacts (./mlruns) go beside the store

    from training.pipelines.evaluate import evaluate
    from training.pipelines.train import train

    marks: dict[str, float] = {}

    def step(message: str) -> None:
        marks[message] = time.perf_counter()

    start = time.perf_counter()
    result = train(args.data.resolve(), step=step)
    train_seconds = time.perf_counter() - start
    uplift_start = next(t for m, t in marks.items() if m.startswith(UPLIFT_STEP))
    uplift_seconds = marks["registering the bundle"] - uplift_start
    evaluation, _, _ = evaluate(args.data.resolve(), result.version, args.store / "report")
    assert evaluation is not None, "the simulator's bundle has uplift models"
    truth = truth_rows(args.data.resolve(), str(result.version))
    policies = evaluation.policies.set_index("policy")
    print(
        json.dumps(
            {
                "train_seconds": train_seconds,
                "uplift_seconds": uplift_seconds,
                "exposures": pq.ParquetFile(args.data / "exposures.parquet").metadata.num_rows,
                "held_out": evaluation.exposures,
                "feature_ceiling": feature_ceiling(truth),
                "truth_swaps": truth_swaps(truth),
                "policies": json.loads(
                    policies.drop(columns="description").to_json(orient="index")
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
