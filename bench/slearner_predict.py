"""The bundle's uplift S-learners' predictions on one chunk of customers, as batch scoring makes them.

    python bench/slearner_predict.py --data DIR --model REF [--customers N]   # prints one JSON line

For every outcome whose served uplift model predicts some actions with an S-learner, times that
learner's `predict_actions` for those actions (what `SelectedUplift.predict_raw` calls), on the
features of the first chunk of about N active customers. Where the learner's model is split by
the arm (`arm_split_`), the same calls are also timed with the split set aside, every tree walked
once per arm, as the same-run reference, and the largest difference of the two is reported
relative to the largest uplift (only the order of additions differs). Runs on any version of the
code that has `predict_actions` (the reference only where the split exists). The MLflow store comes
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
    bundle, X = first_chunk(data, model, customers)
    calls = s_learner_calls(bundle)
    seconds, cpu, split_out = timed(calls, X)
    result: dict[str, Any] = {
        "rows": len(X),
        "s_learners": len(calls),
        "arms_predicted": sum(len(actions) + 1 for _, _, actions in calls),
        "seconds": seconds,
        "cpu_seconds": cpu,
    }
    splits = [getattr(learner, "arm_split_", None) for _, learner, _ in calls]
    if calls and all(s is not None for s in splits):
        result["trees"] = {
            outcome: [_trees(s.free), _trees(s.bound)]  # (arm-free, on the arm)
            for (outcome, _, _), s in zip(calls, splits, strict=True)
        }
        for _, learner, _ in calls:
            learner.arm_split_ = None  # every tree per arm, as before the split
        whole_seconds, whole_cpu, whole_out = timed(calls, X)
        for (_, learner, _), s in zip(calls, splits, strict=True):
            learner.arm_split_ = s
        result["whole_model_seconds"] = whole_seconds
        result["whole_model_cpu_seconds"] = whole_cpu
        result["max_difference_of_scale"] = max(  # |split - whole| over the largest |uplift|
            float(np.max(np.abs(a - b), initial=0.0) / max(np.max(np.abs(b), initial=0.0), 1e-300))
            for a, b in zip(split_out, whole_out, strict=True)
        )
    return result


def _trees(booster: Any) -> int:
    return 0 if booster is None else int(booster.num_trees())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--customers", type=int, default=100_000)
    args = parser.parse_args()
    print(json.dumps(measure(args.data, args.model, args.customers)))


if __name__ == "__main__":
    main()
