"""Uplift training: four meta-learners per outcome, the best chosen honestly on held-out customers.

For each configured outcome with enough observed labels, S-, T-, X- and DR-learners are fitted on
70% of the customers' exposures and judged on the other 30% by the doubly-robust (DR) value of the
policy each induces — "the action with the highest predicted uplift if it is positive, else
control" — with the Qini coefficient of every action beside it. The winner is refitted on every
exposure and joins the bundle.

Orientation: every criterion is "greater is better". For the churn outcome the learners model
churn itself (so `predict` stays the uplift on churn, which serving.value negates), but policies
and metrics use retention, 1 − churn: a policy's `dr_value` is then its retention rate.

The DR value needs the expected outcome of each held-out row under each arm; it comes from the
T-learner fitted on the training part (never on the rows it judges), shared by all four learners
so they are compared on the same footing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from training.config import Config, OutcomeSpec
from training.errors import NextbestError
from training.exposures import CONTROL, build_exposure_set, split_exposures, uplift_arrays
from training.features import FeatureBuilder
from training.policy_eval import dr_value, qini_coefficient
from training.uplift import LEARNERS, TLearner, UpliftLearner

# Small, fast LightGBM bases: 200k exposures x 5 actions, 4 outcomes: about 2.5 min on 2 cores.
FAST_PARAMS: dict[str, Any] = {
    "n_estimators": 60,
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_child_samples": 50,
    "n_jobs": 2,
    "random_state": 0,
}
MIN_LABELS = 200  # labelled exposures an outcome needs before any learner is fitted on it
MIN_CONTROL = 20  # control rows (in training and in the held-out part) needed to estimate uplift


@dataclass
class UpliftResult:
    """The chosen learner per outcome (refitted on every exposure), the held-out comparison of
    all learners (one row per outcome x learner), and outcomes skipped with the reason."""

    learners: dict[str, UpliftLearner]
    comparison: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    exposures: int = 0


# ---------------------------------------------------------------------------------------------
# pure helpers


def orientation(spec: OutcomeSpec) -> tuple[float, float]:
    """(sign, offset) mapping an outcome to "greater is better": y' = offset + sign * y; churn
    becomes retention 1 − churn (still binary, so Qini keeps its meaning)."""
    return (-1.0, 1.0) if spec.role == "churn" else (1.0, 0.0)


def policy_actions(uplift: np.ndarray, actions: list[str]) -> np.ndarray:
    """Per row: the action with the highest (oriented) uplift if it is positive, else control."""
    if uplift.shape[1] == 0:
        return np.full(len(uplift), CONTROL)
    best = np.argmax(uplift, axis=1)
    chosen = np.asarray(actions, dtype=object)[best]
    return np.where(uplift[np.arange(len(uplift)), best] > 0, chosen, CONTROL).astype(str)


def qini_per_action(
    uplift: np.ndarray, actions: list[str], treatment: np.ndarray, y: np.ndarray
) -> dict[str, float]:
    """Qini coefficient of each action's (oriented) uplift over its rows and the control rows;
    NaN when that comparison has no effect to rank (no treated rows, no responders)."""
    out = {}
    for j, action in enumerate(actions):
        rows = (treatment == action) | (treatment == CONTROL)
        if not np.any(treatment == action):
            out[action] = float("nan")
            continue
        try:
            out[action] = qini_coefficient(uplift[rows, j], treatment[rows] == action, y[rows])
        except NextbestError:
            out[action] = float("nan")
    return out


def skip_reason(treatment: np.ndarray, y: np.ndarray, holdout: np.ndarray) -> str | None:
    """Why an outcome's labelled exposures cannot support uplift learning, or None."""
    if len(y) < MIN_LABELS:
        return f"only {len(y)} labelled exposures (need {MIN_LABELS})"
    if len(np.unique(y)) < 2:
        return "the outcome is constant over the exposures"
    for part, name in ((~holdout, "training"), (holdout, "held-out")):
        if int(np.sum(treatment[part] == CONTROL)) < MIN_CONTROL:
            return f"fewer than {MIN_CONTROL} control exposures in the {name} part"
        if not np.any(treatment[part] != CONTROL):
            return f"no treated exposures in the {name} part"
    return None


def make_learner(name: str, categorical: list[int], params: dict[str, Any]) -> UpliftLearner:
    """A fresh learner of class `name` (a key of uplift.LEARNERS)."""
    return LEARNERS[name](categorical=categorical, **params)


# ---------------------------------------------------------------------------------------------
# selection for one outcome


