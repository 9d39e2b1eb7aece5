"""The interface every score model follows, so training, the bundle and promotion treat them alike,
and the LightGBM machinery the three score models share.

A score model is a scikit-learn-style estimator over the model matrix (`features.to_matrix`): float32
numpy, categoricals as codes. It persists WITHOUT pickle — LightGBM's text format plus JSON — so a
bundle is safe to load and readable by other tools.

Tree size follows the data unless set explicitly (`num_leaves=None`, `min_child_samples=None`):
small tables (a few thousand customers, such as IBM Telco) need shallow, heavily regularised trees,
while millions of snapshot rows can afford 63 leaves. See `auto_num_leaves` and
`auto_min_child_samples` for the rules and the measurements behind them.
"""

from __future__ import annotations

import inspect
import json
import math
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Self, runtime_checkable

import lightgbm as lgb
import numpy as np
from matplotlib.figure import Figure
from sklearn.base import BaseEstimator

from training.data.snapshots import TrainingSet
from training.errors import NextbestError

FORMAT_VERSION = 1
MODEL_FILE = "model.txt"
META_FILE = "model.json"
NO_VALIDATION_ROUNDS = 100  # boosting rounds when there is no validation slice to stop on


@runtime_checkable
class ScoreModel(Protocol):
    """What train.py, bundle.py and promote.py rely on."""

    role: str  # "churn" | "satisfaction" | "value"
    score_name: str  # column in the scores table: churn_probability | satisfaction | ltv
    main_metric: str  # the metric promotion compares
    greater_is_better: bool

    def fit_set(self, data: TrainingSet) -> ScoreModel: ...

    def predict(self, X: np.ndarray) -> np.ndarray: ...

    def evaluate(self, data: TrainingSet) -> dict[str, float]: ...

    def figures(self, data: TrainingSet) -> dict[str, Figure]: ...

    def params(self) -> dict[str, Any]: ...

    def save(self, folder: Path) -> None: ...

    @classmethod
    def load(cls, folder: Path) -> ScoreModel: ...


# ---------------------------------------------------------------------------------------------
# rules: tree size from the number of fitting rows


def auto_num_leaves(n_rows: int) -> int:
    """Leaves per tree growing with the square root of the rows: 4 up to ~5k rows (Telco: 4-7
    leaves beat 15 by 0.001-0.002 AUC), 6 at 10k, 20 at 100k, 63 from ~1M rows."""
    return int(np.clip(round(math.sqrt(max(n_rows, 1)) / 16), 4, 63))


