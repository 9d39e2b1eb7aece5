"""Uplift meta-learners: the effect of each of many actions against control, with LightGBM bases.

One interface, in the shape of causalml's: `fit(X, treatment, y, propensity)` and `predict(X)`,
which returns one column per action (in the order of `actions_`) holding the estimated change in
the expected outcome if the customer got that action instead of nothing ("control").

`propensity` is the *logged* probability that each row got the treatment it got (the exposures
table's column). Campaigns are often targeted, so arms differ in who they reached; the learners
use the logged propensities — inverse-propensity weights for per-arm models, AIPW pseudo-outcomes
for the DR-learner — so that such confounding does not bias them. `propensity=None` means a
randomized experiment: nothing is estimated, every row of an arm gets that arm's share of the
rows as its propensity.

Learners (Künzel et al. 2019; Kennedy 2023):
- `SLearner`: one model of the outcome on features + the arm; uplift = f(x, a) - f(x, control).
- `TLearner`: one outcome model per arm; uplift = mu_a(x) - mu_control(x).
- `XLearner`: T-learner first stage, then models of the imputed individual effects on each side,
  blended by the arm's share.
- `DRLearner`: regression of doubly-robust (AIPW) pseudo-outcomes, the outcome models cross-fitted
  on two folds so that no row's pseudo-outcome uses a model that saw it.

Outcomes may be binary (y in {0, 1}: LightGBM `binary`, effects in probability) or continuous
(`regression`; or `tweedie`, a log link for non-negative amounts and counts, where an action's
effect is often proportional to what the customer would spend anyway). Persistence is
pickle-free: `to_dict()` holds LightGBM model strings and JSON-able state, `from_dict()` rebuilds
a learner whose predictions are bit-identical.

scikit-learn's estimator contract holds (keyword-only hyper-parameters stored verbatim, `clone`,
input checks raising ValueError — `EstimatorInputError` — learned attributes ending in `_`), with
the exceptions the `treatment` argument makes: `fit` takes (X, treatment, y, propensity), not
(X, y), and `predict` returns one column per action. `parametrize_with_checks` therefore drives the
learners through a thin adapter (tests/training/uplift/test_learners_estimator_checks.py) that
alternates control and one action by row, passes no propensity (randomized), returns that action's
column, and skips only the score threshold of the regressor checks (an effect is not the outcome).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Self

import lightgbm as lgb
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_array, column_or_1d

from training.config import CONTROL
from training.errors import EstimatorInputError, NextbestError
from training.uplift import linear
from training.uplift.arm_forest import ArmForest

FORMAT_VERSION = 1

# ---------------------------------------------------------------------------------------------
# pure maths


#: what a learner's `objective` may ask for; "auto" is binary for 0/1 outcomes, else regression
OBJECTIVES = ("auto", "binary", "regression", "tweedie")


def is_binary(y: np.ndarray) -> bool:
    """Whether every value is 0 or 1."""
    return bool(np.isin(np.unique(y), (0.0, 1.0)).all())


def outcome_objective(y: np.ndarray, objective: str = "auto") -> str:
    """LightGBM objective for an outcome: "auto" gives `binary` when every value is 0 or 1, else
    `regression`; "tweedie" (log link, for non-negative amounts and counts) needs y >= 0."""
    if objective not in OBJECTIVES:
        raise NextbestError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if objective == "auto":
        return "binary" if is_binary(y) else "regression"
    if objective == "binary" and not is_binary(y):
        raise NextbestError("objective 'binary' needs outcomes that are all 0 or 1")
    if objective == "tweedie" and not (np.min(y, initial=0.0) >= 0 and np.any(y > 0)):
        raise NextbestError("objective 'tweedie' needs non-negative outcomes, not all zero")
    return objective


def clip_propensity(propensity: np.ndarray, low: float) -> np.ndarray:
    """Propensities clipped to [low, 1]: a weight of at most 1/low keeps one lucky row from
    dominating an estimate (the usual trimming of IPW/AIPW)."""
    return np.clip(np.asarray(propensity, dtype=np.float64), low, 1.0)


def arm_share_propensity(treatment: np.ndarray) -> np.ndarray:
    """For randomized data: each row's propensity is the share of rows in its arm."""
    _, inverse, counts = np.unique(treatment, return_inverse=True, return_counts=True)
    return (counts / len(treatment))[inverse].astype(np.float64)


