"""Uplift training: an S-learner per outcome, replaced per action only by a learner that proves better.
Outcomes are learned side by side, one per core.

For each configured outcome with enough observed labels, S-, T-, X-, DR- and linear T-learners are fitted on
70% of the customers' exposures (the training customers of the score models too) and judged on
15% of the others (`selection_exposures`), per action, by the doubly-robust (DR) value of the
policies each one's ranking induces — "this action for the top 10%, 20%, ... 90% by predicted
uplift, nothing for the others" — averaged over those budgets, with the Qini coefficient and the DR
value of "where the uplift is positive" beside it. Per action the S-learner serves unless another
learner beats it in a paired comparison on those rows; such a challenger's predictions (T-, X- and
DR-learners' effects are over-dispersed) are shrunk on the same selection rows
(training.uplift.selection), the S-learner's, already shrunk by its trees, are not. The served
learners are refitted on the training and selection customers together.
The last 15% of the customers (`evaluation_exposures`) are never used here, not even to choose:
`nextbest evaluate` judges the bundle on them, so its figures carry no winner's curse.

Orientation: every criterion is "greater is better". For the churn outcome the learners model
churn itself (so `predict` stays the uplift on churn, which training.policy.value negates), but policies
and metrics use retention, 1 − churn: a policy's `dr_value` is then its retention rate.

The DR value needs the expected outcome of each selection row under each arm; it comes from the
T-learner fitted on the training part (never on the rows it judges), shared by all learners
so they are compared on the same footing.
"""

from __future__ import annotations

from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from training.config import CONTROL, Config, OutcomeSpec
from training.data.exposures import (
    build_exposure_set,
    selection_exposures,
    split_exposures,
    uplift_arrays,
)
from training.data.snapshots import censoring_note, data_span
from training.features.definition import FeatureBuilder
from training.uplift.learners import (
    LEARNERS,
    BinnedFeatures,
    TLearner,
    UpliftLearner,
    XLearner,
    aipw_pseudo_outcome,
    is_binary,
)
from training.uplift.metrics import dr_contributions, dr_value, or_nan, qini_coefficient
from training.uplift.selection import Line, SelectedUplift, calibration_fit

# Small, regularised LightGBM bases (many small-effect actions reward shrinkage over depth);
# half the features per tree halves the time. 200k exposures x 5 actions x 4 outcomes: see bench.
FAST_PARAMS: dict[str, Any] = {
    "n_estimators": 150,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 100,  # at least; more on many rows (sized_params)
    "colsample": 0.5,
    "n_jobs": 2,  # cores: outcomes train side by side on them (train_uplift); threads to predict
    "random_state": 0,
}
# The S-learner sees the arm only in the trees that sample its column, and spends its first
# rounds on the outcome's main effects: every tree gets every column, and twice the rounds
S_COLSAMPLE = 1.0
S_ROUNDS_FACTOR = 2
MIN_CHILD_PER_ROWS = 100  # leaves hold at least rows / 100 rows, from the base parameters
MAX_MIN_CHILD = 200  # min_child_samples up to 200 (measured: a floor of 20 overfits 3k rows)
TARGET_SHARES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # budgets a ranking is judged at
MIN_LABELS = 200  # labelled exposures an outcome needs before any learner is fitted on it
MIN_CONTROL = 20  # control rows (in training and in the held-out part) needed to estimate uplift
DEFAULT_LEARNER = "SLearner"  # served unless a paired comparison shows another is better
# Another learner must beat the default by this many standard errors of the paired difference
# (one-sided, about 1% after comparing three alternatives): a choice on noise costs more than
# the default's occasional shortfall (README, the peer panel)
Z_CHOICE = 2.5
# The other learner whose effects are shrunk (by its prior): below the bar it serves when its
# policies do better and its calibration slope is larger than the default's (choose_per_action)
SHRUNK_LEARNER = "LinearTLearner"


