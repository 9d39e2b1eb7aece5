"""Honest evaluation of a bundle's decisions on held-out exposures (`nextbest evaluate`, issue 4).

The rows are the exposures of the evaluation customers (`training.data.exposures.evaluation_exposures`):
no model was fitted on them and the uplift learners were neither chosen nor calibrated on them
(only the score models' early stopping and calibration saw their snapshot rows). On them the
learned policy — rank 1 of training.policy.arbitration over the bundle's net values, exactly what
`nextbest score` and the service recommend — is compared with the baselines every CX team knows:
nothing, a random action, the best single action for everyone and "target the highest churn
risk". Policy values are money per customer, incremental over doing nothing
(training.evaluation.value_estimates), by DR and IPS with 95% intervals; the outcome models behind DR are
S-learners fitted on every other customer's exposures, independent of the bundle's learners.
On simulator data the truth gives each policy's true value and the oracle's.

Only actions that were exposed can be judged: the others are left out of every policy here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from training.config import CONTROL, OutcomeSpec
from training.data.exposures import build_exposure_set, evaluation_exposures
from training.errors import NextbestError
from training.evaluation.value_estimates import (
    LoggedOutcomes,
    incremental_value,
    restrict,
    true_incremental_value,
)
from training.features.definition import categorical_names, to_matrix
from training.policy.arbitration import Candidates, arbitrate, eligibility_mask, investment_curve
from training.policy.value import net_value
from training.registry.bundle import Bundle
from training.synth.oracle import load_exposure_truth, true_net_values, truth_columns
from training.uplift.fit import FAST_PARAMS, base_objective, orientation
from training.uplift.learners import SLearner
from training.uplift.metrics import auuc, or_nan, qini_coefficient, qini_curve, uplift_by_decile

CHURN_TARGET_SHARE = (
    0.2  # share targeted by "highest churn risk" when the learned policy treats nobody
)
INVESTMENT_POINTS = 1001  # points kept of the investment curve (one per pair would be millions)
MIN_ROWS = 50  # held-out rows an (outcome, action) comparison needs for Qini and calibration


def verdict(value: float, half_width: float, exposures: int) -> str:
    """What a DR estimate of the learned policy (incremental over doing nothing, with its 95%
    half-width) lets a CX team conclude, in one sentence."""
    if not (np.isfinite(value) and np.isfinite(half_width)):
        return "no estimate: the held-out exposures cannot judge the learned policy"
    low, high = value - half_width, value + half_width
    if low > 0:
        return "the learned policy earns more than doing nothing (95% confidence)"
    if high < 0:
        return "the learned policy loses money against doing nothing (95% confidence): do not deploy it"
    return (
        f"not distinguishable from doing nothing on {exposures:,} held-out exposures "
        f"(95% interval {low:+.2f} to {high:+.2f} per customer): more exposures, a randomized "
        "control group above all, would settle it"
    )


@dataclass
class Evaluation:
    """Everything the ROI report shows; every table is plain pandas."""

    model_version: str
    currency: str
    exposures: int
    arms: list[str]
    has_truth: bool
    policies: pd.DataFrame  # one row per policy
    actions: pd.DataFrame  # the learned policy per action: volume, spend, value, ROI
    qini: pd.DataFrame  # outcome, action_id, qini, auuc, n_treated, n_control
    curves: pd.DataFrame  # outcome, action_id, share_targeted, qini (normalised by treated count)
    calibration: pd.DataFrame  # outcome, action_id, decile, predicted, observed, observed_se
    investment: pd.DataFrame  # spend and incremental value per customer, greedy by ROI

    def verdict(self) -> str:
        """`verdict` of the learned policy's DR value."""
        learned = next(r for r in self.policies.to_dict("records") if r["policy"] == "learned")
        return verdict(float(learned["dr_value"]), float(learned["dr_ci"]), self.exposures)

    def headline(self) -> dict[str, float]:
        """Flat metrics for MLflow: `policy.<name>.<column>`."""
        out = {}
        for row in self.policies.to_dict("records"):
            for key in ("dr_value", "dr_ci", "ips_value", "ips_ci", "true_value", "oracle_share",
                        "truth_rows_dr_value", "truth_rows_dr_ci"):  # fmt: skip
                value = row.get(key)
                if value is not None and np.isfinite(value):
                    out[f"policy.{row['policy']}.{key}"] = float(value)
        return out


