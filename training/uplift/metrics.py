"""Honest evaluation of uplift models and the policies they induce, on held-out logged data.

Pure functions over arrays of logged exposures — the treatment each row got, its outcome, and the
logged probability of that treatment — so the report, model selection and the tests share them.

- Policy value (expected outcome per customer if everyone were treated as the policy says), with a
  95% normal-approximation confidence interval: `ips_value` (inverse propensity scoring) and
  `dr_value` (doubly robust: outcome-model prediction plus an IPS correction of its error).
- Ranking quality of an uplift score for one action vs control: `qini_curve`,
  `qini_coefficient` and `auuc`, normalised exactly as scikit-uplift's `qini_auc_score` and
  `uplift_auc_score` (so figures compare with the literature).
- Calibration: `uplift_by_decile`, predicted vs observed uplift per decile of the prediction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd

from training.config import CONTROL
from training.errors import NextbestError

Z_95 = 1.959963984540054


class PolicyValue(NamedTuple):
    """Estimated value per customer and the half-width of its 95% confidence interval."""

    value: float
    ci_half_width: float


# ---------------------------------------------------------------------------------------------
# policy value


def _mean_ci(contributions: np.ndarray) -> PolicyValue:
    n = len(contributions)
    if n < 2:
        raise NextbestError("policy value needs at least two rows")
    half = Z_95 * float(np.std(contributions, ddof=1)) / np.sqrt(n)
    return PolicyValue(float(np.mean(contributions)), half)


def _logged(
    policy_actions: np.ndarray, treatment: np.ndarray, y: np.ndarray, propensity: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    policy = np.asarray(policy_actions).astype(str)
    treatment = np.asarray(treatment).astype(str)
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(propensity, dtype=np.float64)
    n = len(y)
    if not policy.shape == treatment.shape == p.shape == (n,):
        raise NextbestError(
            f"policy_actions {policy.shape}, treatment {treatment.shape}, y {y.shape} and "
            f"propensity {p.shape} must all have one value per row"
        )
    if not np.all((p > 0) & (p <= 1)):
        raise NextbestError("propensity must be in (0, 1] on every row")
    return policy, treatment, y, p


def ips_value(
    policy_actions: np.ndarray, treatment: np.ndarray, y: np.ndarray, propensity: np.ndarray
) -> PolicyValue:
    """Inverse propensity scoring: mean of 1[policy = logged treatment] * y / p.

    Unbiased when the logged propensities are right, but it uses only the rows where the policy
    agrees with the log, so its interval is wide. `policy_actions` may say "control".
    """
    policy, treatment, y, p = _logged(policy_actions, treatment, y, propensity)
    return _mean_ci((policy == treatment) * y / p)


def dr_value(
    policy_actions: np.ndarray,
    treatment: np.ndarray,
    y: np.ndarray,
    propensity: np.ndarray,
    mu_hat: np.ndarray,
    arms: Sequence[str] | None = None,
) -> PolicyValue:
    """Doubly robust value: mean of mu(x, pi(x)) + 1[pi(x) = T] (y - mu(x, T)) / p.

    mu_hat: (n, n_arms) predicted outcome of each row under each arm, control included, with
    columns named by `arms` (default: "control" then the other arms of treatment and policy,
    sorted — the order of `UpliftLearner.actions_` behind `predict_outcomes`). Consistent if
    either mu_hat or the propensities are right, and much tighter than IPS when mu_hat is good.
    Fit mu_hat on other rows than these, or the correction term is biased towards zero.
    """
    return _mean_ci(dr_contributions(policy_actions, treatment, y, propensity, mu_hat, arms))


def dr_contributions(
    policy_actions: np.ndarray,
    treatment: np.ndarray,
    y: np.ndarray,
    propensity: np.ndarray,
    mu_hat: np.ndarray,
    arms: Sequence[str] | None = None,
) -> np.ndarray:
    """Per row, the term `dr_value` averages: two policies judged on the same rows are compared
    by the mean and standard error of the difference of their terms (a paired comparison, far
    tighter than the difference of two values with their own intervals)."""
    policy, treatment, y, p = _logged(policy_actions, treatment, y, propensity)
    mu = np.asarray(mu_hat, dtype=np.float64)
    if arms is None:
        others = sorted((set(treatment.tolist()) | set(policy.tolist())) - {CONTROL})
        arms = [CONTROL, *others]
    column = {a: j for j, a in enumerate(arms)}
    unknown = (set(treatment.tolist()) | set(policy.tolist())) - set(column)
    if unknown or mu.shape != (len(y), len(column)):
        raise NextbestError(
            f"mu_hat must be (n, {len(column)}) over arms {list(column)}; got {mu.shape}"
            + (f", and arms {sorted(unknown)} have no column" if unknown else "")
        )
    rows = np.arange(len(y))
    pi = np.array([column[a] for a in policy.tolist()], dtype=np.int64)
    t = np.array([column[a] for a in treatment.tolist()], dtype=np.int64)
    return mu[rows, pi] + (pi == t) * (y - mu[rows, t]) / p


# ---------------------------------------------------------------------------------------------
# Qini and uplift curves (scikit-uplift's definitions)


def _ranked_cumulative(
    uplift: np.ndarray, treated_mask: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative counts and outcome sums over the rows ranked by decreasing score, kept only at
    the last row of each run of tied scores (ties are targeted together), as sklift does."""
    score = np.asarray(uplift, dtype=np.float64)
    treated = np.asarray(treated_mask).astype(bool)
    y = np.asarray(y, dtype=np.float64)
    if not score.shape == treated.shape == y.shape or score.ndim != 1 or len(score) == 0:
        raise NextbestError(
            f"uplift {score.shape}, treated_mask {treated.shape} and y {y.shape} must be "
            "non-empty vectors of one length"
        )
    order = np.argsort(score, kind="mergesort")[::-1]
    score, treated, y = score[order], treated[order], y[order]
    ends = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]
    n_treated = np.cumsum(treated, dtype=np.float64)[ends]
    y_treated = np.cumsum(np.where(treated, y, 0.0))[ends]
    y_control = np.cumsum(np.where(treated, 0.0, y))[ends]
    n_all = (ends + 1).astype(np.float64)
    return n_all, n_treated, n_all - n_treated, y_treated, y_control