def aipw_pseudo_outcome(
    y: np.ndarray,
    in_arm: np.ndarray,
    in_control: np.ndarray,
    mu_arm: np.ndarray,
    mu_control: np.ndarray,
    propensity: np.ndarray,
) -> np.ndarray:
    """Doubly-robust pseudo-outcome of arm vs control for every row:

        phi = mu_a(x) - mu_c(x) + 1[T=a] (y - mu_a(x)) / p - 1[T=c] (y - mu_c(x)) / p

    where p is the logged probability of the treatment the row got. Its conditional mean is the
    CATE if either the outcome models or the propensities are right; rows of other arms carry
    only the model difference (their correction terms are zero).
    """
    correction = (in_arm * (y - mu_arm) - in_control * (y - mu_control)) / propensity
    return mu_arm - mu_control + correction


def blend_x_effects(tau_control: np.ndarray, tau_treated: np.ndarray, share: float) -> np.ndarray:
    """X-learner's blend g * tau_0 + (1 - g) * tau_1 with g the arm's share among arm + control
    rows: the side with fewer rows (whose effect model is noisier) gets less weight."""
    return share * tau_control + (1.0 - share) * tau_treated


# ---------------------------------------------------------------------------------------------
# binning once


class BinnedFeatures:
    """A feature matrix binned once by LightGBM; every base model of a fit trains on a subset.

    A learner fits up to 17 base models on rows of one matrix; binning each model's rows anew was a
    third of uplift training (144k x 172: ~2 s a time), while a subset of a binned matrix takes
    ~0.02 s. Learners fitted on the same matrix may share one (`fit(..., binned=...)`).
    """

    def __init__(self, X: np.ndarray, categorical: Sequence[int] = ()) -> None:
        self.shape = X.shape
        self.categorical = list(categorical)
        self.dataset = lgb.Dataset(
            X, np.zeros(len(X)), categorical_feature=self.categorical,
            # no pre-filtering by the default 20 rows a leaf: models on it may use fewer
            params={"verbose": -1, "feature_pre_filter": False}, free_raw_data=True,
        ).construct()  # fmt: skip

    def subset(
        self, rows: np.ndarray | None, y: np.ndarray, weight: np.ndarray | None
    ) -> lgb.Dataset:
        """The rows of the boolean mask `rows` (None: all), in order, with labels and weights."""
        index = np.arange(self.shape[0]) if rows is None else np.flatnonzero(rows)
        data = self.dataset.subset(index.tolist()).construct()
        data.set_label(y)
        if weight is not None:
            data.set_weight(weight)
        return data


# ---------------------------------------------------------------------------------------------
# the shared estimator