@dataclass(frozen=True)
class HeldOut:
    """The held-out exposures as arrays: arm indices over `arms` (0 = control)."""

    frame: pd.DataFrame
    X: np.ndarray
    treatment: np.ndarray
    propensity: np.ndarray
    labels: dict[str, np.ndarray]


# ---------------------------------------------------------------------------------------------
# building blocks


def objective_weights(
    bundle: Bundle, scores: dict[str, np.ndarray], n: int
) -> dict[str, np.ndarray]:
    """Money per unit of each outcome for n rows, read off training.policy.value.net_value itself (a unit
    uplift on one outcome at zero cost), so evaluation and decisions share one objective."""
    weights = {}
    for outcome in bundle.config.outcomes:
        unit = {outcome: np.ones((n, 1))}
        value = net_value(
            unit, scores, np.zeros(1), bundle.config.objective, bundle.config.outcomes
        )
        weight = value.expected_value[:, 0]
        if np.any(weight != 0):
            weights[outcome] = np.nan_to_num(weight)
    return weights


def nuisance_outcomes(
    frame: pd.DataFrame, names: list[str], held: np.ndarray, outcomes: dict[str, OutcomeSpec],
    arms: list[str], categorical: list[int],
) -> dict[str, np.ndarray]:  # fmt: skip
    """Per outcome, (n_held, arms) expected outcome under each arm from an S-learner fitted on
    the training customers' exposures (never on the rows it predicts), with the objective the
    uplift learners use for that outcome."""
    X_held = to_matrix(frame[held], names)
    mu = {}
    for outcome, spec in outcomes.items():
        train = (~held) & frame[outcome].notna().to_numpy()
        rows = frame[train]
        y = rows[outcome].to_numpy(dtype=np.float64)
        objective = base_objective(spec, y)
        model = SLearner(categorical=categorical, **FAST_PARAMS, objective=objective).fit(
            to_matrix(rows, names),
            rows["action_id"].to_numpy(dtype=str),
            y,
            rows["propensity"].to_numpy(dtype=np.float64),
        )
        predicted = model.predict_outcomes(X_held)
        column = {a: j for j, a in enumerate([CONTROL, *model.actions_])}
        mu[outcome] = np.column_stack(
            [predicted[:, column[a]] if a in column else predicted[:, 0] for a in arms]
        )
    return mu


def learned_arms(candidates: Candidates) -> np.ndarray:
    """Rank 1 of training.policy.arbitration per row as an arm index (0 = do nothing)."""
    ranking = arbitrate(candidates, max_actions=1)
    arms = np.zeros(candidates.expected_value.shape[0], dtype=np.int64)
    arms[ranking.customer] = ranking.action + 1
    return arms


def baseline_policies(
    action_ids: list[str],
    learned: np.ndarray,
    allowed: np.ndarray,
    churn: np.ndarray | None,
    retention_uplift: np.ndarray | None,
    value_of: Any,
    seed: int = 0,
) -> dict[str, tuple[np.ndarray, str]]:
    """The baselines as arm-index arrays with a one-line description each.

    `allowed` (n, k) eligible and exposed; `value_of(arms)` is the DR value of a policy, used
    to pick the best single action (with hindsight on these rows: an optimistic baseline).
    """
    n, k = allowed.shape
    rng = np.random.default_rng(seed)
    out = {"nothing": (np.zeros(n, dtype=np.int64), "no action for anyone")}
    draw = np.where(allowed, rng.random((n, k)), -1.0)  # uniform among the allowed actions
    choice = np.where(allowed.any(axis=1), draw.argmax(axis=1) + 1, 0).astype(np.int64)
    out["random"] = (choice, "a uniformly random eligible action for everyone")
    singles = {j: np.where(allowed[:, j], j + 1, 0).astype(np.int64) for j in range(k)}
    if singles:
        best = max(singles, key=lambda j: value_of(singles[j]))
        out["best_single"] = (singles[best], f"{action_ids[best]} for everyone eligible")
    eligible = allowed.sum(axis=0)
    if churn is not None and retention_uplift is not None and eligible.any():
        share = float(np.mean(learned > 0)) or CHURN_TARGET_SHARE
        total = np.where(allowed, retention_uplift, 0.0).sum(axis=0)
        mean_uplift = np.where(eligible > 0, total / np.maximum(eligible, 1), -np.inf)
        action = int(np.argmax(mean_uplift))
        top = churn >= np.quantile(churn, 1 - share)
        arms = np.where(top & allowed[:, action], action + 1, 0).astype(np.int64)
        text = f"{action_ids[action]} (most retention on average) for the {share:.0%} highest churn risk"
        out["churn_targeting"] = (arms, text)
    return out