def compare_learners(
    X: np.ndarray,
    treatment: np.ndarray,
    y: np.ndarray,
    propensity: np.ndarray,
    holdout: np.ndarray,
    spec: OutcomeSpec,
    categorical: list[int],
    params: dict[str, Any],
) -> pd.DataFrame:
    """One row per learner: DR value (and 95% CI half-width) of its policy on the held-out rows,
    and the Qini coefficient of each action; learners fitted on the other rows only."""
    train = ~holdout
    fitted = {
        name: make_learner(name, categorical, params).fit(
            X[train], treatment[train], y[train], propensity[train]
        )
        for name in LEARNERS
    }
    outcome_model = fitted["TLearner"]
    assert isinstance(outcome_model, TLearner)
    actions = list(outcome_model.actions_)
    # held-out rows of an arm never seen in training cannot be judged
    held = holdout & np.isin(treatment, [CONTROL, *actions])
    sign, offset = orientation(spec)
    y_held = offset + sign * y[held]
    mu = offset + sign * outcome_model.predict_outcomes(X[held])
    rows = []
    for name, learner in fitted.items():
        uplift = sign * learner.predict(X[held])
        policy = policy_actions(uplift, actions)
        value = dr_value(
            policy, treatment[held], y_held, propensity[held], mu, arms=[CONTROL, *actions]
        )
        qini = qini_per_action(uplift, actions, treatment[held], y_held)
        rows.append(
            {
                "learner": name,
                "dr_value": value.value,
                "ci": value.ci_half_width,
                "treated_share": float(np.mean(policy != CONTROL)),
            }
            | {f"qini_{a}": q for a, q in qini.items()}
        )
    return pd.DataFrame(rows)


def choose(table: pd.DataFrame) -> str:
    """The learner with the highest DR policy value (ties: the first listed)."""
    values = table["dr_value"].to_numpy(dtype=np.float64)
    return str(table["learner"].iloc[int(np.argmax(values))])


# ---------------------------------------------------------------------------------------------
# orchestration


def train_uplift(
    con: duckdb.DuckDBPyConnection,
    builder: FeatureBuilder,
    config: Config,
    params: dict[str, Any] | None = None,
) -> UpliftResult | None:
    """Learn, compare and choose uplift models for every outcome the exposures support.

    None when the catalog is empty (scores only) or the data set has no exposures.
    """
    if not config.catalog.actions:
        return None
    (count,) = con.execute("SELECT count(*) FROM exposures").fetchall()[0]
    if count == 0:
        return None
    params = FAST_PARAMS | (params or {})
    exposures = build_exposure_set(con, builder, config)
    frame, names = exposures.frame, exposures.feature_names
    cats = exposures.categorical
    learners: dict[str, UpliftLearner] = {}
    tables, skipped = [], {}
    for outcome, spec in config.outcomes.items():
        labelled = frame[frame[outcome].notna()]
        X, treatment, y, propensity = uplift_arrays(labelled, outcome, names)
        holdout = np.asarray(split_exposures(labelled), dtype=bool)
        reason = skip_reason(treatment, y, holdout)
        if reason is not None:
            skipped[outcome] = reason
            continue
        table = compare_learners(X, treatment, y, propensity, holdout, spec, cats, params)
        best = choose(table)
        table.insert(0, "outcome", outcome)
        table["chosen"] = table["learner"] == best
        tables.append(table)
        learners[outcome] = make_learner(best, cats, params).fit(X, treatment, y, propensity)
    comparison = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return UpliftResult(learners, comparison, skipped, exposures=len(frame))


def log_uplift_run(result: UpliftResult) -> str:
    """A nested MLflow run "uplift" under the active training run: the chosen learner per outcome
    (params), `<outcome>.<learner>.<metric>` metrics, and the comparison as CSV and JSON."""
    import mlflow

    if mlflow.active_run() is None:
        raise RuntimeError("log_uplift_run needs an active training_run")
    with mlflow.start_run(run_name="uplift", nested=True) as run:
        mlflow.log_params(
            {f"{o}.learner": type(m).__name__ for o, m in result.learners.items()}
            | {"exposures": result.exposures}
            | {f"skipped.{o}": why[:500] for o, why in result.skipped.items()}
        )
        metrics: dict[str, float] = {}
        for record in result.comparison.to_dict("records"):
            prefix = f"{record['outcome']}.{record['learner']}"
            for key, value in record.items():
                if key not in ("outcome", "learner", "chosen") and np.isfinite(value):
                    metrics[f"{prefix}.{key}"] = float(value)
        mlflow.log_metrics(metrics)
        mlflow.log_text(result.comparison.to_csv(index=False), "uplift/comparison.csv")
        records = json.loads(result.comparison.to_json(orient="records"))
        summary = {"comparison": records, "skipped": result.skipped}
        mlflow.log_dict(summary, "uplift/comparison.json")
    return str(run.info.run_id)
