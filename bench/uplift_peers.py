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
import copy
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
        if not rows.any():
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


def panel(
    data: Path, version: str, objectives: list[str], refit: bool = False, verdict: bool = False,
    ceiling: bool = False,
) -> dict[str, dict[str, float | str]]:  # fmt: skip
    """Per objective ("trained": the bundle's own; "revenue": money = revenue uplift alone), the
    oracle share of nextbest's policy and of every peer's on the evaluation customers; with
    `verdict`, also `nextbest evaluate`'s verdict on the learned policy; with `ceiling`, what the
    features allow (training.synth.oracle.feature_ceiling, cross-fitted on the judged rows)."""
    from training.config import CONTROL, Objective
    from training.data.contract import open_dataset
    from training.evaluation.decisions import (
        decide,
        evaluate_bundle,
        held_out_exposures,
        learned_arms,
        objective_weights,
    )
    from training.features.definition import categorical_names, to_matrix
    from training.policy.arbitration import Candidates
    from training.policy.value import net_value
    from training.registry.mlflow_models import load_bundle
    from training.synth.generate import default_truth_dir
    from training.synth.oracle import (
        feature_ceiling,
        load_exposure_truth,
        true_net_values,
        truth_columns,
    )

    trained = load_bundle(version)
    ids = list(trained.config.catalog.ids)
    with open_dataset(data).connect() as con:
        frame, held, exposed = held_out_exposures(con, trained)
    names = list(trained.builder.feature_names_)
    frame = frame.reset_index(drop=True)
    rows = frame[held].reset_index(drop=True)
    X_held = to_matrix(rows, names)
    cats_set = set(categorical_names(frame, names))
    cats = [j for j, n in enumerate(names) if n in cats_set]
    arms = [CONTROL, *ids]
    code = {a: i for i, a in enumerate(arms)}
    truth = load_exposure_truth(default_truth_dir(data), rows)
    cache: dict[tuple[str, str], np.ndarray] = {}
    seconds: dict[str, float] = {}

    def peer_uplift(peer: str, outcome: str) -> np.ndarray:
        if (peer, outcome) not in cache:
            start = time.perf_counter()
            if peer == "refit":
                cache[peer, outcome] = nextbest_refit(frame, names, cats, trained.config, outcome,
                                                      X_held, ids)  # fmt: skip
            else:
                train = (~held) & frame[outcome].notna().to_numpy()
                X = to_matrix(frame[train], names)
                arm = frame.loc[train, "action_id"].map(code).to_numpy(dtype=np.int64)
                y = frame.loc[train, outcome].to_numpy(dtype=np.float64)
                cache[peer, outcome] = PEERS[peer](X, arm, y, cats, X_held, len(ids))
            seconds[peer] = seconds.get(peer, 0.0) + time.perf_counter() - start
        return cache[peer, outcome]

    out: dict[str, dict[str, float | str]] = {}
    for objective in objectives:
        bundle = trained
        if objective == "revenue":
            money = Objective(value_outcome=trained.config.objective.value_outcome)
            bundle = copy.copy(trained)
            bundle.config = trained.config.model_copy(update={"objective": money})
        config = bundle.config
        d = decide(bundle, rows, X_held, exposed)
        weights = objective_weights(bundle, d.scores, len(rows))
        net = true_net_values(truth, arms, weights, truth_columns(config), np.r_[0.0, d.cost])
        known = ~np.isnan(net).any(axis=1)
        eligible = np.column_stack([np.ones(known.sum(), bool), d.allowed[known]])
        oracle = np.argmax(np.where(eligible, net[known], -np.inf), axis=1)
        index = np.arange(known.sum())
        oracle_value = float(net[known][index, oracle].mean())

        def share(chosen: np.ndarray) -> float:
            return float(net[known][index, chosen[known]].mean() / oracle_value)  # noqa: B023

        res: dict[str, float | str] = {"nextbest": share(d.learned), "oracle_eur": oracle_value,
                                       "truth_rows": int(known.sum()),
                                       "treated_share": float(np.mean(d.learned > 0))}  # fmt: skip
        if ceiling:
            res["ceiling"] = feature_ceiling(X_held[known], net[known], eligible)
        for peer in [*PEERS, *(["refit"] if refit else [])]:
            uplift = {o: peer_uplift(peer, o) for o in weights}
            value = net_value(uplift, d.scores, d.cost, config.objective, config.outcomes)
            candidates = Candidates(config.catalog.ids, d.cost, value.expected_value, d.allowed)
            res[peer] = share(learned_arms(candidates))
        if verdict:
            with open_dataset(data).connect() as con:
                evaluation = evaluate_bundle(con, bundle)
            learned = evaluation.policies.set_index("policy").loc["learned"]
            res |= {"verdict": evaluation.verdict(), "dr_value": float(learned["dr_value"]),
                    "dr_ci": float(learned["dr_ci"])}  # fmt: skip
        out[objective] = res
    out["seconds"] = dict(seconds)
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


