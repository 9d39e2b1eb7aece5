"""Lifetime value: what a customer is worth over `objective.lifetime_months`, not one label window.

Two ways to project value beyond the label window, each a pure function of the model matrix:

- **survival** (subscriptions: churn is an event or inactivity): the churn score read as a constant
  daily hazard, survival projected over the horizon and multiplied by the spend per day of a
  customer who stays (the label-window revenue score divided by the expected days alive in its
  window). Nothing new is fitted: it combines the churn and window-value models of the bundle.
- **repeat_purchase** (shoppers: no contract): BG/NBD (Fader, Hardie & Lee 2005) for the number of
  future purchases × Gamma-Gamma for the spend per purchase, fitted by maximum likelihood on the
  customers' purchase days, recency and age read from the purchase features (`purchase_summary`:
  a transaction is a purchase day, as in BG/NBD, not an order).

- **blend**: `weight` x repeat_purchase + (1 - weight) x the window's projection (survival when
  there is a churn score, else the label-window revenue scaled to the horizon): the boosted
  window model sees every feature, BG/NBD the purchase rhythm, and each corrects the other.
- **window_repeat**: each model over the days it knows: the label-window revenue score for the
  label window (what it was trained to predict), then BG/NBD x Gamma-Gamma from the window's end
  to the horizon, instead of the window revenue carried on at a constant rate (a shopper's
  dropout is what BG/NBD models and a straight line does not).

Training picks one per data set by held-out quality (`training.pipelines.lifetime`). Each discounts
future money continuously at `discount_rate` a year. The fitted state is a handful of numbers: it
travels in the bundle as JSON (`LifetimeValue.to_dict`), never pickle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Self

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1
from sklearn.base import BaseEstimator, RegressorMixin

from training.errors import NextbestError

FloatArray = NDArray[np.float64]
ArrayLike = Sequence[float] | FloatArray | float
Method = Literal["survival", "repeat_purchase", "blend", "window_repeat"]
METHODS: tuple[Method, ...] = ("survival", "repeat_purchase", "blend", "window_repeat")
WITH_REPEAT: tuple[Method, ...] = ("repeat_purchase", "blend", "window_repeat")
DAYS_PER_MONTH = 365.25 / 12
FORMAT = 1


def horizon_days(months: float) -> float:
    """The lifetime horizon in days (a month is 365.25 / 12 days)."""
    return float(months) * DAYS_PER_MONTH


def daily_discount(annual_rate: float) -> float:
    """Continuous discount per day equivalent to `annual_rate` a year (0.1: 10% a year)."""
    return math.log1p(annual_rate) / 365.25


# ------------------------------------------------------------------------------- survival


def survival_value(
    churn_probability: ArrayLike,
    churn_days: float,
    window_value: ArrayLike,
    value_days: float,
    horizon: float,
    discount_rate: float = 0.0,
) -> FloatArray:
    """Expected (discounted) revenue over `horizon` days from the churn probability over
    `churn_days` and the expected revenue over the `value_days` label window.

    The churn probability becomes a constant daily hazard mu = -ln(1 - p) / churn_days; the window
    revenue, earned while alive, is spend per day s times the window's expected days alive
    (1 - e^(-mu W)) / mu; the lifetime value is then s (1 - e^(-lam H)) / lam, lam = mu + delta.
    """
    p = np.clip(np.asarray(churn_probability, dtype=np.float64), 0.0, 1.0 - 1e-9)
    value = np.maximum(np.asarray(window_value, dtype=np.float64), 0.0)
    mu = -np.log1p(-p) / float(churn_days)
    spend = value / _exposure(mu, float(value_days))
    return spend * _exposure(mu + daily_discount(discount_rate), float(horizon))


def _exposure(rate: FloatArray, days: float) -> FloatArray:
    """(1 - e^(-rate days)) / rate: expected days alive (or discounted days) out of `days`."""
    safe = np.where(rate > 1e-12, rate, 1.0)
    return np.where(rate > 1e-12, -np.expm1(-safe * days) / safe, days)


# ----------------------------------------------------------------- repeat purchase (BG/NBD x GG)


def bgnbd_log_likelihood(
    params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray
) -> FloatArray:
    """Per-customer log-likelihood of BG/NBD (r, alpha, a, b) for x repeat purchases, the last
    at t_x, observed for T (Fader, Hardie & Lee 2005, eq. 6)."""
    r, alpha, a, b = params
    base = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + betaln(a, b + x) - betaln(a, b)
    stayed = -(r + x) * np.log(alpha + T)
    with np.errstate(divide="ignore", invalid="ignore"):
        left = np.log(a) - np.log(np.maximum(b + x - 1.0, 1e-12)) - (r + x) * np.log(alpha + t_x)
    left = np.where(x > 0, left, -np.inf)
    return base + np.logaddexp(stayed, left)


def bgnbd_expected(
    params: FloatArray, x: FloatArray, t_x: FloatArray, T: FloatArray, t: float
) -> FloatArray:
    """Expected purchases in the next `t` days given the history (eq. 10 of the same paper)."""
    r, alpha, a, b = params
    if t <= 0:
        return np.zeros_like(x)
    z = t / (alpha + T + t)
    hyp = hyp2f1(r + x, b + x, a + b + x - 1.0, z)
    head = (a + b + x - 1.0) / (a - 1.0)
    body = 1.0 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        odds = a / np.maximum(b + x - 1.0, 1e-12) * ((alpha + T) / (alpha + t_x)) ** (r + x)
    denominator = 1.0 + np.where(x > 0, odds, 0.0)
    return np.maximum(np.nan_to_num(head * body / denominator, nan=0.0, posinf=0.0), 0.0)


def gamma_gamma_log_likelihood(params: FloatArray, x: FloatArray, m: FloatArray) -> FloatArray:
    """Per-customer log-likelihood of Gamma-Gamma (p, q, gamma) for the mean spend m of x >= 1
    purchases (Fader, Hardie & Lee 2005b), up to terms free of the parameters."""
    p, q, g = params
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(g)
        + (px - 1.0) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(g + m * x)
    )


def gamma_gamma_mean(params: FloatArray, x: FloatArray, m: FloatArray) -> FloatArray:
    """Expected spend per future purchase: the population mean shrunk towards the customer's own
    mean spend as their purchases x grow (x = 0: the population mean)."""
    p, q, g = params
    own = np.where(x > 0, m, 0.0)
    return (g + own * x) * p / (p * x + q - 1.0)


def _fit_positive(
    nll: Any, start: Sequence[float], bounds: Sequence[tuple[float, float]]
) -> FloatArray:
    """Minimise a negative log-likelihood over log-parameters (all parameters are positive)."""
    log_bounds = [(math.log(lo), math.log(hi)) for lo, hi in bounds]
    found = minimize(lambda z: nll(np.exp(z)), np.log(start), method="L-BFGS-B", bounds=log_bounds)
    params = np.exp(found.x)
    if not np.all(np.isfinite(params)):
        raise NextbestError(f"repeat-purchase model: the fit did not converge ({found.message})")
    return np.asarray(params, dtype=np.float64)


class RepeatPurchaseModel(RegressorMixin, BaseEstimator):
    """BG/NBD x Gamma-Gamma on a purchase summary: X columns are (x repeat purchases, t_x days
    from the first to the last, T days observed, m mean spend per purchase), one row a customer.
    `predict(X)` is the expected (discounted) revenue over `horizon` days."""

    def __init__(
        self,
        *,
        horizon: float = 365.25,
        discount_rate: float = 0.0,
        step_days: float = DAYS_PER_MONTH,
    ) -> None:
        self.horizon = horizon
        self.discount_rate = discount_rate
        self.step_days = step_days

    bgnbd_: FloatArray
    gamma_gamma_: FloatArray

    def fit(self, X: ArrayLike, y: object = None) -> Self:
        """Maximum likelihood: BG/NBD on every row, Gamma-Gamma on the rows with purchases and a
        positive mean spend."""
        x, t_x, T, m = _summary(X)
        if len(x) < 2 or not np.any(x > 0):
            raise NextbestError("repeat-purchase model: needs customers with repeat purchases")
        scale = max(float(np.mean(T)), 1.0)
        self.bgnbd_ = _fit_positive(
            lambda q: -np.sum(bgnbd_log_likelihood(q, x, t_x, T)) / len(x),
            [0.5, scale / 4, 1.5, 3.0],
            [(1e-4, 1e3), (1e-3, 1e6), (1e-4, 1e3), (1e-4, 1e4)],
        )
        buyers = (x > 0) & (m > 0)
        if buyers.sum() < 2:
            raise NextbestError("repeat-purchase model: needs spend of repeat buyers")
        xb, mb = x[buyers], m[buyers]
        self.gamma_gamma_ = _fit_positive(
            lambda q: -np.sum(gamma_gamma_log_likelihood(q, xb, mb)) / len(xb),
            [2.0, 3.0, float(np.mean(mb))],
            [(1e-3, 1e4), (1.0001, 1e4), (1e-6, 1e9)],
        )
        self.n_features_in_ = 4
        return self

    def predict(
        self,
        X: ArrayLike,
        horizon: float | None = None,
        discount_rate: float | None = None,
        start: float = 0.0,
    ) -> FloatArray:
        """Expected revenue from day `start` to day `horizon` (default: the fitted `horizon`),
        discounted (default: at `discount_rate`) month by month at the mid-point of each step."""
        if not hasattr(self, "bgnbd_"):
            raise NextbestError("repeat-purchase model: not fitted")
        x, t_x, T, m = _summary(X)
        days = self.horizon if horizon is None else horizon
        if start >= days:
            return np.zeros_like(x)
        delta = daily_discount(self.discount_rate if discount_rate is None else discount_rate)
        edges = np.append(np.arange(float(start), days, self.step_days), days)
        purchases = [bgnbd_expected(self.bgnbd_, x, t_x, T, float(e)) for e in edges]
        weights = np.exp(-delta * (edges[1:] + edges[:-1]) / 2.0)
        count = sum(
            w * (b - a) for w, a, b in zip(weights, purchases[:-1], purchases[1:], strict=True)
        )
        return np.asarray(count * gamma_gamma_mean(self.gamma_gamma_, x, m), dtype=np.float64)


def _summary(X: ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """The four summary columns, checked: finite, non-negative, t_x <= T."""
    A = np.asarray(X, dtype=np.float64)
    if A.ndim != 2 or A.shape[1] != 4:
        raise NextbestError(
            f"repeat-purchase summary: expected (n, 4) columns x, t_x, T, m (got {A.shape})"
        )
    if not np.all(np.isfinite(A)) or np.any(A < 0):
        raise NextbestError("repeat-purchase summary: values must be finite and >= 0")
    x, t_x, T, m = A.T
    return x, np.minimum(t_x, T), np.maximum(T, 1e-9), m


def purchase_summary(X: NDArray[Any], names: Sequence[str], window: int) -> FloatArray:
    """(x, t_x, T, m) per row of the model matrix from the purchase features of `window` days.

    A transaction is a purchase *day*, not an order: BG/NBD sees purchases as points in continuous
    time, so several orders on one day (a basket split in two, an add-on) are one transaction, and
    counting them apart would read one visit as a burst of repeat purchases. Days are whole days
    before the as-of (day 1 the day before it): birth is the first purchase day, or the window's
    first day when the customer bought before the window (every purchase day in it is then a
    repeat: a customer who buys later in the window was alive at its start). x = repeat purchase
    days, t_x = days from birth to the last purchase day, T = days from birth to the as-of, m =
    mean revenue per purchase day. Customers who never bought are born at their first event."""
    index = {n: i for i, n in enumerate(names)}
    need = [f"purchase_days_{window}d", f"revenue_{window}d", "days_since_last_purchase",
            "days_since_first_purchase", "days_since_first_event"]  # fmt: skip
    missing = [n for n in need if n not in index]
    if missing:
        raise NextbestError(f"repeat-purchase model: the features lack {', '.join(missing)}")
    days, revenue, last, first, seen = (np.asarray(X[:, index[c]], dtype=np.float64) for c in need)
    days = np.nan_to_num(days, nan=0.0)
    born = np.ceil(np.where(np.isnan(first), np.nan_to_num(seen, nan=0.0), first))
    T = np.minimum(born, float(window))
    x = np.where(born > window, days, np.maximum(days - 1.0, 0.0))
    t_x = np.where(x > 0, np.clip(T - np.ceil(np.nan_to_num(last, nan=0.0)), 0.0, T), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.where(days > 0, np.maximum(np.nan_to_num(revenue, nan=0.0), 0.0) / days, 0.0)
    return np.column_stack([x, t_x, T, m])


# ------------------------------------------------------------------------------ the score


class LifetimeValue:
    """The `ltv` score of a bundle: the chosen method, its horizon and discount, and (for
    repeat_purchase) the fitted BG/NBD x Gamma-Gamma parameters. `predict` needs the model
    matrix and, for survival, the churn and window-value scores of the same rows."""

    def __init__(
        self,
        method: Method,
        lifetime_months: float,
        discount_rate: float,
        churn_days: float | None = None,
        value_days: float | None = None,
        window: int = 365,
        repeat: RepeatPurchaseModel | None = None,
        selection: Mapping[str, Mapping[str, float]] | None = None,
        weight: float = 1.0,
    ) -> None:
        if method not in METHODS:
            raise NextbestError(f"lifetime value: unknown method {method!r} (one of {METHODS})")
        if method == "survival" and (churn_days is None or value_days is None):
            raise NextbestError("lifetime value: survival needs the churn and value horizons")
        if method in WITH_REPEAT and repeat is None:
            raise NextbestError(f"lifetime value: {method} needs a fitted repeat-purchase model")
        if method in ("blend", "window_repeat") and value_days is None:
            raise NextbestError(f"lifetime value: {method} needs the value horizon")
        if not 0.0 <= weight <= 1.0:
            raise NextbestError(f"lifetime value: blend weight must be in [0, 1] (got {weight})")
        self.method = method
        self.lifetime_months = float(lifetime_months)
        self.discount_rate = float(discount_rate)
        self.churn_days = churn_days
        self.value_days = value_days
        self.window = int(window)
        self.repeat = repeat
        self.selection = {k: dict(v) for k, v in (selection or {}).items()}
        self.weight = float(weight)

    @property
    def horizon(self) -> float:
        return horizon_days(self.lifetime_months)

    def predict(
        self,
        X: NDArray[Any],
        names: Sequence[str],
        scores: Mapping[str, FloatArray],
        horizon: float | None = None,
    ) -> FloatArray:
        """Lifetime value per row over `horizon` days (default: the configured lifetime)."""
        days = self.horizon if horizon is None else horizon
        if self.method == "survival":
            return self._window_projection(scores, days)
        assert self.repeat is not None
        summary = purchase_summary(X, names, self.window)
        if self.method == "window_repeat":
            return self._window_then_repeat(summary, scores, days)
        repeat = self.repeat.predict(summary, horizon=days, discount_rate=self.discount_rate)
        if self.method == "repeat_purchase":
            return repeat
        return self.weight * repeat + (1.0 - self.weight) * self._window_projection(scores, days)

    def _window_then_repeat(
        self, summary: FloatArray, scores: Mapping[str, FloatArray], days: float
    ) -> FloatArray:
        """The label-window revenue score over the window (discounted at its middle; the share
        of it inside `days` when the horizon is shorter), then the repeat-purchase model's
        expected revenue from the window's end to `days`."""
        assert self.value_days is not None and self.repeat is not None
        inside = min(days, self.value_days)
        middle = math.exp(-daily_discount(self.discount_rate) * inside / 2.0)
        window = np.maximum(np.asarray(scores["window_value"], dtype=np.float64), 0.0)
        beyond = self.repeat.predict(summary, horizon=days, discount_rate=self.discount_rate,
                                     start=self.value_days)  # fmt: skip
        return window * inside / self.value_days * middle + beyond

    def _window_projection(self, scores: Mapping[str, FloatArray], days: float) -> FloatArray:
        """Survival x spend with a churn horizon, else the window revenue scaled to `days`
        (discounted at the middle of the horizon)."""
        assert self.value_days is not None
        window = np.asarray(scores["window_value"], dtype=np.float64)
        if self.churn_days is not None and "churn_probability" in scores:
            return survival_value(scores["churn_probability"], self.churn_days, window,
                                  self.value_days, days, self.discount_rate)  # fmt: skip
        middle = math.exp(-daily_discount(self.discount_rate) * days / 2.0)
        return np.maximum(window, 0.0) * days / self.value_days * middle

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "method": self.method,
            "lifetime_months": self.lifetime_months,
            "discount_rate": self.discount_rate,
            "churn_days": self.churn_days,
            "value_days": self.value_days,
            "window": self.window,
            "selection": self.selection,
            "weight": self.weight,
        }
        if self.repeat is not None:
            out["repeat"] = {
                "bgnbd": [float(v) for v in self.repeat.bgnbd_],
                "gamma_gamma": [float(v) for v in self.repeat.gamma_gamma_],
                "step_days": self.repeat.step_days,
            }
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LifetimeValue:
        if data.get("format") != FORMAT:
            raise NextbestError(f"lifetime value: format {data.get('format')} is not {FORMAT}")
        repeat = None
        if "repeat" in data:
            saved = data["repeat"]
            repeat = RepeatPurchaseModel(horizon=horizon_days(data["lifetime_months"]),
                                         discount_rate=data["discount_rate"],
                                         step_days=saved["step_days"])  # fmt: skip
            repeat.bgnbd_ = np.asarray(saved["bgnbd"], dtype=np.float64)
            repeat.gamma_gamma_ = np.asarray(saved["gamma_gamma"], dtype=np.float64)
            repeat.n_features_in_ = 4
        return cls(
            method=data["method"],
            lifetime_months=data["lifetime_months"],
            discount_rate=data["discount_rate"],
            churn_days=data.get("churn_days"),
            value_days=data.get("value_days"),
            window=data.get("window", 365),
            repeat=repeat,
            selection=data.get("selection"),
            weight=data.get("weight", 1.0),
        )