class UpliftLearner(BaseEstimator):
    """Hyper-parameters, validation, LightGBM training and persistence of every meta-learner.

    Subclasses implement `_fit(X, arm, y, propensity)` (arm: 0 = control, k = `actions_[k-1]`)
    and `_predict(X) -> (n, n_actions)`, keeping their boosters in `models_` by name; those with
    models per action also `_predict_actions(X, actions)`, so that no other action's model runs.
    """

    kind: ClassVar[str] = ""

    actions_: list[str]
    objective_: str
    n_features_in_: int
    models_: dict[str, lgb.Booster]
    state_: dict[str, Any]

    def __init__(
        self,
        *,
        n_estimators: int = 100,
        learning_rate: float = 0.1,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        colsample: float = 1.0,
        categorical: Sequence[int] | None = None,
        min_propensity: float = 0.01,
        objective: str = "auto",
        n_jobs: int = 1,
        random_state: int = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.colsample = colsample
        self.categorical = categorical
        self.min_propensity = min_propensity
        self.objective = objective
        self.n_jobs = n_jobs
        self.random_state = random_state

    # -- public API -------------------------------------------------------------------------

    def fit(
        self,
        X: np.ndarray,
        treatment: np.ndarray,
        y: np.ndarray,
        propensity: np.ndarray | None = None,
        binned: BinnedFeatures | None = None,
    ) -> Self:
        """Learn the effect of every action in `treatment` against "control".

        X: (n, d) float matrix (categorical columns as integer codes, listed in `categorical`);
        treatment: n labels, "control" or an action id; y: n outcomes; propensity: n logged
        probabilities of the treatment each row got, or None for a randomized experiment;
        binned: `BinnedFeatures(X, categorical)` when the caller already has it (shared by the
        learners fitted on the same X), else X is binned here.
        """
        X, treatment, y = self._check_inputs(X, treatment, y)
        if binned is not None and (binned.shape, binned.categorical) != (
            X.shape, list(self.categorical or [])
        ):  # fmt: skip
            raise NextbestError(f"{type(self).__name__}: binned features are not those of X")
        if propensity is None:
            p = arm_share_propensity(treatment)
        else:
            p = np.asarray(propensity, dtype=np.float64)
            if p.shape != (len(y),) or not np.all((p > 0) & (p <= 1)):
                raise NextbestError(
                    f"{type(self).__name__}: propensity must hold {len(y)} values in (0, 1]"
                )
        self.actions_ = sorted(str(a) for a in set(treatment.tolist()) - {CONTROL})
        self.objective_ = outcome_objective(y, self.objective)
        self.n_features_in_ = X.shape[1]
        self.models_ = {}
        self.state_ = {}
        codes = {CONTROL: 0, **{a: k + 1 for k, a in enumerate(self.actions_)}}
        arm = np.array([codes[t] for t in treatment.tolist()], dtype=np.int64)
        self._shared_bins, self._X = binned, X
        try:
            self._fit(X, arm, y, clip_propensity(p, self.min_propensity))
        finally:
            del self._shared_bins, self._X
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Uplift of each action vs control, shape (n, len(actions_)), columns in `actions_` order."""
        X = self._checked(X)
        return self._predict(X)

    def predict_actions(self, X: np.ndarray, actions: Sequence[str]) -> np.ndarray:
        """The columns of `predict` for `actions` only (each one of `actions_`), (n, len(actions)):
        a served model that takes a few actions from this learner (SelectedUplift) then runs no
        model of the others, which matters most on the one-row serving path."""
        X = self._checked(X)
        return self._predict_actions(X, actions)

    def _checked(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "models_"):  # not check_is_fitted: it costs more than a row's uplift
            raise NotFittedError(f"This {type(self).__name__} instance is not fitted yet.")
        return self._check_matrix(X)

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to predict, as JSON-able values: LightGBM model strings, no pickle."""
        return {
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "params": _jsonable_params(self.get_params()),
            "actions": list(self.actions_),
            "objective": self.objective_,
            "n_features_in": self.n_features_in_,
            "state": self.state_,
            "models": {name: b.model_to_string() for name, b in self.models_.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UpliftLearner:
        """The learner `to_dict` described; called on the base class it picks the subclass."""
        name = data.get("class")
        target = LEARNERS.get(str(name)) if cls is UpliftLearner else cls
        if (
            data.get("format_version") != FORMAT_VERSION
            or target is None
            or name != target.__name__
        ):
            raise NextbestError(
                f"cannot load a {name} of format {data.get('format_version')} as {cls.__name__} "
                f"(format {FORMAT_VERSION})"
            )
        learner = target(**data["params"])
        learner.actions_ = list(data["actions"])
        learner.objective_ = str(data["objective"])
        learner.n_features_in_ = int(data["n_features_in"])
        learner.state_ = dict(data["state"])
        learner.models_ = {k: lgb.Booster(model_str=s) for k, s in data["models"].items()}
        learner._loaded()
        return learner

    def feature_gain(self, action: str) -> np.ndarray:
        """(n_features_in_,) share of what drives `action`'s uplift per feature, summing to 1
        (zeros when nothing does): the gain of the boosters that model this action (all of
        them when none is the action's own), each normalised. For reasons shown to agents."""
        own = {k: b for k, b in self.models_.items() if k.endswith(f":{action}")}
        gain = np.zeros(self.n_features_in_)
        for booster in (own or self.models_).values():
            g = np.asarray(booster.feature_importance(importance_type="gain"), dtype=np.float64)
            g = g[: self.n_features_in_]  # an S-learner's booster also splits on the arm
            if g.sum() > 0:
                gain += g / g.sum()
        return gain / gain.sum() if gain.sum() > 0 else gain

    # -- to implement -----------------------------------------------------------------------

    def _loaded(self) -> None:
        """Derive what predictions need from the learned state (after `fit` and `from_dict`)."""

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, p: np.ndarray) -> None:
        raise NotImplementedError

    def _predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _predict_actions(self, X: np.ndarray, actions: Sequence[str]) -> np.ndarray:
        """Every column, then those asked for; learners with models per action override this."""
        return self._predict(X)[:, [self.actions_.index(a) for a in actions]]

    # -- LightGBM ---------------------------------------------------------------------------

    def _booster(
        self, rows: np.ndarray | None, y: np.ndarray, weight: np.ndarray | None, objective: str
    ) -> lgb.Booster:
        """One LightGBM model on the fit's rows in the boolean mask `rows` (None: all), with
        their labels y and weights; X is binned on first use, once per fit."""
        if len(y) == 0:
            raise NextbestError(f"{type(self).__name__}: an arm has no rows to fit on")
        if self._shared_bins is None:
            self._shared_bins = BinnedFeatures(self._X, self.categorical or [])
        if objective == "tweedie" and not np.any(y > 0):
            objective = "regression"  # LightGBM's tweedie refuses an all-zero arm; its mean is 0
        return self._train(self._shared_bins.subset(rows, y, weight), objective)

    def _train(self, data: lgb.Dataset, objective: str) -> lgb.Booster:
        """Boost on `data`, reloaded from its text form so that predictions in memory and after
        `from_dict` come from the very same trees."""
        params = {
            "objective": objective,
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.colsample,
            "num_threads": self.n_jobs,
            "seed": self.random_state,
            "deterministic": True,
            "force_col_wise": True,  # measured 40% faster than row-wise (172 features, 144k rows)
            "verbose": -1,
        }
        booster = lgb.train(params, data, num_boost_round=self.n_estimators)
        return lgb.Booster(model_str=booster.model_to_string())

    def _score(self, name: str, X: np.ndarray) -> np.ndarray:
        """Prediction of model `name` (a probability for binary models)."""
        return np.asarray(self.models_[name].predict(X, num_threads=self.n_jobs), dtype=np.float64)

    # -- validation -------------------------------------------------------------------------

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # LightGBM routes missing values itself
        return tags

    def _check_inputs(
        self, X: np.ndarray, treatment: np.ndarray, y: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """scikit-learn's checks of X (2-D, dense, numeric, 2+ rows: both arms) and y (1-D,
        finite), as EstimatorInputErrors; then the shapes and arms."""
        name = type(self).__name__
        if y is None:
            raise EstimatorInputError(f"{name} requires y to be passed, but the target y is None")
        try:
            X = check_array(X, dtype=np.float64, ensure_all_finite=False, ensure_min_samples=2)
            y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
            y = column_or_1d(y, warn=True)
        except ValueError as exc:  # a TypeError (sparse, objects) says it plainly
            raise EstimatorInputError(f"{name}: {exc}") from None
        treatment = np.asarray(treatment).astype(str)
        if treatment.shape != (len(X),) or y.shape != (len(X),):
            raise EstimatorInputError(
                f"{name}: X must be (n, d) with n treatments and n outcomes; got X {X.shape}, "
                f"treatment {treatment.shape}, y {y.shape}"
            )
        arms = set(treatment.tolist())
        if CONTROL not in arms or len(arms) < 2:
            raise NextbestError(
                f"{name}: treatment needs '{CONTROL}' rows and at least one action; got {sorted(arms)}"
            )
        return X, treatment, y

    def _check_matrix(self, X: np.ndarray) -> np.ndarray:
        name, n = type(self).__name__, self.n_features_in_
        if isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype.kind == "f":
            X = X.astype(np.float64, copy=False)  # the serving path: no further checks
        else:
            try:
                X = check_array(X, dtype=np.float64, ensure_all_finite=False)
            except ValueError as exc:  # a TypeError (sparse, objects) says it plainly
                raise EstimatorInputError(f"{name}: {exc}") from None
        if X.shape[1] != n:
            raise EstimatorInputError(
                f"{name}: expected (n, {n}) features, got {X.shape} (X has {X.shape[1]} features, "
                f"but {name} is expecting {n} features as input)"
            )
        return X


def _jsonable_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in params.items()}


def _arm_name(k: int, actions: Sequence[str]) -> str:
    return CONTROL if k == 0 else actions[k - 1]


# ---------------------------------------------------------------------------------------------
# the learners


class SLearner(UpliftLearner):
    """One outcome model over the features plus the arm (a categorical column); uplift is the
    difference of its predictions with the arm set to each action and to control. Rows are
    inverse-propensity weighted so the pooled sample mirrors the population in every arm. Cheap,
    but trees may split on the arm rarely, which shrinks small effects towards zero.

    Predictions walk each tree once per row for all arms together (`forest_`, derived from the
    model at fit and load; training.uplift.arm_forest), the arms parting only where a tree reads
    the arm. Work too small to pay for loading that walk in a process, and a model that cannot
    be walked so, are asked of LightGBM once per arm (the same numbers: its raw scores are the
    walk's, and the forest's link follows).
    """

    kind = "S"
    forest_: ArmForest | None

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, p: np.ndarray) -> None:
        cats = [*(self.categorical or []), X.shape[1]]
        Xa = np.column_stack([X, arm.astype(np.float64)])
        data = BinnedFeatures(Xa, cats).subset(None, y, 1.0 / p)
        self.models_["mu"] = self._train(data, self.objective_)
        self._loaded()

    def _loaded(self) -> None:
        """The outcome model's trees as one ArmForest (None: LightGBM walks them per arm)."""
        self.forest_ = ArmForest.of(self.models_["mu"], self.n_features_in_)

    def predict_outcomes(self, X: np.ndarray) -> np.ndarray:
        """Expected outcome under each arm, shape (n, 1 + n_actions): control first."""
        X = self._check_matrix(X)
        return self._outcomes(X, range(len(self.actions_) + 1))

    def _outcomes(self, X: np.ndarray, arms: Sequence[int]) -> np.ndarray:
        """(n, len(arms)) expected outcomes with the arm column set to each code in `arms`."""
        codes = np.asarray(arms, dtype=np.float64)
        forest = getattr(self, "forest_", None)
        if forest is not None and forest.worth_walking(len(X), len(codes)):
            return forest.predict(X, codes)
        raw = forest is not None  # then the forest's link: the same numbers as its walk
        Xa = np.empty((len(X), X.shape[1] + 1), dtype=np.float64)  # copied once, not per arm
        Xa[:, :-1] = X
        outcomes = np.empty((len(X), len(codes)), dtype=np.float64)
        for j, code in enumerate(codes):
            Xa[:, -1] = code
            outcomes[:, j] = self.models_["mu"].predict(Xa, raw_score=raw, num_threads=self.n_jobs)
        return forest.link(outcomes) if forest is not None else outcomes

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._predict_actions(X, self.actions_)

    def _predict_actions(self, X: np.ndarray, actions: Sequence[str]) -> np.ndarray:
        mu = self._outcomes(X, [0, *(self.actions_.index(a) + 1 for a in actions)])
        return mu[:, 1:] - mu[:, [0]]


class TLearner(UpliftLearner):
    """One outcome model per arm (control included), each inverse-propensity weighted so that it
    learns the outcome surface over the whole population, not only over the customers a targeted
    campaign picked."""

    kind = "T"

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, p: np.ndarray) -> None:
        self._fit_outcomes(X, arm, y, p)

    def _fit_outcomes(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, p: np.ndarray) -> None:
        for k in range(len(self.actions_) + 1):
            rows = arm == k
            self.models_[f"mu:{_arm_name(k, self.actions_)}"] = self._booster(
                rows, y[rows], 1.0 / p[rows], self.objective_
            )

    def predict_outcomes(self, X: np.ndarray) -> np.ndarray:
        """Expected outcome under each arm, shape (n, 1 + n_actions): control first."""
        X = self._check_matrix(X)
        return self._outcomes(X, [CONTROL, *self.actions_])

    def _outcomes(self, X: np.ndarray, arms: Sequence[str]) -> np.ndarray:
        """(n, len(arms)) expected outcomes under the named arms."""
        return np.column_stack([self._score(f"mu:{a}", X) for a in arms])

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._predict_actions(X, self.actions_)

    def _predict_actions(self, X: np.ndarray, actions: Sequence[str]) -> np.ndarray:
        mu = self._outcomes(X, [CONTROL, *actions])
        return mu[:, 1:] - mu[:, [0]]


