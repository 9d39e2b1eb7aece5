"""The bundle's uplift S-learners' predictions on one chunk of customers, as batch scoring makes them.

    python bench/slearner_predict.py --data DIR --model REF [--customers N]   # prints one JSON line

For every outcome whose served uplift model predicts some actions with an S-learner, times that
learner's `predict_actions` for those actions (what `SelectedUplift.predict_raw` calls), on the
features of the first chunk of about N active customers, after loading the kernel (its time is
reported apart: numba's import and compiled code, once a process; until then a process asks
LightGBM for work too small to pay for it). Where the learners walk their own trees
for all arms at once (`forest_`, training.uplift.arm_forest), the same calls are also timed with
the forest set aside, LightGBM's predict once per arm, as the same-run reference, and the
largest difference of the two is reported relative to the largest uplift (the raw scores are the
same; only the link's exp may differ in the last place). Runs on any version of the code that
has `predict_actions` (the reference only where the forest exists). The MLflow store comes
from MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from batch_inference import first_chunk  # bench/, the script's folder


def s_learner_calls(bundle: Any) -> list[tuple[str, Any, list[str]]]:
    """(outcome, S-learner, the actions it predicts there) for every served uplift model."""
    from training.uplift.learners import SLearner
    from training.uplift.selection import SelectedUplift

    calls = []
    for outcome, model in bundle.uplift.items():
        if isinstance(model, SelectedUplift):
            for name, learner in model.learners_.items():
                actions = [a for a in model.actions_ if model.choice_[a] == name]
                if isinstance(learner, SLearner):
                    calls.append((outcome, learner, actions))
        elif isinstance(model, SLearner):
            calls.append((outcome, model, list(model.actions_)))
    return calls


def timed(calls: list[tuple[str, Any, list[str]]], X: np.ndarray) -> tuple[float, float, list[Any]]:
    """(wall seconds, CPU seconds of this process, predictions) of the calls."""
    start, cpu = time.perf_counter(), time.process_time()
    out = [learner.predict_actions(X, actions) for _, learner, actions in calls]
    return time.perf_counter() - start, time.process_time() - cpu, out


def measure(data: Path, model: str, customers: int) -> dict[str, Any]:
    from training.uplift.arm_forest import load_kernel

    bundle, X = first_chunk(data, model, customers)
    calls = s_learner_calls(bundle)
    first = time.perf_counter()
    load_kernel()  # once a process: numba's import and compiled kernel
    first = time.perf_counter() - first
    seconds, cpu, forest_out = timed(calls, X)
    result: dict[str, Any] = {
        "first_call_seconds": first,
        "rows": len(X),
        "s_learners": len(calls),
        "arms_predicted": sum(len(actions) + 1 for _, _, actions in calls),
        "seconds": seconds,
        "cpu_seconds": cpu,
    }
    forests = [getattr(learner, "forest_", None) for _, learner, _ in calls]
    if calls and all(f is not None for f in forests):
        result["trees"] = {  # (trees, trees that read the arm)
            outcome: [len(f.trees.leaf_start), _reading_arm(f, learner.n_features_in_)]
            for (outcome, learner, _), f in zip(calls, forests, strict=True)
        }
        for _, learner, _ in calls:
            learner.forest_ = None  # LightGBM's predict, once per arm
        whole_seconds, whole_cpu, whole_out = timed(calls, X)
        for (_, learner, _), f in zip(calls, forests, strict=True):
            learner.forest_ = f
        result["whole_model_seconds"] = whole_seconds
        result["whole_model_cpu_seconds"] = whole_cpu
        result["max_difference_of_scale"] = max(  # |forest - LightGBM| over the largest |uplift|
            float(np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-300))
            for a, b in zip(forest_out, whole_out, strict=True)
        )
    return result


def _reading_arm(forest: Any, arm: int) -> int:
    """How many of the forest's trees split on the arm column somewhere."""
    t = forest.trees
    tree_of_node = np.repeat(np.arange(len(t.node_start)), np.diff([*t.node_start, len(t.feature)]))
    return len(np.unique(tree_of_node[t.feature == arm]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()
    print(json.dumps(measure(args.data, args.model, args.customers)))


if __name__ == "__main__":
    main()
