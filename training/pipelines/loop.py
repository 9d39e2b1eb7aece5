"""`nextbest loop`: the product run against a simulated population that responds to its decisions.

Round 0 explores: every decidable customer gets a uniformly random arm (an action or nothing).
Each later round, `ROUND_WEEKS` weeks on (the 90-day outcomes of the previous round are then
observed), trains on every exposure so far, puts the new version through the promotion gate
(score metrics and the paired policy value against the champion), and lets the champion decide
for the population with the global control group and epsilon-greedy exploration, exactly as the
service does; the simulator then draws what follows. Per round it reports the true value of the
champion's greedy policy as a share of the oracle's (the best eligible arm per customer in truth),
the impact estimate of the previous round's decisions (`nextbest impact`) beside its truth, and the
promotion decision. Simulator only: the truth is what makes the shares computable.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from training.config import DEMO_CONFIG, GREEDY_COLUMN, Config, load_config
from training.data.contract import open_dataset
from training.errors import NextbestError
from training.evaluation.decisions import decide, objective_weights
from training.features.definition import to_matrix
from training.pipelines.impact import impact
from training.pipelines.promote import promote
from training.pipelines.train import train
from training.policy.control import control_mask
from training.registry.bundle import Bundle
from training.registry.mlflow_models import load_bundle
from training.synth.actions import ARMS
from training.synth.live import LiveWorld, draw_decisions, true_net
from training.synth.oracle import feature_ceiling, truth_columns

FIRST_WEEK = 26  # half a year of history before round 0
ROUND_WEEKS = 14  # a 90-day outcome window (13 weeks and a day) is over before the next round

Say = Callable[[str], None]


@dataclass
class Round:
    """What one round did and what it was worth in truth."""

    round: int
    week: int
    decisions: int
    model_version: str  # the champion that decided ("" in round 0: random exploration)
    promotion: str  # the gate's verdict on this round's candidate
    value_share: float  # the greedy policy's true value / the oracle's (NaN in round 0)
    true_value: float  # per decidable customer, money over doing nothing
    oracle_value: float
    impact: float = float("nan")  # estimate of the previous round's decisions, per decision
    impact_ci: float = float("nan")
    impact_truth: float = float("nan")
    ceiling_share: float = float("nan")  # what these features allow (synth.oracle.feature_ceiling)


@dataclass
class LoopResult:
    rounds: list[Round] = field(default_factory=list)
    last_impact: tuple[float, float, float] = (np.nan, np.nan, np.nan)  # of the final round


def loop_config(out: Path) -> Path:
    """The demo config for the loop, in `out`: automatic snapshot dates (the simulated calendar
    moves); no text model and no unpriced `visit` outcome (they cost training time and earn no
    money here); and the gate on decision value alone, since each version's score metrics are
    measured on its own, growing data and do not compare across rounds (`promotion.tolerance` 1)."""
    data = yaml.safe_load(DEMO_CONFIG.read_text())
    data["snapshots"] = {"as_of": "auto"}
    data["outcomes"].pop("visit", None)
    data["text"] = {"enabled": False}
    data["promotion"] = {"tolerance": 1.0, "max_value_loss": 0.0}
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO_CONFIG.parent / data["actions"], out / data["actions"])
    path = out / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_loop(
    rounds: int,
    out: Path,
    customers: int = 6000,
    seed: int = 7,
    exploration: float = 0.2,
    say: Say | None = None,
) -> LoopResult:
    """Round 0 then `rounds` learning rounds; MLflow runs go to a store of their own in `out`."""
    if rounds < 1:
        raise NextbestError("loop: --rounds must be at least 1")
    note = say or (lambda _m: None)
    out = Path(out)
    config_path = loop_config(out)
    config = load_config(config_path)
    with _own_store(out):
        return _run(rounds, out, config_path, config, customers, seed, exploration, note)


@contextmanager
def _own_store(out: Path) -> Iterator[None]:
    """MLflow at `out/mlflow.db` for the loop's duration (its versions never touch yours); the
    environment's store and experiment (MLflow keeps both in variables) come back after."""
    import mlflow

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME")
    before = {name: os.environ.get(name) for name in names}
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{(out / 'mlflow.db').resolve()}"
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before["MLFLOW_TRACKING_URI"])  # type: ignore[arg-type]
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _run(
    rounds: int, out: Path, config_path: Path, config: Config, customers: int, seed: int,
    exploration: float, note: Say,
) -> LoopResult:  # fmt: skip
    weeks = FIRST_WEEK + ROUND_WEEKS * (rounds + 1) + 1
    world = LiveWorld.create(customers, seed=seed, weeks=weeks, truth_reps=4)
    rng = np.random.default_rng([seed, 19])
    result = LoopResult()
    previous: tuple[pd.DataFrame, float] | None = None
    for r in range(rounds + 1):
        world.advance(FIRST_WEEK + ROUND_WEEKS * r)
        data = world.write(out / "data")
        step = Round(r, world.week, 0, "", "round 0 explores", np.nan, np.nan, np.nan)
        if previous is not None:
            step.impact, step.impact_ci, step.impact_truth = judge_impact(
                data, config_path, *previous
            )
        if r > 0:
            note(f"round {r}: training on {sum(len(e) for e in world.exposures):,} exposures")
            version = train(data, config_path).version
            gate = promote(version, config_path=config_path, data=data)
            step.promotion = f"v{version}: {gate.reason}"
        previous = decide_round(world, data, config, step, rng, exploration if r else 1.0)
        result.rounds.append(step)
        note(_line(step))
    world.advance(FIRST_WEEK + ROUND_WEEKS * (rounds + 1))
    assert previous is not None
    result.last_impact = judge_impact(world.write(out / "data"), config_path, *previous)
    return result