class XLearner(TLearner):
    """X-learner: the T-learner's outcome models impute each row's individual effect — treated
    rows y - mu_c(x), control rows mu_a(x) - y — and two regressions of those (IPW-weighted)
    are blended by the arm's share of arm + control rows. Strong when arms are unbalanced."""

    kind = "X"

    def fit(
        self,
        X: np.ndarray,
        treatment: np.ndarray,
        y: np.ndarray,
        propensity: np.ndarray | None = None,
        binned: BinnedFeatures | None = None,
        first_stage: TLearner | None = None,
    ) -> Self:
        """As every learner; `first_stage`, a T-learner already fitted on these same rows with
        the same parameters, lends its outcome models instead of fitting them again."""
        self._first_stage = first_stage
        try:
            return super().fit(X, treatment, y, propensity, binned)
        finally:
            del self._first_stage

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, p: np.ndarray) -> None:
        lent = getattr(self, "_first_stage", None)
        if lent is not None and lent.actions_ == self.actions_:
            self.models_.update({k: m for k, m in lent.models_.items() if k.startswith("mu:")})
        else:
            self._fit_outcomes(X, arm, y, p)
        ctrl = arm == 0
        mu_c = self._score(f"mu:{CONTROL}", X[~ctrl])
        shares = {}
        for k, action in enumerate(self.actions_, start=1):
            treated = arm == k
            d_treated = y[treated] - mu_c[arm[~ctrl] == k]
            d_control = self._score(f"mu:{action}", X[ctrl]) - y[ctrl]
            self.models_[f"tau1:{action}"] = self._booster(
                treated, d_treated, 1.0 / p[treated], "regression"
            )
            self.models_[f"tau0:{action}"] = self._booster(
                ctrl, d_control, 1.0 / p[ctrl], "regression"
            )
            shares[action] = float(treated.sum() / (treated.sum() + ctrl.sum()))
        self.state_["share"] = shares

    def _predict_actions(self, X: np.ndarray, actions: Sequence[str]) -> np.ndarray:
        return np.column_stack(
            [
                blend_x_effects(
                    self._score(f"tau0:{a}", X),
                    self._score(f"tau1:{a}", X),
                    self.state_["share"][a],
                )
                for a in actions
            ]
        )


