"""A simulated population that responds to the decisions it is given (the closed loop, issue 19).

`nextbest synth` simulates a whole calendar with its campaigns fixed in advance. Here the calendar
is stepped week by week, and at any week the caller (the product) can give actions to customers:
`decide` puts them in force through the same dynamics (`actions.start_action`), records the
exposures with their propensities and the logged columns the caller passes, and computes their
ground truth (each arm's expected outcomes, `truth.potential_outcomes`) before the effects start.
`write` turns what happened so far into a contract data set. Deterministic by seed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from training.atomic import atomic_directory
from training.config import GREEDY_COLUMN
from training.synth.actions import ARMS, harm_logits, start_action
from training.synth.dynamics import State, initial_state
from training.synth.generate import _customers_table, _events_table, _week_texts
from training.synth.journey import WEEK_S, EventBatch, simulate_week
from training.synth.text import Writers, draw_writers
from training.synth.truth import potential_outcomes
from training.synth.world import Population, WorldConfig, draw_population

MIN_TENURE_WEEKS = 4  # customers decided for: active and signed up at least this long ago


@dataclass
class LiveWorld:
    """One population stepped week by week (`week` is the next week to simulate)."""

    pop: Population
    state: State
    writers: Writers
    cfg: WorldConfig
    seed: int
    rng: np.random.Generator
    text_rng: np.random.Generator
    week: int = 0
    batches: list[EventBatch] = field(default_factory=list)
    texts: list[np.ndarray] = field(default_factory=list)
    exposures: list[pd.DataFrame] = field(default_factory=list)

    @classmethod
    def create(
        cls, customers: int, seed: int = 7, weeks: int = 104, truth_reps: int = 8
    ) -> LiveWorld:
        """A new population over a calendar of `weeks` weeks (late joiners sign up within it)."""
        cfg = replace(WorldConfig(), weeks=weeks, campaigns=(), truth_reps=truth_reps)
        rng = np.random.default_rng([seed, 0, 0])
        text_rng = np.random.default_rng([seed, 0, 2])
        pop = draw_population(rng, 0, customers, cfg)
        writers = draw_writers(text_rng, customers)
        return cls(pop, initial_state(pop), writers, cfg, seed, rng, text_rng)

    def advance(self, to_week: int) -> None:
        """Simulate the weeks up to (not including) `to_week`."""
        while self.week < min(to_week, self.cfg.weeks):
            sat, failures = self.state.sat.copy(), self.state.recent_fail.copy()
            batch = simulate_week(self.pop, self.state, self.week, self.rng, self.week * WEEK_S)
            self.batches.append(batch)
            self.texts.append(_week_texts(self.text_rng, self.writers, batch, sat, failures))
            self.week += 1

    def decidable(self) -> np.ndarray:
        """Positions of the customers who can be decided for this week."""
        old = self.pop.signup_week <= self.week - MIN_TENURE_WEEKS
        return np.flatnonzero(self.state.alive & old)

    @property
    def today(self) -> pd.Timestamp:
        """The start of the next week to simulate: the as-of date of a decision now."""
        return pd.Timestamp(self.cfg.week_start(self.week))

    def ids(self, positions: np.ndarray) -> np.ndarray:
        return self.pop.ids[positions]

    def truth(self, positions: np.ndarray) -> pd.DataFrame:
        """Expected churn, 90-day value and satisfaction of each arm for these customers, were an
        arm given now (columns `<outcome>_<arm>`); no state changes."""
        po = potential_outcomes(
            self.pop.take(positions), self.state.take(positions), self.week,
            self.cfg.truth_reps, self.seed + 7919 * self.week, self.cfg.effect_weeks,
            harm_logits(self.cfg),
        )  # fmt: skip
        return pd.DataFrame(po).assign(customer_id=self.ids(positions))

    def decide(
        self, positions: np.ndarray, arms: np.ndarray, propensity: np.ndarray, **logged: np.ndarray
    ) -> None:
        """Give arm `arms[i]` (an index into ARMS, 0 = control) to customer `positions[i]` now,
        and log it (extra columns in `logged`, e.g. model_version, channel, control_group)."""
        arms = np.asarray(arms, dtype=np.int64)
        for a in range(1, len(ARMS)):
            mask = np.zeros(len(self.pop), dtype=bool)
            mask[positions[arms == a]] = True
            start_action(
                self.pop, self.state, mask, a - 1, self.week, self.cfg.effect_weeks,
                harm_logits(self.cfg),
            )  # fmt: skip
        frame = pd.DataFrame({
            "customer_id": self.ids(positions), "ts": self.today,
            "action_id": np.asarray(ARMS)[arms], "propensity": np.round(propensity, 6),
        })  # fmt: skip
        for name, values in logged.items():
            frame[name] = values
        self.exposures.append(frame)

    def write(self, out: Path) -> Path:
        """The contract data set of everything so far (customers, events, exposures), atomically."""
        if not self.batches:
            raise ValueError("write: advance the world at least one week first")
        batch = EventBatch.concat(self.batches)
        with atomic_directory(Path(out)) as tmp:
            pq.write_table(_customers_table(self.pop, self.cfg), tmp / "customers.parquet")
            events = _events_table(self.pop, batch, self.cfg, np.concatenate(self.texts))
            pq.write_table(events, tmp / "events.parquet")
            exposures = (pd.concat(self.exposures, ignore_index=True) if self.exposures
                         else pd.DataFrame(columns=["customer_id", "ts", "action_id", "propensity"]))  # fmt: skip
            table = pa.Table.from_pandas(exposures, preserve_index=False)
            pq.write_table(table, tmp / "exposures.parquet")
        return Path(out)


def draw_decisions(
    probs: np.ndarray, control_group: np.ndarray, control_share: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Arms (indices into ARMS) drawn from the policy's probabilities `probs` (n, arms), nothing for
    the control group, and each arm's logged propensity, marginal over the control group as the
    service logs it: (1 - share) * policy(arm) + share * [arm is control]."""
    cumulative = probs.cumsum(axis=1)
    u = rng.random(len(probs))[:, None]
    arms = np.minimum((u > cumulative).sum(axis=1), probs.shape[1] - 1)
    arms = np.where(control_group, 0, arms)
    chosen = probs[np.arange(len(probs)), arms]
    return arms, (1 - control_share) * chosen + control_share * (arms == 0)