# ---------------------------------------------------------------------------------------------
# the panel: shapes x seeds, one child process each (bench/run.py --peers-only)


@dataclass(frozen=True)
class Shape:
    """One simulated world of the panel: size, campaign design (`nextbest synth --design`), the
    config it trains with, and the objectives it is judged under."""

    customers: int
    design: str
    config: str  # write_config's objective: full or offer
    seeds: tuple[int, ...]
    objectives: tuple[str, ...] = ("trained",)
    verdict: bool = False

    def label(self, objective: str) -> str:
        money = {"full": "full objective", "offer": "one offer, churn only"}[self.config]
        money = "revenue-only objective" if objective == "revenue" else money
        return f"{self.design}, {self.customers // 1000}k customers, {money}"


# quick: the 20k worlds (about an hour on 2 quiet cores, 3 jobs at a time); full: 50k and
# 200k too (hours). The demo world (`--design demo`): 5 seeds check `nextbest evaluate`'s verdict;
# the larger worlds keep the lighter waves (the same calendar, fewer exposures).
_QUICK = [
    Shape(20_000, "demo", "full", (1, 2, 3, 4, 5), ("trained", "revenue"), verdict=True),
    Shape(20_000, "single", "full", (1, 2), ("trained", "revenue")),
    Shape(20_000, "offer", "offer", (1, 2)),
]
PANEL = {
    "quick": _QUICK,
    "full": [
        *_QUICK,
        Shape(50_000, "waves", "full", (1, 2, 3), ("trained", "revenue")),
        Shape(50_000, "single", "full", (1, 2)),
        Shape(200_000, "waves", "full", (1, 2), ("trained", "revenue")),
    ],
}
MODELS = ("nextbest", *PEERS)

Measure = Callable[[list[str]], tuple[float, float, str]]


def run_shape(shape: Shape, seed: int, workdir: Path, measure: Measure) -> dict[str, Any]:
    """Simulate (or reuse) the shape's data for `seed`, train and judge in a child process."""
    exe = Path(sys.executable)
    data = workdir / f"{shape.design}_{shape.customers}_{seed}"
    if not data.exists():
        measure([str(exe.with_name("nextbest")), "synth", "--customers", str(shape.customers),
                 "--seed", str(seed), "--design", shape.design, "--out", str(data)])  # fmt: skip
    config = write_config(workdir, shape.config)
    store = workdir / f"store_{data.name}_{shape.config}"
    cmd = [str(exe), str(Path(__file__).resolve()), "--data", str(data), "--config", str(config),
           "--store", str(store), "--objectives", ",".join(shape.objectives)]  # fmt: skip
    seconds, gib, out = measure(cmd + (["--verdict"] if shape.verdict else []))
    return json.loads(out.splitlines()[-1]) | {"wall_seconds": seconds, "peak_gib": gib}