class DRLearner(UpliftLearner):
    """DR-learner: per action, a regression of AIPW pseudo-outcomes (`aipw_pseudo_outcome`) built
    with the logged propensities and per-arm outcome models cross-fitted on 2 folds. Unbiased when
    either the outcome models or the propensities are right; the logged propensities of a
    targeted campaign are right by construction."""

    kind = "DR"
    n_folds: ClassVar[int] = 2

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, p: np.ndarray) -> None:
        mu = self._cross_fitted_outcomes(X, arm, y)
        for k, action in enumerate(self.actions_, start=1):
            # every row: the AIPW balance (correction terms averaging out given x) needs them all
            phi = aipw_pseudo_outcome(y, arm == k, arm == 0, mu[:, k], mu[:, 0], p)
            self.models_[f"tau:{action}"] = self._booster(None, phi, None, "regression")

    def _cross_fitted_outcomes(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray) -> np.ndarray:
        """(n, 1 + n_actions) out-of-fold predicted outcomes; folds stratified by arm."""
        rng = np.random.default_rng(self.random_state)
        fold = np.empty(len(y), dtype=np.int64)
        for k in np.unique(arm):
            rows = np.flatnonzero(arm == k)
            fold[rows] = rng.permutation(len(rows)) % self.n_folds
        mu = np.empty((len(y), len(self.actions_) + 1))
        for f in range(self.n_folds):
            train, held = fold != f, fold == f
            for k in range(len(self.actions_) + 1):
                rows = train & (arm == k)
                booster = self._booster(rows, y[rows], None, self.objective_)
                mu[held, k] = booster.predict(X[held], num_threads=self.n_jobs)
        return mu

    def _predict(self, X: np.ndarray) -> np.ndarray:
        return self._predict_actions(X, self.actions_)

    def _predict_actions(self, X: np.ndarray, actions: Sequence[str]) -> np.ndarray:
        return np.column_stack([self._score(f"tau:{a}", X) for a in actions])