def ranking_quality(
    bundle: Bundle, uplift: dict[str, np.ndarray], held: HeldOut, arms: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Qini/AUUC, Qini curves and uplift calibration per (outcome, exposed action), oriented so
    that greater is better (retention for churn), on the held-out rows of the action + control."""
    table, curves, calibration = [], [], []
    for outcome, predicted in uplift.items():
        sign, offset = orientation(bundle.config.outcomes[outcome])
        y_all = held.labels[outcome]
        for j, action in enumerate(arms[1:]):
            rows = np.isin(held.treatment, [0, j + 1]) & ~np.isnan(y_all)
            treated = held.treatment[rows] == j + 1
            if rows.sum() < MIN_ROWS or treated.all() or not treated.any():
                continue
            score = sign * predicted[rows, j]
            y = offset + sign * y_all[rows]
            key = {"outcome": outcome, "action_id": action}
            binary = outcome_is_binary(y)  # the normalised areas assume a 0/1 response
            qini = or_nan(qini_coefficient, score, treated, y) if binary else np.nan
            table.append(key | {"qini": qini, "auuc": or_nan(auuc, score, treated, y) if binary else np.nan,
                                "n_treated": int(treated.sum()), "n_control": int((~treated).sum())})  # fmt: skip
            x, curve = qini_curve(score, treated, y)
            keep = np.unique(np.linspace(0, len(x) - 1, 101).astype(int))
            curves.append(pd.DataFrame(key | {"share_targeted": x[keep] / x[-1],
                                              "qini": curve[keep] / max(treated.sum(), 1)}))  # fmt: skip
            deciles = uplift_by_decile(score, treated, y, held.propensity[rows])
            calibration.append(deciles.assign(**key))
    empty = pd.DataFrame()
    return (
        pd.DataFrame(table),
        pd.concat(curves, ignore_index=True) if curves else empty,
        pd.concat(calibration, ignore_index=True) if calibration else empty,
    )


def outcome_is_binary(y: np.ndarray) -> bool:
    """Qini's normalisation assumes a 0/1 response."""
    return bool(np.isin(np.unique(y), (0.0, 1.0)).all())


def per_action(
    learned: np.ndarray, expected: np.ndarray, cost: np.ndarray, arms: list[str], value_of: Any
) -> pd.DataFrame:
    """The learned policy per action: customers, spend, predicted and DR-estimated net value."""
    rows = []
    n = len(learned)
    for j, action in enumerate(arms[1:], start=1):
        chosen = learned == j
        if not chosen.any():
            continue
        dr, ci = value_of(np.where(chosen, j, 0).astype(np.int64))
        spend = float(cost[j - 1] * chosen.sum())
        rows.append({
            "action_id": action, "customers": int(chosen.sum()), "share": float(chosen.mean()),
            "spend": spend, "predicted_value": float(expected[chosen, j - 1].sum()),
            "dr_value": dr * n, "dr_ci": ci * n,
            "roi": dr * n / spend if spend else np.nan,
        })  # fmt: skip
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------
# orchestration


def held_out_exposures(
    con: duckdb.DuckDBPyConnection, bundle: Bundle
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """Every exposure with features as of it and labels, the evaluation mask, the exposed actions."""
    exposures = build_exposure_set(con, bundle.builder, bundle.config)
    frame = exposures.frame
    held = np.asarray(evaluation_exposures(frame), dtype=bool)
    return frame, held, exposures.actions


@dataclass(frozen=True)
class Decisions:
    """What the bundle decides for the held-out rows: scores, uplift, net values, the allowed
    (eligible and exposed) actions and the learned policy's arm per row."""

    scores: dict[str, np.ndarray]
    uplift: dict[str, np.ndarray]
    cost: np.ndarray
    expected: np.ndarray
    allowed: np.ndarray
    learned: np.ndarray


def decide(bundle: Bundle, rows: pd.DataFrame, X: np.ndarray, exposed: list[str]) -> Decisions:
    """The bundle's decisions for held-out rows, by the serving code (value, eligibility, rank)."""
    catalog, config = bundle.config.catalog, bundle.config
    every = bundle.score_matrix(X)  # NaN for a score without a model, as in batch scoring
    scores = {k: v for k, v in every.items() if not np.isnan(v).all()}
    uplift = bundle.uplift_matrix(X)
    cost = np.array([a.cost for a in catalog.actions], dtype=np.float64)
    expected = net_value(uplift, scores, cost, config.objective, config.outcomes).expected_value
    namespace = pd.concat([rows[list(bundle.builder.feature_names_)], pd.DataFrame(every)], axis=1)
    allowed = eligibility_mask(catalog, namespace) & np.isin(catalog.ids, exposed)[None, :]
    learned = learned_arms(Candidates(catalog.ids, cost, expected, allowed))
    return Decisions(scores, uplift, cost, expected, allowed, learned)


def value_table(policies: dict[str, tuple[np.ndarray, str]], value_of: Any) -> pd.DataFrame:
    """One row per policy: share treated, DR and IPS value per customer with 95% half-widths."""
    table = []
    for name, (policy, text) in policies.items():
        dr, dr_ci = value_of(policy)
        ips, ips_ci = value_of(policy, "ips")
        table.append({"policy": name, "description": text, "treated_share": float(np.mean(policy > 0)),
                      "dr_value": dr, "dr_ci": dr_ci, "ips_value": ips, "ips_ci": ips_ci})  # fmt: skip
    return pd.DataFrame(table)


def investment_table(d: Decisions, n: int) -> pd.DataFrame:
    """The investment curve per customer, thinned to INVESTMENT_POINTS points."""
    curve = investment_curve(np.where(d.allowed, d.expected, -np.inf), d.cost)
    keep = np.unique(np.linspace(0, len(curve.spend) - 1, INVESTMENT_POINTS).astype(int))
    return pd.DataFrame({"spend": curve.spend[keep] / n, "value": curve.value[keep] / n})


def evaluate_bundle(
    con: duckdb.DuckDBPyConnection, bundle: Bundle, truth_dir: Path | None = None, seed: int = 0
) -> Evaluation:
    """Evaluate `bundle` on the held-out exposures of the data set behind `con`."""
    catalog, config = bundle.config.catalog, bundle.config
    if not bundle.uplift or not catalog.actions:
        raise NextbestError("evaluate: the bundle has no uplift models or no actions to judge")
    frame, held_mask, exposed = held_out_exposures(con, bundle)
    if held_mask.sum() < MIN_ROWS:
        raise NextbestError(
            f"evaluate: only {held_mask.sum()} held-out exposures (need {MIN_ROWS})"
        )
    names, arms = list(bundle.builder.feature_names_), [CONTROL, *catalog.ids]
    rows = frame[held_mask].reset_index(drop=True)
    X = to_matrix(bundle.prepare(rows), names)
    held = HeldOut(
        rows, X, rows["action_id"].map({a: i for i, a in enumerate(arms)}).to_numpy(dtype=np.int64),
        rows["propensity"].to_numpy(dtype=np.float64),
        {o: rows[o].to_numpy(dtype=np.float64) for o in config.outcomes},
    )  # fmt: skip
    d = decide(bundle, rows, X, exposed)
    weights = objective_weights(bundle, d.scores, len(rows))
    categorical = set(categorical_names(rows, names))
    cats = [j for j, name in enumerate(names) if name in categorical]
    specs = {o: bundle.config.outcomes[o] for o in weights}
    mu = nuisance_outcomes(frame, names, held_mask, specs, arms, cats)
    logged = LoggedOutcomes(
        held.treatment, held.propensity, held.labels, mu, weights, np.r_[0.0, d.cost]
    )

    def value_of(policy: np.ndarray, estimator: str = "dr") -> tuple[float, float]:
        return tuple(incremental_value(policy, logged, estimator))  # type: ignore[return-value]

    churn = config.outcome_for_role("churn")
    retention = -d.uplift[churn[0]] if churn is not None and churn[0] in d.uplift else None
    policies = {"learned": (d.learned, "rank 1 of nextbest's net-value arbitration")}
    policies |= baseline_policies(list(catalog.ids), d.learned, d.allowed,
                                  d.scores.get("churn_probability"), retention,
                                  lambda p: value_of(p)[0], seed)  # fmt: skip
    table = value_table(policies, value_of)
    if truth_dir is not None:
        truth = load_exposure_truth(truth_dir, rows)
        true_net = true_net_values(truth, arms, weights, truth_columns(config), np.r_[0.0, d.cost])
        on_truth = restrict(logged, ~np.isnan(true_net).any(axis=1))
        table = with_truth(
            table, policies, true_net, d.allowed, lambda p: incremental_value(p, on_truth)
        )
    qini, curves, calibration = ranking_quality(bundle, d.uplift, held, arms)
    return Evaluation(
        model_version=bundle.version or "", currency=config.objective.currency,
        exposures=len(rows), arms=arms, has_truth=truth_dir is not None, policies=table,
        actions=per_action(d.learned, d.expected, d.cost, arms, value_of), qini=qini,
        curves=curves, calibration=calibration, investment=investment_table(d, len(rows)),
    )  # fmt: skip


def with_truth(
    table: pd.DataFrame,
    policies: dict[str, tuple[np.ndarray, str]],
    true_net: np.ndarray,
    allowed: np.ndarray,
    dr_on_truth_rows: Callable[[np.ndarray], tuple[float, float]],
) -> pd.DataFrame:
    """Add each policy's true value (rows with truth only) and its share of the oracle's, the
    best eligible arm per row in truth, itself added as the row "oracle"; and the DR estimate
    over those same rows (`dr_on_truth_rows(policy)` -> (value, ci)), which is what the true
    value can fairly be compared with when the truth covers only some customers."""
    known = ~np.isnan(true_net).any(axis=1)
    net = true_net[known]
    eligible = np.column_stack([np.ones(known.sum(), bool), allowed[known]])
    oracle_arms = np.argmax(np.where(eligible, net, -np.inf), axis=1)
    oracle = true_incremental_value(oracle_arms, net)
    true_values = {name: true_incremental_value(p[known], net) for name, (p, _) in policies.items()}
    dr = {name: dr_on_truth_rows(p[known]) for name, (p, _) in policies.items()}
    table = table.assign(
        truth_rows_dr_value=table["policy"].map({k: v[0] for k, v in dr.items()}),
        truth_rows_dr_ci=table["policy"].map({k: v[1] for k, v in dr.items()}),
        true_value=table["policy"].map(true_values),
        oracle_share=table["policy"].map(true_values) / oracle if oracle > 0 else np.nan,
        truth_rows=int(known.sum()),
    )
    row = {"policy": "oracle", "description": "the best arm per customer, from the simulator's truth",
           "treated_share": float(np.mean(oracle_arms > 0)), "true_value": oracle,
           "oracle_share": 1.0, "truth_rows": int(known.sum())}  # fmt: skip
    return pd.concat([table, pd.DataFrame([row])], ignore_index=True)