def decide_round(
    world: LiveWorld, data: Path, config: Config, step: Round, rng: np.random.Generator,
    epsilon: float,
) -> tuple[pd.DataFrame, float]:  # fmt: skip
    """The champion's decisions (uniformly random ones when epsilon is 1) for every decidable
    customer, put in force in the world; fills the round's truth; returns (the logged decisions,
    their true incremental value per decision in the impact's money)."""
    pos = world.decidable()
    ids = world.ids(pos)
    catalog_ids = list(config.catalog.ids)
    arm_of = [ARMS.index(a) for a in catalog_ids]  # catalog order -> simulator arm
    truth = world.truth(pos)
    if epsilon >= 1.0:
        allowed = np.ones((len(pos), len(catalog_ids)), dtype=bool)
        greedy = np.zeros(len(pos), dtype=np.int64)
        weights = {"value": np.ones(len(pos))}
        version = ""
    else:
        bundle = load_bundle(None)
        version = bundle.version or ""
        allowed, greedy, weights, X = champion_decisions(data, world.today, bundle, ids,
                                                         catalog_ids)  # fmt: skip
    cost = {a.id: a.cost for a in config.catalog.actions}
    costs = np.array([cost[a] for a in ARMS[1:]])  # simulator order
    columns = [0, *arm_of]  # catalog order, 0 = nothing
    net = true_net(truth, costs, weights_by_prefix(config, weights))[:, columns]
    eligible = np.column_stack([np.ones(len(pos), dtype=bool), allowed])
    oracle = float(np.mean(np.max(np.where(eligible, net, -np.inf), axis=1)))
    probs = exploration_probs(greedy, eligible, epsilon)
    policy = float(np.mean(net[np.arange(len(pos)), greedy]))
    step.decisions, step.model_version = len(pos), version
    if epsilon >= 1.0:  # round 0: the value of random exploration itself
        policy = float(np.mean((probs * net).sum(axis=1)))
    step.true_value, step.oracle_value = policy, oracle
    step.value_share = step.true_value / oracle if oracle > 0 else np.nan
    if epsilon < 1.0 and oracle > 0:
        step.ceiling_share = feature_ceiling(X, net, eligible)
    share, salt = config.decisioning.control_share, config.decisioning.control_salt
    control = control_mask(ids, share, salt)
    arms, propensity = draw_decisions(probs, control, share, rng)
    channel = np.where(rng.random(len(pos)) < 0.5, "app", "email")
    logged = {"channel": channel, "model_version": np.full(len(pos), version or "explore"),
              "control_group": control}  # fmt: skip
    if epsilon < 1.0:  # round 0's uniform exploration has no greedy action: left missing
        logged[GREEDY_COLUMN] = np.asarray(ARMS)[np.asarray(columns)[greedy]]
    world.decide(pos, np.asarray(columns)[arms], propensity, **logged)
    money = true_net(truth, costs, {"value": 1.0})[:, columns]
    return world.exposures[-1], float(np.mean((probs * money).sum(axis=1)))


def champion_decisions(
    data: Path, today: pd.Timestamp, bundle: Bundle, ids: np.ndarray, catalog_ids: list[str]
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """(allowed (n, k), greedy arm per customer (0 = nothing), money weights per outcome, the
    feature matrix) of the champion for these customers, from their features as of today (the
    serving decision code)."""
    with open_dataset(data).connect() as con:
        every = bundle.builder.transform(con, as_of=today.to_pydatetime())
    rows = every.set_index("customer_id").loc[ids].reset_index()
    X = to_matrix(bundle.prepare(rows), list(bundle.builder.feature_names_))
    d = decide(bundle, rows, X, catalog_ids)
    return d.allowed, d.learned, objective_weights(bundle, d.scores, len(rows)), X


def weights_by_prefix(config: Config, weights: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Money weights per truth prefix (value, churn, satisfaction) from weights per outcome."""
    prefixes = truth_columns(config)
    return {prefixes[o]: w for o, w in weights.items() if o in prefixes}


def exploration_probs(greedy: np.ndarray, eligible: np.ndarray, epsilon: float) -> np.ndarray:
    """The service's epsilon-greedy: the greedy arm with 1 - epsilon, else uniform over the
    eligible arms and nothing (column 0)."""
    uniform = eligible / eligible.sum(axis=1, keepdims=True)
    probs = epsilon * uniform
    probs[np.arange(len(greedy)), greedy] += 1.0 - epsilon
    return probs


def judge_impact(
    data: Path, config_path: Path, decisions: pd.DataFrame, truth: float
) -> tuple[float, float, float]:
    """`nextbest impact` on one round's decisions: (estimate, 95% half-width, truth)."""
    result = impact(data, config_path, decisions=decisions)
    overall = result.tables["overall"].iloc[0]
    return float(overall["incremental_value"]), float(overall["ci"]), truth


def _line(step: Round) -> str:
    share = "" if np.isnan(step.value_share) else f"{step.value_share:6.1%} of the oracle"
    if np.isfinite(step.ceiling_share):
        share += f" (these features allow {step.ceiling_share:.1%})"
    impact_text = ""
    if np.isfinite(step.impact):
        impact_text = (f"; impact of round {step.round - 1}: {step.impact:+.2f} ± {step.impact_ci:.2f}"
                       f" (truth {step.impact_truth:+.2f})")  # fmt: skip
    return f"round {step.round} (week {step.week}, {datetime.now():%H:%M:%S}): {share}{impact_text}"