def peer_rows(shape: Shape, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """bench/run.py rows (as dicts of Row's fields): one per objective, every model's oracle
    share as mean ± sd over the seeds; met when nextbest's mean is at least the best peer's
    less one standard error of their paired difference over the seeds."""
    rows = []
    for objective in shape.objectives:
        shares = {m: np.array([r[objective][m] for r in results]) for m in MODELS}
        mean = {m: float(v.mean()) for m, v in shares.items()}
        sd = {m: float(v.std(ddof=1)) if len(v) > 1 else 0.0 for m, v in shares.items()}
        best = max(PEERS, key=lambda m: mean[m])
        diff = shares["nextbest"] - shares[best]
        se = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
        detail = "; ".join(f"{m} {mean[m]:.3f} ± {sd[m]:.3f}" for m in MODELS)
        detail += f" (seeds {', '.join(str(s) for s in shape.seeds)}; per seed nextbest "
        detail += ", ".join(f"{v:.2f}" for v in shares["nextbest"]) + ")"
        if shape.verdict and objective == "trained":
            earns = sum(str(r[objective]["verdict"]).startswith("the learned policy earns")
                        for r in results)  # fmt: skip
            detail += (
                f"; evaluate's verdict 'earns more than doing nothing' on {earns} of {len(results)}"
            )
        uplift = [r["uplift_seconds"] for r in results]
        rows.append({
            "figure": f"oracle share, {shape.label(objective)}",
            "seconds": float(np.mean(uplift)), "peak_gib": max(r["peak_gib"] for r in results),
            "target": f">= best peer ({best})", "ok": bool(diff.mean() + se >= 0),
            "detail": detail + f"; uplift training {np.mean(uplift):.0f} s at {results[0]['exposures']:,} exposures",
        })  # fmt: skip
    return rows


def summarize(log: Path, mode: str) -> list[dict[str, Any]]:
    """`peer_rows` of the jobs a panel run has finished so far (its `peers.jsonl`): for reading
    a run that is still going or was cut short (each row names its seeds)."""
    done: dict[int, list[dict[str, Any]]] = {}
    for line in log.read_text().splitlines():
        job = json.loads(line)
        done.setdefault(int(job["shape"]), []).append(job)
    rows = []
    for i, jobs in sorted(done.items()):
        shape = PANEL[mode][i]
        jobs.sort(key=lambda job: int(job["seed"]))
        seeds = tuple(int(job["seed"]) for job in jobs)
        rows += peer_rows(Shape(**{**shape.__dict__, "seeds": seeds}), jobs)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--summarize", type=Path, help="print the rows of a run's peers.jsonl")
    parser.add_argument("--mode", default="quick", help="the panel mode of --summarize's run")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--config", type=Path, default=None)
    parser.add_argument("--store", type=Path)
    parser.add_argument("--version", help="judge this bundle of the store instead of training")
    parser.add_argument("--refit", action="store_true", help="also the current uplift code")
    parser.add_argument("--objectives", default="trained", help="trained and/or revenue")
    parser.add_argument("--verdict", action="store_true", help="also nextbest evaluate's verdict")
    parser.add_argument("--ceiling", action="store_true", help="also what the features allow")
    args = parser.parse_args()
    if args.summarize:
        for row in summarize(args.summarize, args.mode):
            print(f"{row['figure']}: {row['detail']} [{'met' if row['ok'] else 'NOT met'}]")
        return
    if args.data is None or args.store is None:
        parser.error("--data and --store are needed to run one shape")
    args.store.mkdir(parents=True, exist_ok=True)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{args.store.resolve() / 'mlflow.db'}"
    data = args.data.resolve()
    config = args.config.resolve() if args.config else None
    os.chdir(args.store)  # artifacts (./mlruns) go beside the store

    from training.pipelines.train import train

    objectives = args.objectives.split(",")
    figures: dict[str, Any] = {}
    version = args.version
    if version is None:
        marks: dict[str, float] = {}
        start = time.perf_counter()
        result = train(data, config, step=lambda m: marks.__setitem__(m, time.perf_counter()))
        uplift_start = next(t for m, t in marks.items() if m.startswith(UPLIFT_STEP))
        figures["uplift_seconds"] = marks["registering the bundle"] - uplift_start
        figures["train_seconds"] = time.perf_counter() - start
        version = str(result.version)
    figures |= panel(data, version, objectives, args.refit, args.verdict, args.ceiling)
    figures["exposures"] = int(pd.read_parquet(data / "exposures.parquet", columns=[]).shape[0])
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