class LinearTLearner(UpliftLearner):
    """T-learner over linear models (training.uplift.linear): per arm a regularised GLM —
    logistic for binary outcomes, log-link Poisson for tweedie ones, least squares otherwise —
    on one shared design of the features, inverse-propensity weighted. The trees' parameters are
    unused. Strong where effects are small and smooth and rows are few, as on e-mail tests."""

    kind = "LT"
    GLM_KIND: ClassVar[dict[str, str]] = {
        "binary": "binary", "tweedie": "poisson", "regression": "regression",
    }  # fmt: skip

    def _fit(self, X: np.ndarray, arm: np.ndarray, y: np.ndarray, p: np.ndarray) -> None:
        design = linear.fit_design(X, list(self.categorical or []))
        Z, glm = design.transform(X), self.GLM_KIND[self.objective_]
        self.state_ = {"design": design.to_dict(), "glm": glm, "arms": {}}
        for k in range(len(self.actions_) + 1):
            rows = arm == k
            coef, intercept = linear.fit_glm(Z[rows], y[rows], 1.0 / p[rows], glm)
            self.state_["arms"][_arm_name(k, self.actions_)] = [coef.tolist(), intercept]
        self._loaded()

    def _loaded(self) -> None:
        """The state as arrays, once, not per one-row request: design, (columns, arms)
        coefficients and intercepts, control first."""
        weights = [self.state_["arms"][a] for a in [CONTROL, *self.actions_]]
        self.glm_ = (
            linear.Design.from_dict(self.state_["design"]),
            np.array([w for w, _ in weights], dtype=np.float64).T,
            np.array([b for _, b in weights], dtype=np.float64),
        )

    def predict_outcomes(self, X: np.ndarray) -> np.ndarray:
        """Expected outcome under each arm, shape (n, 1 + n_actions): control first."""
        X = self._check_matrix(X)
        design, coef, intercept = self.glm_
        return linear.predict_glm(design.transform(X), coef, intercept, self.state_["glm"])

    def _predict(self, X: np.ndarray) -> np.ndarray:
        mu = self.predict_outcomes(X)
        return mu[:, 1:] - mu[:, [0]]

    def feature_gain(self, action: str) -> np.ndarray:
        """Share per feature of |action's coefficients − control's| on the standardised design
        (a feature's missing flag and one-hot columns count towards it)."""
        design, arms = self.glm_[0], self.state_["arms"]
        weight = np.abs(np.subtract(arms[action][0], arms[CONTROL][0]))
        gain = np.zeros(self.n_features_in_)
        np.add.at(gain, design.source(), weight)
        return gain / gain.sum() if gain.sum() > 0 else gain


LEARNERS: dict[str, type[UpliftLearner]] = {
    cls.__name__: cls for cls in (SLearner, TLearner, XLearner, DRLearner, LinearTLearner)
}