def true_net(
    truth: pd.DataFrame, arm_costs: np.ndarray, weights: Mapping[str, float | np.ndarray]
) -> np.ndarray:
    """(n, arms) true incremental money of each arm over control per customer of `truth`
    (`LiveWorld.truth`): sum of weight * (outcome_arm - outcome_control) minus the arm's cost;
    `weights` per truth outcome prefix (value, churn, satisfaction), a number or one per
    customer (the churn weight is minus the customer's LTV); column 0 is 0."""
    net = np.zeros((len(truth), len(ARMS)))
    for prefix, weight in weights.items():
        base = truth[f"{prefix}_control"].to_numpy(dtype=np.float64)
        for a, arm in enumerate(ARMS[1:], start=1):
            net[:, a] += np.asarray(weight, dtype=np.float64) * (
                truth[f"{prefix}_{arm}"].to_numpy(dtype=np.float64) - base
            )
    net[:, 1:] -= np.asarray(arm_costs, dtype=np.float64)[None, :]
    return net


@dataclass(frozen=True)
class ProductionMonth:
    """A simulated month of production decisions: the exposures logged and the true incremental
    value per decision of the policy that made them (over doing nothing), overall and per greedy
    action (the policy's most likely arm, logged as `greedy_action` for every customer, the
    control group included): the policy's effect on the customers it wanted that arm for."""

    exposures: pd.DataFrame
    truth: float
    greedy_truth: dict[str, float] = field(default_factory=dict)


def production_month(
    out: Path,
    customers: int,
    seed: int,
    control_group: Callable[[np.ndarray], np.ndarray],
    control_share: float,
    decide_week: int = 30,
    channels: tuple[str, ...] = (),
    model_version: str | None = None,
    log_control_group: bool = False,
) -> ProductionMonth:
    """One week's decisions by a targeting policy with the global control group, their outcomes
    14 weeks on, written to `out` as a data set: what `nextbest impact` should recover.
    `control_group` maps customer ids to the control group's mask (the product's hash, of
    `control_share`); with `channels` (and `model_version`) the decisions log those columns too,
    with `log_control_group` the mask itself. Every decision logs its greedy action."""
    from training.synth.actions import ACTION_COSTS
    from training.synth.campaigns import targeted_probabilities

    world = LiveWorld.create(customers, seed=seed, weeks=decide_week + 15, truth_reps=4)
    world.advance(decide_week)
    pos = world.decidable()
    probs = targeted_probabilities(world.pop.take(pos), world.state.take(pos), world.week)
    control = control_group(world.ids(pos))
    rng = np.random.default_rng(seed)
    arms, propensity = draw_decisions(probs, control, control_share, rng)
    net = true_net(world.truth(pos), np.array(ACTION_COSTS), {"value": 1.0})
    effect = (probs * net).sum(axis=1)  # the policy's expected value over nothing, per customer
    greedy = probs.argmax(axis=1)
    greedy_truth = {ARMS[a]: float(effect[greedy == a].mean()) for a in np.unique(greedy)}
    logged: dict[str, np.ndarray] = {GREEDY_COLUMN: np.asarray(ARMS)[greedy]}
    if log_control_group:
        logged["control_group"] = control
    if channels:
        pick = (rng.random(len(pos)) * len(channels)).astype(np.int64)  # uniform over channels
        logged["channel"] = np.asarray(channels)[pick]
    if model_version is not None:
        logged["model_version"] = np.full(len(pos), model_version)
    world.decide(pos, arms, propensity, **logged)
    world.advance(decide_week + 14)
    world.write(out)
    return ProductionMonth(world.exposures[0], float(effect.mean()), greedy_truth)