@dataclass
class UpliftResult:
    """The chosen learners per outcome (fitted on the training customers' exposures), the
    held-out comparison of all learners (one row per outcome x learner), and outcomes skipped
    with the reason."""

    learners: dict[str, SelectedUplift]
    comparison: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    exposures: int = 0


# ---------------------------------------------------------------------------------------------
# pure helpers


def orientation(spec: OutcomeSpec) -> tuple[float, float]:
    """(sign, offset) mapping an outcome to "greater is better": y' = offset + sign * y; churn
    becomes retention 1 − churn (still binary, so Qini keeps its meaning)."""
    return (-1.0, 1.0) if spec.role == "churn" else (1.0, 0.0)


def base_objective(spec: OutcomeSpec, y: np.ndarray) -> str:
    """The learners' outcome-model objective for an outcome: sums and counts of non-negative
    amounts get LightGBM's tweedie (log link): an action's effect on spend is mostly proportional
    to what the customer would spend anyway, which a log link models with one split where an
    additive model needs many. Anything else: "auto" (binary or regression)."""
    if spec.kind in ("sum", "count") and not is_binary(y) and y.min() >= 0 and np.any(y > 0):
        return "tweedie"
    return "auto"


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
        out[action] = or_nan(qini_coefficient, uplift[rows, j], treatment[rows] == action, y[rows])
    return out


def skip_reason(
    treatment: np.ndarray, y: np.ndarray, fit: np.ndarray, judge: np.ndarray
) -> str | None:
    """Why an outcome's labelled exposures (`fit` rows to learn on, `judge` rows to choose on)
    cannot support uplift learning, or None."""
    if len(y) < MIN_LABELS:
        return f"only {len(y)} labelled exposures (need {MIN_LABELS})"
    if len(np.unique(y)) < 2:
        return "the outcome is constant over the exposures"
    for part, name in ((fit, "training"), (judge, "selection")):
        if int(np.sum(treatment[part] == CONTROL)) < MIN_CONTROL:
            return f"fewer than {MIN_CONTROL} control exposures in the {name} part"
        if not np.any(treatment[part] != CONTROL):
            return f"no treated exposures in the {name} part"
    return None