def _from_origin(x: np.ndarray, curve: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.size == 0 or curve[0] != 0 or x[0] != 0:
        return np.r_[0.0, x], np.r_[0.0, curve]
    return x, curve


def qini_curve(
    uplift: np.ndarray, treated_mask: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve: x = customers targeted (by decreasing uplift), value = treated responders
    minus control responders scaled to the treated count, y_t - y_c * n_t / n_c."""
    n_all, n_t, n_c, y_t, y_c = _ranked_cumulative(uplift, treated_mask, y)
    ratio = np.divide(n_t, n_c, out=np.zeros_like(n_t), where=n_c != 0)
    return _from_origin(n_all, y_t - y_c * ratio)


def uplift_curve(
    uplift: np.ndarray, treated_mask: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Uplift curve: (mean y treated - mean y control) among the top k, times k."""
    n_all, n_t, n_c, y_t, y_c = _ranked_cumulative(uplift, treated_mask, y)
    rate_t = np.divide(y_t, n_t, out=np.zeros_like(y_t), where=n_t != 0)
    rate_c = np.divide(y_c, n_c, out=np.zeros_like(y_c), where=n_c != 0)
    return _from_origin(n_all, (rate_t - rate_c) * n_all)


def perfect_qini_curve(
    treated_mask: np.ndarray, y: np.ndarray, negative_effect: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """sklift's optimum Qini curve. With negative effects: rank treated responders first and
    control responders last (score y*t - y*(1-t)); without: reach the final gain at once."""
    treated = np.asarray(treated_mask).astype(bool)
    y = np.asarray(y, dtype=np.float64)
    if negative_effect:
        return qini_curve(np.where(treated, y, -y), treated, y)
    gain = y[treated].sum() - treated.sum() * y[~treated].sum() / (~treated).sum()
    return np.array([0.0, gain, float(len(y))]), np.array([0.0, gain, gain])


def perfect_uplift_curve(treated_mask: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklift's optimum uplift curve for a binary outcome (score 2*(y == t) + y or t)."""
    treated = np.asarray(treated_mask).astype(bool)
    y = np.asarray(y, dtype=np.float64)
    t = treated.astype(np.float64)
    control_responders = np.sum((y == 1) & ~treated)
    treated_non_responders = np.sum((y == 0) & treated)
    summand = y if control_responders > treated_non_responders else t
    return uplift_curve(2 * (y == t) + summand, treated, y)


def _area(x: np.ndarray, curve: np.ndarray) -> float:
    """Trapezoidal area, as sklearn.metrics.auc on increasing x."""
    return float(np.sum(np.diff(x) * (curve[1:] + curve[:-1]) / 2.0))


def _normalised(
    model: tuple[np.ndarray, np.ndarray], perfect: tuple[np.ndarray, np.ndarray]
) -> float:
    """(area(model) - area(random)) / (area(perfect) - area(random)), random being the straight
    line from the origin to the perfect curve's end point."""
    x_perfect, c_perfect = perfect
    baseline = _area(np.array([0.0, x_perfect[-1]]), np.array([0.0, c_perfect[-1]]))
    best = _area(*perfect) - baseline
    if best == 0:
        raise NextbestError("the perfect curve has no area above random: no effect to rank")
    return (_area(*model) - baseline) / best


def qini_coefficient(
    uplift: np.ndarray, treated_mask: np.ndarray, y: np.ndarray, negative_effect: bool = True
) -> float:
    """Qini coefficient exactly as scikit-uplift's `qini_auc_score`: the area between the Qini
    curve and the random line, divided by the same area of the perfect Qini curve. 0 = random,
    1 = perfect; sklift/causalml peers reach 0.03-0.05 on Hillstrom visit. Defined for binary
    outcomes; a continuous y gives the same formula with a heuristic perfect curve."""
    return _normalised(
        qini_curve(uplift, treated_mask, y), perfect_qini_curve(treated_mask, y, negative_effect)
    )


def or_nan(metric: Callable[..., float], *args: np.ndarray) -> float:
    """`metric(*args)`, or NaN where it is undefined (nothing to rank: no responders at all, or
    as many in both arms as a perfect ranking would put first)."""
    try:
        return metric(*args)
    except NextbestError:
        return float("nan")


def auuc(uplift: np.ndarray, treated_mask: np.ndarray, y: np.ndarray) -> float:
    """Normalised area under the uplift curve exactly as scikit-uplift's `uplift_auc_score`
    (binary outcomes): area above the random line over the perfect curve's."""
    y = np.asarray(y, dtype=np.float64)
    if not np.isin(y, (0.0, 1.0)).all():
        raise NextbestError("auuc is normalised for binary outcomes only; use qini_coefficient")
    return _normalised(uplift_curve(uplift, treated_mask, y), perfect_uplift_curve(treated_mask, y))


# ---------------------------------------------------------------------------------------------
# calibration


def uplift_by_decile(
    predicted: np.ndarray,
    treated_mask: np.ndarray,
    y: np.ndarray,
    propensity: np.ndarray | None = None,
    bins: int = 10,
) -> pd.DataFrame:
    """Predicted vs observed uplift per decile of the prediction (decile 1 = highest), for
    calibration plots. Rows are split as sklift's `response_rate_by_percentile` ('overall'):
    ranked by decreasing prediction, cut into `bins` near-equal parts. Observed uplift is the
    difference of mean outcomes, treated minus control, inverse-propensity weighted (Hajek)
    when `propensity` is given so a targeted log does not distort it; `observed_se` is its
    standard error (unweighted formula)."""
    score = np.asarray(predicted, dtype=np.float64)
    treated = np.asarray(treated_mask).astype(bool)
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(y) if propensity is None else 1.0 / np.asarray(propensity, dtype=np.float64)
    if not score.shape == treated.shape == y.shape == w.shape or len(score) < bins:
        raise NextbestError(f"uplift_by_decile needs {bins}+ rows of predicted, treated_mask, y")
    order = np.argsort(score, kind="mergesort")[::-1]
    rows = []
    for d, part in enumerate(np.array_split(order, bins), start=1):
        t, c = part[treated[part]], part[~treated[part]]
        mean_t = np.average(y[t], weights=w[t]) if len(t) else np.nan
        mean_c = np.average(y[c], weights=w[c]) if len(c) else np.nan
        se = np.sqrt(
            (np.var(y[t], ddof=1) / len(t) if len(t) > 1 else np.nan)
            + (np.var(y[c], ddof=1) / len(c) if len(c) > 1 else np.nan)
        )
        rows.append(
            {
                "decile": d,
                "n": len(part),
                "n_treated": len(t),
                "n_control": len(c),
                "predicted": float(score[part].mean()),
                "observed": float(mean_t - mean_c),
                "observed_se": float(se),
            }
        )
    return pd.DataFrame(rows)
