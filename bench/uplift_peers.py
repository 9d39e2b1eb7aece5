"""Peer panel (issue 15): nextbest's policy beside plain uplift scripts, same split, same run.

For one simulated data set and one config this trains nextbest (`training.pipelines.train.train`, into a
private MLflow store), then fits the peers on exactly the rows nextbest may learn from (every
exposure outside the evaluation customers that `nextbest evaluate` judges on) and judges every
policy on the evaluation customers against the simulator's truth: the true net value of the arms
it picks, as a share of the oracle's (the best arm per customer in truth). Peers see the same
features and labels, and their uplift is valued with the bundle's own scores, costs, eligibility
and objective (serving.value + serving.arbitration), so only the uplift models differ.

Peers:
- `s_script`: a plain LightGBM S-learner, the action as a categorical feature, one model per
  outcome on every training row; no propensities, calibration or selection (`SCRIPT_PARAMS`).
- `t_script`: a plain LightGBM T-learner, one model per arm and outcome, same parameters.

    .venv/bin/python bench/uplift_peers.py --data DIR --config FILE --store DIR

prints one JSON line: {"nextbest": share, "s_script": share, ..., "uplift_seconds": s, ...}.
`bench/run.py --peers-only` runs it over the panel's shapes and seeds (quick or full mode).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import lightgbm as lgb
import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from training.config import Config

UPLIFT_STEP = "training uplift models"
# The plain script's LightGBM: the parameters a data scientist writes without tuning.
SCRIPT_PARAMS = {"learning_rate": 0.05, "num_leaves": 15, "min_child_samples": 200,
                 "num_threads": 2, "verbose": -1, "seed": 0}  # fmt: skip
SCRIPT_ROUNDS = 400

Peer = Callable[[np.ndarray, np.ndarray, np.ndarray, list[int], np.ndarray, int], np.ndarray]


def _objective(y: np.ndarray) -> str:
    return "binary" if np.isin(np.unique(y), (0.0, 1.0)).all() else "regression"


def s_script(
    X: np.ndarray, arm: np.ndarray, y: np.ndarray, cats: list[int], X_new: np.ndarray, k: int
) -> np.ndarray:
    """Plain S-learner: (n_new, k) uplift of arms 1..k vs arm 0 (control)."""
    d = X.shape[1]
    params = SCRIPT_PARAMS | {"objective": _objective(y)}
    data = lgb.Dataset(np.column_stack([X, arm]), y, categorical_feature=[*cats, d])
    model = lgb.train(params, data, SCRIPT_ROUNDS)
    mu = [model.predict(np.column_stack([X_new, np.full(len(X_new), a)])) for a in range(k + 1)]
    return np.column_stack([m - mu[0] for m in mu[1:]])


def t_script(
    X: np.ndarray, arm: np.ndarray, y: np.ndarray, cats: list[int], X_new: np.ndarray, k: int
) -> np.ndarray:
    """Plain T-learner: one LightGBM per arm; (n_new, k) uplift vs arm 0 (an arm never
    exposed gets 0)."""
    params = SCRIPT_PARAMS | {"objective": _objective(y)}
    mu = []
    for a in range(k + 1):
        rows = arm == a
        if rows.sum() < 2 * SCRIPT_PARAMS["min_child_samples"]:  # type: ignore[operator]
            mu.append(None)
            continue
        data = lgb.Dataset(X[rows], y[rows], categorical_feature=cats)
        mu.append(lgb.train(params, data, SCRIPT_ROUNDS).predict(X_new))
    base = mu[0]
    assert base is not None, "control has rows"
    return np.column_stack([np.zeros(len(X_new)) if m is None else m - base for m in mu[1:]])


PEERS: dict[str, Peer] = {"s_script": s_script, "t_script": t_script}


def nextbest_refit(frame: pd.DataFrame, names: list[str], cats: list[int], config: Config,
                   outcome: str, X_new: np.ndarray, ids: list[str]) -> np.ndarray:  # fmt: skip
    """(n_new, len(ids)) uplift of nextbest's uplift training as the code stands now, fitted
    on `frame` (its own split keeps the evaluation customers out): for measuring a change
    without retraining the score models (`--version`)."""
    from training.uplift.fit import FAST_PARAMS, learn_outcome

    labelled = frame[frame[outcome].notna()]
    spec = config.outcomes[outcome]
    result = learn_outcome(labelled, outcome, spec, names, cats, FAST_PARAMS | {"n_jobs": 2})
    assert not isinstance(result, str), result
    model = result[1]
    predicted = model.predict(X_new)
    out = np.zeros((len(X_new), len(ids)))
    for j, a in enumerate(ids):
        if a in model.actions_:
            out[:, j] = predicted[:, model.actions_.index(a)]
    return out


def panel(data: Path, version: str, refit: bool = False) -> dict[str, float]:
    """Oracle share of nextbest's policy and of every peer's, on the evaluation customers."""
    from training.config import CONTROL
    from training.data.contract import open_dataset
    from training.evaluation.decisions import (
        decide,
        held_out_exposures,
        learned_arms,
        objective_weights,
    )
    from training.features.definition import categorical_names, to_matrix
    from training.policy.arbitration import Candidates
    from training.policy.value import net_value
    from training.registry.mlflow_models import load_bundle
    from training.synth.generate import default_truth_dir
    from training.synth.oracle import load_exposure_truth, true_net_values, truth_columns

    bundle = load_bundle(version)
    config, ids = bundle.config, list(bundle.config.catalog.ids)
    with open_dataset(data).connect() as con:
        frame, held, exposed = held_out_exposures(con, bundle)
    names = list(bundle.builder.feature_names_)
    frame = frame.reset_index(drop=True)
    rows = frame[held].reset_index(drop=True)
    X_held = to_matrix(rows, names)
    d = decide(bundle, rows, X_held, exposed)
    weights = objective_weights(bundle, d.scores, len(rows))
    arms = [CONTROL, *ids]
    truth = load_exposure_truth(default_truth_dir(data), rows)
    net = true_net_values(truth, arms, weights, truth_columns(config), np.r_[0.0, d.cost])
    known = ~np.isnan(net).any(axis=1)
    eligible = np.column_stack([np.ones(known.sum(), bool), d.allowed[known]])
    oracle = np.argmax(np.where(eligible, net[known], -np.inf), axis=1)
    index = np.arange(known.sum())
    oracle_value = float(net[known][index, oracle].mean())

    def share(chosen: np.ndarray) -> float:
        return float(net[known][index, chosen[known]].mean() / oracle_value)

    out = {"nextbest": share(d.learned), "oracle_eur": oracle_value, "truth_rows": int(known.sum())}
    cats_set = set(categorical_names(frame, names))
    cats = [j for j, n in enumerate(names) if n in cats_set]
    code = {a: i for i, a in enumerate(arms)}
    for peer, fit in PEERS.items():
        start = time.perf_counter()
        uplift = {}
        for outcome in weights:
            train = (~held) & frame[outcome].notna().to_numpy()
            X = to_matrix(frame[train], names)
            arm = frame.loc[train, "action_id"].map(code).to_numpy(dtype=np.int64)
            y = frame.loc[train, outcome].to_numpy(dtype=np.float64)
            uplift[outcome] = fit(X, arm, y, cats, X_held, len(ids))
        expected = net_value(uplift, d.scores, d.cost, config.objective, config.outcomes)
        chosen = learned_arms(Candidates(config.catalog.ids, d.cost, expected.expected_value,
                                         d.allowed))  # fmt: skip
        out[peer] = share(chosen)
        out[f"{peer}_seconds"] = time.perf_counter() - start
    if refit:
        start = time.perf_counter()
        uplift = {o: nextbest_refit(frame, names, cats, config, o, X_held, ids) for o in weights}
        expected = net_value(uplift, d.scores, d.cost, config.objective, config.outcomes)
        chosen = learned_arms(Candidates(config.catalog.ids, d.cost, expected.expected_value,
                                         d.allowed))  # fmt: skip
        out["refit"] = share(chosen)
        out["refit_seconds"] = time.perf_counter() - start
    out["treated_share"] = float(np.mean(d.learned > 0))
    return out


# ---------------------------------------------------------------------------------------------
# the panel's configs: the demo config with another objective, and a one-offer churn config

OFFER_ACTION = {"id": "retention_discount", "name": "Retention discount", "cost": 15.0}
RETAINED_VALUE = 400.0  # money per avoided churn in the one-offer world (no LTV model there)


def write_config(folder: Path, objective: str) -> Path:
    """A config for the panel: "full" (the demo's), "revenue" (the demo's, money = revenue
    uplift only) or "offer" (one retention offer, churn only, a fixed value per retained
    customer). Written under `folder`; returns its path."""
    import yaml

    demo = Path(__file__).resolve().parents[1] / "training" / "demo"
    config = yaml.safe_load((demo / "config.yaml").read_text())
    config["actions"] = str(demo / "actions.yaml")
    if objective == "revenue":
        config["objective"] = {"value_outcome": "value", "currency": "EUR"}
    elif objective == "offer":
        config["outcomes"] = {"churn": config["outcomes"]["churn"]}
        config["objective"] = {"outcome_values": {"churn": -RETAINED_VALUE}, "currency": "EUR"}
        actions = folder / "offer_actions.yaml"
        actions.write_text(yaml.safe_dump({"actions": [OFFER_ACTION]}))
        config["actions"] = str(actions)
    elif objective != "full":
        raise ValueError(f"objective must be full, revenue or offer; got {objective!r}")
    path = folder / f"config_{objective}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--version", help="judge this bundle of the store instead of training")
    parser.add_argument("--refit", action="store_true", help="also the current uplift code")
    args = parser.parse_args()
    args.store.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.store.resolve() / 'mlflow.db'}"
    data = args.data.resolve()
    config = args.config.resolve() if args.config else None
    os.chdir(args.store)  # artifacts (./mlruns) go beside the store

    from training.pipelines.train import train

    if args.version:
        figures = panel(data, args.version, args.refit)
    else:
        marks: dict[str, float] = {}
        result = train(data, config, step=lambda m: marks.__setitem__(m, time.perf_counter()))
        start = next(t for m, t in marks.items() if m.startswith(UPLIFT_STEP))
        figures = panel(data, str(result.version), args.refit)
        figures["uplift_seconds"] = marks["registering the bundle"] - start
    figures["exposures"] = int(pd.read_parquet(data / "exposures.parquet", columns=[]).shape[0])
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