def auto_min_child_samples(n_rows: int) -> int:
    """Rows per leaf: 1% of the rows, at least 20 and at most 500, so a leaf of a small table
    is never a handful of customers and large tables keep fine splits."""
    return int(np.clip(n_rows // 100, 20, 500))


def subsample_rows(y: np.ndarray, max_rows: int | None, stratify: bool, seed: int) -> np.ndarray:
    """Sorted row indices of at most `max_rows` rows drawn without replacement; per class in
    proportion when `stratify` (so a rare outcome keeps its rate). All rows when under the cap."""
    n = len(y)
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    if not stratify:
        return np.sort(rng.choice(n, size=max_rows, replace=False))
    picked = []
    for value in np.unique(y):
        rows = np.flatnonzero(y == value)
        take = max(1, round(len(rows) * max_rows / n))
        picked.append(rng.choice(rows, size=min(take, len(rows)), replace=False))
    return np.sort(np.concatenate(picked))


def check_matrix(X: np.ndarray, n_features: int) -> np.ndarray:
    """`X` as a 2-D float array with the fitted number of columns, or a clear error."""
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[1] != n_features:
        raise NextbestError(
            f"expected a matrix with {n_features} feature columns, got shape {X.shape}"
        )
    return X


# ---------------------------------------------------------------------------------------------
# the shared estimator


@dataclass(frozen=True)
class BoostRequest:
    """One boosting job of a score model: parameters, fitting rows, early-stopping rows (may be
    empty), feature names, categorical column indices and the round budget."""

    params: dict[str, Any]
    X: np.ndarray
    y: np.ndarray
    X_stop: np.ndarray
    y_stop: np.ndarray
    feature_names: list[str]
    categorical: list[int]
    rounds: int
    early_stopping_rounds: int


class BoosterTrainer(Protocol):
    """Boosts a BoostRequest; returns the booster and the iteration to keep."""

    def __call__(self, request: BoostRequest) -> tuple[lgb.Booster, int]: ...


# The seam for distributed training: None boosts in this process (training.scores.distributed sets it).
BOOSTER_TRAINER: ContextVar[BoosterTrainer | None] = ContextVar("booster_trainer", default=None)


def boost_in_process(request: BoostRequest) -> tuple[lgb.Booster, int]:
    """lgb.train with early stopping on the first metric when there are stopping rows."""
    r = request
    train = lgb.Dataset(
        r.X, r.y, feature_name=r.feature_names, categorical_feature=r.categorical,
        params={"verbose": -1},
    )  # fmt: skip
    if not len(r.y_stop):
        booster = lgb.train(r.params, train, r.rounds)
        return booster, booster.current_iteration()
    valid = lgb.Dataset(r.X_stop, r.y_stop, reference=train)
    stop = lgb.early_stopping(r.early_stopping_rounds, first_metric_only=True, verbose=False)
    booster = lgb.train(r.params, train, r.rounds, valid_sets=[valid], callbacks=[stop])
    return booster, booster.best_iteration or booster.current_iteration()


class LightGBMScoreModel(BaseEstimator):
    """Common LightGBM training, persistence and reporting of the score models.

    Subclasses define `__init__` with their hyper-parameters (keyword-only, stored verbatim), the
    class-level `role`/`score_name`/`main_metric`/`greater_is_better`, `_objective()` (and may extend
    `_booster_params`) and, when they learn more than the booster, `_extra_state()` / `_restore_extra_state()`.
    """

    role: str = ""
    score_name: str = ""
    main_metric: str = ""
    greater_is_better: bool = True

    # hyper-parameters every subclass declares in its __init__
    n_estimators: int
    learning_rate: float
    num_leaves: int | None
    min_child_samples: int | None
    max_bin: int
    feature_fraction: float
    bagging_fraction: float
    lambda_l2: float
    early_stopping_rounds: int
    max_fit_rows: int | None
    n_jobs: int
    random_state: int

    booster_: lgb.Booster
    feature_names_: list[str]
    categorical_: list[str]
    best_iteration_: int
    lgb_params_: dict[str, Any]

    # -- to override ------------------------------------------------------------------------

    def _objective(self) -> dict[str, Any]:
        """LightGBM objective and early-stopping metric of this score."""
        raise NotImplementedError

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        return None

    # -- training ---------------------------------------------------------------------------

    def _booster_params(self, n_rows: int, names: list[str]) -> dict[str, Any]:
        """Every LightGBM parameter, resolved for `n_rows` fitting rows (see the auto rules)."""
        params: dict[str, Any] = {
            **self._objective(),
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves or auto_num_leaves(n_rows),
            "min_child_samples": self.min_child_samples or auto_min_child_samples(n_rows),
            "max_bin": self.max_bin,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1 else 0,
            "lambda_l2": self.lambda_l2,
            "num_threads": self.n_jobs,
            "seed": self.random_state,
            "deterministic": True,
            "force_row_wise": True,
            "verbose": -1,
        }
        return params

    def _start(self, data: TrainingSet) -> None:
        self.feature_names_ = list(data.feature_names)
        self.categorical_ = list(data.categorical)
        if data.X_fit.shape[1] != len(self.feature_names_):
            raise NextbestError(
                f"{type(self).__name__}: X_fit has {data.X_fit.shape[1]} columns for "
                f"{len(self.feature_names_)} feature names"
            )
        if len(data.y_fit) == 0:
            raise NextbestError(f"{type(self).__name__}: no rows to fit on")

    def _train(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_stop: np.ndarray,
        y_stop: np.ndarray,
    ) -> None:
        """Boost on (X, y), stopping early on (X_stop, y_stop) when it has rows; keep only the
        trees up to the best iteration, reloaded from their text form so that `predict` here and
        after `load` run the very same model. The boosting itself is the active BoosterTrainer's
        (in this process unless training.scores.distributed put LightGBM's Dask estimators in place)."""
        names = self.feature_names_
        request = BoostRequest(
            params=self._booster_params(len(y), names),
            X=X,
            y=y,
            X_stop=X_stop,
            y_stop=y_stop,
            feature_names=names,
            categorical=[names.index(c) for c in self.categorical_],
            rounds=self.n_estimators
            if len(y_stop)
            else min(self.n_estimators, NO_VALIDATION_ROUNDS),
            early_stopping_rounds=self.early_stopping_rounds,
        )
        booster, best = (BOOSTER_TRAINER.get() or boost_in_process)(request)
        self.booster_ = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        self.best_iteration_ = best
        self.lgb_params_ = request.params

    def _raw(self, X: np.ndarray) -> np.ndarray:
        """The booster's raw score (margin / log-mean) for rows of the model matrix."""
        X = check_matrix(X, len(self.feature_names_))
        return np.asarray(self.booster_.predict(X, raw_score=True, num_threads=1), dtype=np.float64)

    def _fit_rows(self, data: TrainingSet, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
        keep = subsample_rows(data.y_fit, self.max_fit_rows, stratify, self.random_state)
        if len(keep) == len(data.y_fit):
            return data.X_fit, data.y_fit
        return data.X_fit[keep], data.y_fit[keep]

    # -- reporting --------------------------------------------------------------------------

    def gain_importance(self) -> np.ndarray:
        """Total split gain per feature, in feature order."""
        return np.asarray(
            self.booster_.feature_importance(importance_type="gain"), dtype=np.float64
        )

    def params(self) -> dict[str, Any]:
        """Hyper-parameters as given, the LightGBM parameters they resolved to and the number of
        trees kept: what a tracking run logs."""
        out: dict[str, Any] = dict(self.get_params())
        resolved = getattr(self, "lgb_params_", {})
        out.update({f"lgb_{k}": v for k, v in resolved.items() if k != "monotone_constraints"})
        if "monotone_constraints" in resolved:
            out["lgb_monotone_features"] = int(np.count_nonzero(resolved["monotone_constraints"]))
        if hasattr(self, "best_iteration_"):
            out["best_iteration"] = self.best_iteration_
        return out

    # -- persistence ------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """LightGBM's text model plus one JSON file (hyper-parameters and learned state)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster_.save_model(str(folder / MODEL_FILE))
        meta = {
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "hyper_parameters": self.get_params(),
            "feature_names": self.feature_names_,
            "categorical": self.categorical_,
            "best_iteration": self.best_iteration_,
            "lgb_params": self.lgb_params_,
            "state": self._extra_state(),
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=1, allow_nan=True))

    @classmethod
    def load(cls, folder: Path) -> Self:
        """The model saved by `save` in `folder`; refuses another class or format version."""
        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION or meta.get("class") != cls.__name__:
            raise NextbestError(
                f"{folder / META_FILE}: holds a {meta.get('class')} of format "
                f"{meta.get('format_version')}, expected {cls.__name__} of format {FORMAT_VERSION}"
            )
        model = cls(**_restore_tuples(cls, meta["hyper_parameters"]))
        model.booster_ = lgb.Booster(model_file=str(folder / MODEL_FILE))
        model.feature_names_ = list(meta["feature_names"])
        model.categorical_ = list(meta["categorical"])
        model.best_iteration_ = int(meta["best_iteration"])
        model.lgb_params_ = dict(meta["lgb_params"])
        model._restore_extra_state(meta["state"])
        return model


def _restore_tuples(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists: give back tuples where the __init__ default is one."""
    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
    return {
        k: tuple(v) if isinstance(defaults.get(k), tuple) and isinstance(v, list) else v
        for k, v in params.items()
    }