def sized_params(params: dict[str, Any], rows: int) -> dict[str, Any]:
    """Base-model parameters for a fit on `rows` rows: leaves of at least rows / 100 rows, from
    the parameters' own `min_child_samples` up to MAX_MIN_CHILD, so that trees on 100k+ rows do
    not chase the noise of a hundred customers. Going below the base (a floor of 20 for a 3k-row
    test) let the S-learner read noise as effects."""
    low = int(params.get("min_child_samples", 20))
    return params | {
        "min_child_samples": int(np.clip(rows // MIN_CHILD_PER_ROWS, low, max(low, MAX_MIN_CHILD)))
    }


def make_learner(name: str, categorical: list[int], params: dict[str, Any]) -> UpliftLearner:
    """A fresh learner of class `name` (a key of uplift.LEARNERS); the S-learner gets every
    column in every tree and `S_ROUNDS_FACTOR` times the rounds."""
    if name == "SLearner":
        rounds = int(params.get("n_estimators", 100)) * S_ROUNDS_FACTOR
        params = params | {"colsample": S_COLSAMPLE, "n_estimators": rounds}
    return LEARNERS[name](categorical=categorical, **params)


# ---------------------------------------------------------------------------------------------
# selection for one outcome


def sign_policy(uplift: np.ndarray) -> np.ndarray:
    """Treat where the (oriented) uplift is positive: the policy one action's uplift induces."""
    return uplift > 0


def top_share_policies(
    uplift: np.ndarray, shares: tuple[float, ...] = TARGET_SHARES
) -> list[np.ndarray]:
    """Masks treating the top `share` of rows by (oriented) uplift, one per share: the policies a
    ranking induces at every budget, so that a choice does not hinge on one threshold (which
    is not known per outcome: the cost is paid once, across all outcomes)."""
    order = np.argsort(-uplift, kind="stable")
    masks = []
    for share in shares:
        mask = np.zeros(len(uplift), dtype=bool)
        mask[order[: int(round(share * len(uplift)))]] = True
        masks.append(mask)
    return masks


def fit_learners(
    X: np.ndarray, treatment: np.ndarray, y: np.ndarray, propensity: np.ndarray,
    categorical: list[int], params: dict[str, Any], names: Collection[str] | None = None,
) -> dict[str, UpliftLearner]:  # fmt: skip
    """The learners of uplift.LEARNERS named in `names` (default: all) fitted on the rows, all
    on one binning of X; the X-learner borrows the T-learner's outcome models when both are
    fitted (its first stage is that T-learner)."""
    wanted = [n for n in LEARNERS if names is None or n in names]
    fitted: dict[str, UpliftLearner] = {}
    binned = BinnedFeatures(X, categorical)
    for name in sorted(wanted, key=lambda n: n != "TLearner"):  # the T-learner first
        learner = make_learner(name, categorical, params)
        if isinstance(learner, XLearner) and isinstance(fitted.get("TLearner"), TLearner):
            first = fitted["TLearner"]
            fitted[name] = learner.fit(X, treatment, y, propensity, binned, first_stage=first)
        else:
            fitted[name] = learner.fit(X, treatment, y, propensity, binned)
    return {name: fitted[name] for name in wanted}


def paired_z(candidate: np.ndarray, default: np.ndarray) -> float:
    """How many standard errors the mean per-row gain `candidate - default` lies above 0: the
    paired comparison of two policies judged on the same rows (0 when they never differ)."""
    diff = np.asarray(candidate, dtype=np.float64) - np.asarray(default, dtype=np.float64)
    sd = float(np.std(diff, ddof=1)) if len(diff) > 1 else 0.0
    return float(np.mean(diff) / (sd / np.sqrt(len(diff)))) if sd > 0 else 0.0


def compare_learners(
    X: np.ndarray,
    treatment: np.ndarray,
    y: np.ndarray,
    propensity: np.ndarray,
    fit: np.ndarray,
    judge: np.ndarray,
    spec: OutcomeSpec,
    categorical: list[int],
    params: dict[str, Any],
) -> tuple[pd.DataFrame, SelectedUplift]:
    """Fit every learner on the `fit` rows; on the `judge` rows judge, per action, the DR
    values of the policies its ranking induces — "this action for the top 10%, 20%, … 90%" —
    and of "this action where its uplift is positive", with Qini beside them (and the
    all-actions policy of each learner as action "all"). Per action the default learner is
    kept unless another beats it in a paired comparison on the same rows (`choose_per_action`);
    a challenger that wins is shrunk against DR pseudo-outcomes of the `judge` rows (the default
    is served as fitted); the choice is refitted on the `fit` and `judge` rows together, which is what is served."""
    sized = sized_params(params, int(fit.sum()))
    fitted = fit_learners(X[fit], treatment[fit], y[fit], propensity[fit], categorical, sized)
    outcome_model = fitted["TLearner"]
    assert isinstance(outcome_model, TLearner)
    actions = list(outcome_model.actions_)
    held = judge & np.isin(treatment, [CONTROL, *actions])
    sign, offset = orientation(spec)
    raw_mu = outcome_model.predict_outcomes(X[held])
    y_held, t_held, p_held = offset + sign * y[held], treatment[held], propensity[held]
    mu = offset + sign * raw_mu
    arms = [CONTROL, *actions]

    def terms(policy: np.ndarray) -> np.ndarray:
        return dr_contributions(policy, t_held, y_held, p_held, mu, arms=arms)

    def value(policy: np.ndarray) -> tuple[float, float]:
        return tuple(dr_value(policy, t_held, y_held, p_held, mu, arms=arms))  # type: ignore[return-value]

    rows, raw, targeting = [], {}, {}
    for name, learner in fitted.items():
        raw[name] = learner.predict(X[held])
        uplift = sign * raw[name]
        policy = policy_actions(uplift, actions)
        overall, ci = value(policy)
        rows.append({"learner": name, "action": "all", "dr_value": overall, "ci": ci,
                     "treated_share": float(np.mean(policy != CONTROL)), "qini": np.nan})  # fmt: skip
        qini = qini_per_action(uplift, actions, t_held, y_held)
        for j, action in enumerate(actions):
            treat = sign_policy(uplift[:, j])
            dr, ci = value(np.where(treat, action, CONTROL))
            # per row, the mean term of the top-share policies: their paired comparison
            targeting[name, action] = np.mean(
                [terms(np.where(m, action, CONTROL)) for m in top_share_policies(uplift[:, j])],
                axis=0,
            )
            rows.append({"learner": name, "action": action, "dr_value": dr, "ci": ci,
                         "dr_targeting": float(np.mean(targeting[name, action])),
                         "treated_share": float(treat.mean()), "qini": qini[action]})  # fmt: skip
    table = pd.DataFrame(rows)
    pairs = list(zip(table["learner"].astype(str), table["action"].astype(str), strict=True))
    table["z_vs_default"] = [
        paired_z(targeting[p], targeting[DEFAULT_LEARNER, p[1]]) if p[1] != "all" else np.nan
        for p in pairs
    ]
    lines: dict[tuple[str, str], Line] = {}
    slope_se: dict[tuple[str, str], float] = {}
    for j, action in enumerate(actions):
        # pseudo-outcomes of every held-out row: their mean given x is the effect only over all
        # arms (the AIPW correction terms balance out across arms, not within two of them)
        pseudo = aipw_pseudo_outcome(
            y[held], t_held == action, t_held == CONTROL, raw_mu[:, j + 1], raw_mu[:, 0], p_held
        )
        for name in raw:  # every learner's slope is reported; the chosen one's line is served
            lines[name, action], slope_se[name, action] = calibration_fit(raw[name][:, j], pseudo)
    table["slope"] = [lines[p].slope if p in lines else np.nan for p in pairs]
    table["slope_se"] = [slope_se.get(p, np.nan) for p in pairs]
    choice = choose_per_action(table, actions)
    table["chosen"] = [a != "all" and choice.get(a) == name for name, a in pairs]
    served_lines = {a: lines[name, a] for a, name in choice.items() if name != DEFAULT_LEARNER}
    every = fit | judge
    served = fit_learners(X[every], treatment[every], y[every], propensity[every], categorical,
                          sized_params(params, int(every.sum())), names=set(choice.values()))  # fmt: skip
    return table, SelectedUplift(served, choice, served_lines)


def choose_per_action(table: pd.DataFrame, actions: list[str]) -> dict[str, str]:
    """Per action, `DEFAULT_LEARNER` unless another learner's policies beat its policies on the
    same held-out rows by more than `Z_CHOICE` standard errors of the paired difference
    (`z_vs_default`), then the one with the largest margin. Below that bar, `SHRUNK_LEARNER`
    serves when both signals of the same rows favour it: its policies do better (z > 0) and its
    effects' spread is more real than the default's (a calibration `slope` larger by more than
    one standard error of the difference, `slope_se` of both taken as independent: DR
    pseudo-outcomes confirm more of it, beyond their noise).

    Measured (issue 15): choosing by the highest mean DR value alone picked on differences far
    inside their intervals, i.e. on noise, and mostly picked T-learners, the weakest learner on
    most simulated worlds. The linear learner with z > 0 alone served on noise on a simulated
    world (its slopes 0.06-0.66 against the S-learner's 0.64-1) and lost most of the policy's
    value; on Hillstrom its slopes were above the S-learner's on every split; a slope larger
    within its noise chose it on a larger world, at a cost (README)."""
    choice = {}
    for action in actions:
        rows = table[table["action"] == action].set_index("learner")
        z = rows["z_vs_default"].astype(np.float64).where(lambda v: np.isfinite(v), -np.inf)
        best = str(z.idxmax())
        choice[action] = best if z[best] > Z_CHOICE else DEFAULT_LEARNER
        shrunk = SHRUNK_LEARNER in rows.index and z[SHRUNK_LEARNER] > 0
        if choice[action] == DEFAULT_LEARNER and shrunk and _clearly_larger_slope(rows):
            choice[action] = SHRUNK_LEARNER
    return choice


def _clearly_larger_slope(rows: pd.DataFrame) -> bool:
    """Whether SHRUNK_LEARNER's calibration slope beats the default's by more than one standard
    error of their difference (rows indexed by learner; no slope columns: False)."""
    if "slope" not in rows or "slope_se" not in rows:
        return False
    slope = rows["slope"].astype(np.float64)
    se = rows["slope_se"].astype(np.float64)
    gap = slope[SHRUNK_LEARNER] - slope[DEFAULT_LEARNER]
    return bool(gap > np.hypot(se[SHRUNK_LEARNER], se[DEFAULT_LEARNER]))


# ---------------------------------------------------------------------------------------------
# orchestration


def learn_outcome(
    labelled: pd.DataFrame, outcome: str, spec: OutcomeSpec, names: list[str],
    categorical: list[int], params: dict[str, Any],
) -> tuple[pd.DataFrame, SelectedUplift] | str:  # fmt: skip
    """One outcome's uplift from its labelled exposures: every learner fitted on the training
    customers and compared on the selection customers, the choice per action calibrated there;
    or why the exposures cannot support it (a skip reason). Evaluation customers' rows may be
    in `labelled`; nothing here reads them."""
    X, treatment, y, propensity = uplift_arrays(labelled, outcome, names)
    fit = ~np.asarray(split_exposures(labelled), dtype=bool)
    judge = np.asarray(selection_exposures(labelled), dtype=bool)
    reason = skip_reason(treatment, y, fit, judge)
    if reason is not None:
        return reason
    params = params | {"objective": base_objective(spec, y)}
    return compare_learners(X, treatment, y, propensity, fit, judge, spec, categorical, params)


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
    cores = max(1, int(params["n_jobs"]))
    # Outcomes are learned side by side, one single-threaded booster per core: LightGBM trains
    # outside the GIL, and on per-arm fits of a few 10k rows two OpenMP threads per booster
    # gain little (measured: two outcomes at 200k exposures, 195 s -> 98 s, same models).
    one_core = params | {"n_jobs": 1}

    span = data_span(con, config)
    configured = config.snapshots.observed_until is not None

    def learn(item: tuple[str, OutcomeSpec]) -> tuple[pd.DataFrame, SelectedUplift] | str:
        outcome, spec = item
        labelled = frame[frame[outcome].notna()]
        result = learn_outcome(labelled, outcome, spec, names, cats, one_core)
        if isinstance(result, str) and len(labelled) < MIN_LABELS:
            note = censoring_note(frame["as_of"], spec, span, configured)
            result = f"{result}: {note}" if note else result
        return result

    with ThreadPoolExecutor(max_workers=cores) as pool:
        results = list(pool.map(learn, config.outcomes.items()))
    learners: dict[str, SelectedUplift] = {}
    tables, skipped = [], {}
    for outcome, result in zip(config.outcomes, results, strict=True):
        if isinstance(result, str):
            skipped[outcome] = result
            continue
        table, selected = result
        for learner in selected.learners_.values():
            learner.set_params(n_jobs=params["n_jobs"])  # threads to predict with, once served
        table.insert(0, "outcome", outcome)
        tables.append(table)
        learners[outcome] = selected
    comparison = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    return UpliftResult(learners, comparison, skipped, exposures=len(frame))
