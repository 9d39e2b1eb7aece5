"""The interface every score model follows, so training, the bundle and promotion treat them alike,
and the LightGBM machinery the three score models share.

A score model is a scikit-learn estimator over the model matrix (`features.to_matrix`): float32
numpy, categoricals as codes. `fit(X, y, *, eval_set=(X_val, y_val))` boosts on (X, y), stopping
early (and, for churn, calibrating) on the validation rows; the names of the columns and the
categorical ones are hyper-parameters (`feature_names`, `categorical`), so `clone` and
`cross_validate` refit the same model. `fit_on(model, training_set)` is that call for a TrainingSet.
Evaluating a model against its baseline and drawing its figures is not the estimator's job: see
`training.evaluation.score_metrics`. A model persists WITHOUT pickle — LightGBM's text format plus
JSON — so a bundle is safe to load and readable by other tools; folders saved before the names
became hyper-parameters load unchanged.

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
from typing import Any, Protocol, Self, TypeVar, runtime_checkable

import lightgbm as lgb
import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.utils.validation import check_array, column_or_1d, validate_data

from training.data.snapshots import TrainingSet
from training.errors import EstimatorInputError, NextbestError

FORMAT_VERSION = 1
MODEL_FILE = "model.txt"
META_FILE = "model.json"
NO_VALIDATION_ROUNDS = 100  # boosting rounds when there is no validation slice to stop on
FLOATS = (np.float32, np.float64)  # matrix dtypes taken as they are (others become float64)


@runtime_checkable
class ScoreModel(Protocol):
    """What train.py, bundle.py and promote.py rely on."""

    role: str  # "churn" | "satisfaction" | "value"
    score_name: str  # column in the scores table: churn_probability | satisfaction | window_value
    main_metric: str  # the metric promotion compares
    greater_is_better: bool

    feature_names_: list[str]

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, eval_set: tuple[np.ndarray, np.ndarray] | None = None
    ) -> ScoreModel: ...

    def predict_score(self, X: np.ndarray) -> np.ndarray: ...

    def gain_importance(self) -> np.ndarray: ...

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


def check_width(X: np.ndarray, n_features: int, owner: str) -> np.ndarray:
    """`X` itself when it has the fitted number of columns, else an EstimatorInputError whose message
    is scikit-learn's ("X has 5 features, but ... is expecting 172 features as input")."""
    if X.shape[1] != n_features:
        raise EstimatorInputError(
            f"X has {X.shape[1]} features, but {owner} is expecting {n_features} features as "
            "input (the feature columns of the model matrix it was fitted on)"
        )
    return X


def require_fitted(model: object, attribute: str) -> None:
    """scikit-learn's NotFittedError unless `model` has `attribute`: a plain attribute test,
    since `check_is_fitted` costs more than predicting a row does on the serving path."""
    if not hasattr(model, attribute):
        raise NotFittedError(
            f"This {type(model).__name__} instance is not fitted yet. Call 'fit' with "
            "appropriate arguments before using this estimator."
        )


M = TypeVar("M", bound="LightGBMScoreModel")


def fit_on(model: M, data: TrainingSet) -> M:
    """`model` fitted on a TrainingSet: its feature names and categorical columns as the model's
    `feature_names` / `categorical`, X_fit/y_fit to fit, X_val/y_val as the eval_set."""
    model.set_params(feature_names=tuple(data.feature_names), categorical=tuple(data.categorical))
    return model.fit(data.X_fit, data.y_fit, eval_set=(data.X_val, data.y_val))


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

    Subclasses define `__init__` with their hyper-parameters (keyword-only, stored verbatim, among
    them `feature_names` and `categorical`), the class-level `role`/`score_name`/`main_metric`/
    `greater_is_better`, `_objective()` (and may extend `_booster_params`), `_fit(X, y, X_val,
    y_val)` and, when they learn more than the booster, `_extra_state()` / `_restore_extra_state()`.
    """

    role: str = ""
    score_name: str = ""
    main_metric: str = ""
    greater_is_better: bool = True
    _labels: bool = False  # whether y holds class labels (churn) rather than amounts

    # hyper-parameters every subclass declares in its __init__
    feature_names: tuple[str, ...]
    categorical: tuple[str, ...]
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
    n_features_in_: int
    best_iteration_: int
    lgb_params_: dict[str, Any]

    # -- to override ------------------------------------------------------------------------

    def _objective(self) -> dict[str, Any]:
        """LightGBM objective and early-stopping metric of this score."""
        raise NotImplementedError

    def _fit(self, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, y_val: np.ndarray) -> None:
        """Learn from checked inputs: (X, y) to fit, (X_val, y_val) validation rows (may be empty)."""
        raise NotImplementedError

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _restore_extra_state(self, state: dict[str, Any]) -> None:
        return None

    @classmethod
    def _params_from_state(cls, state: dict[str, Any]) -> dict[str, Any]:
        """Hyper-parameters a folder saved before they existed implies by its learned state."""
        return {}

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # LightGBM routes missing values itself
        return tags

    # -- scikit-learn API -------------------------------------------------------------------

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, eval_set: tuple[np.ndarray, np.ndarray] | None = None
    ) -> Self:
        """Boost on (X, y); `eval_set=(X_val, y_val)` are the validation rows the model stops
        early on (and calibrates on, for churn); without them it boosts NO_VALIDATION_ROUNDS."""
        X, y = self._check_fit(X, y)
        X_val, y_val = self._check_eval_set(eval_set, X)
        self._fit(X, y, X_val, y_val)
        return self

    def predict_score(self, X: np.ndarray) -> np.ndarray:
        """The score of each row as the scores table holds it (here: `predict`)."""
        return np.asarray(self.predict(X), dtype=np.float64)

    # -- validation -------------------------------------------------------------------------

    def _check_fit(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) checked as scikit-learn does, and the column names resolved: `feature_names`,
        else a DataFrame's columns, else x0, x1, ..."""
        X, y = validate_data(
            self,
            X,
            y,
            dtype=list(FLOATS),
            ensure_all_finite=False,
            ensure_min_samples=2,  # LightGBM cannot bin a single row
            y_numeric=not self._labels,
        )
        given = list(self.feature_names) or list(getattr(self, "feature_names_in_", []))
        names = given or [f"x{j}" for j in range(X.shape[1])]
        owner = type(self).__name__
        if X.shape[1] != len(names):
            raise NextbestError(
                f"{owner}: X has {X.shape[1]} columns for {len(names)} feature names"
            )
        unknown = sorted(set(self.categorical) - set(names))
        if unknown:
            raise NextbestError(f"{owner}: categorical columns {unknown} are not feature names")
        self.feature_names_ = names
        self.categorical_ = list(self.categorical)
        return X, self._check_target(y)

    def _check_target(self, y: np.ndarray) -> np.ndarray:
        """The outcomes as float64 (a classifier also checks its labels)."""
        return np.asarray(y, dtype=np.float64)

    def _check_eval_set(
        self, eval_set: tuple[np.ndarray, np.ndarray] | None, X: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The validation rows (X_val, y_val), empty without an eval_set."""
        if eval_set is None:
            return X[:0], np.empty(0)
        if len(eval_set) != 2:
            raise NextbestError(f"{type(self).__name__}: eval_set must be (X_val, y_val)")
        X_val = check_array(
            eval_set[0], dtype=list(FLOATS), ensure_all_finite=False, ensure_min_samples=0
        )
        y_val = np.asarray(column_or_1d(eval_set[1]), dtype=np.float64)
        check_width(X_val, X.shape[1], type(self).__name__)
        if len(X_val) != len(y_val):
            raise NextbestError(
                f"{type(self).__name__}: eval_set has {len(X_val)} rows but {len(y_val)} outcomes"
            )
        return X_val, y_val

    def _check_predict(self, X: Any) -> np.ndarray:
        """`X` as a matrix of the fitted width; a float numpy matrix passes as it is (the serving
        path), anything else goes through scikit-learn's checks."""
        require_fitted(self, "booster_")
        if isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype in FLOATS:
            return check_width(X, self.n_features_in_, type(self).__name__)
        return validate_data(self, X, reset=False, dtype=list(FLOATS), ensure_all_finite=False)

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
        X = self._check_predict(X)
        return np.asarray(self.booster_.predict(X, raw_score=True, num_threads=1), dtype=np.float64)

    def _fit_rows(
        self, X: np.ndarray, y: np.ndarray, stratify: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        keep = subsample_rows(y, self.max_fit_rows, stratify, self.random_state)
        if len(keep) == len(y):
            return X, y
        return X[keep], y[keep]

    # -- reporting --------------------------------------------------------------------------

    def gain_importance(self) -> np.ndarray:
        """Total split gain per feature, in feature order."""
        return np.asarray(
            self.booster_.feature_importance(importance_type="gain"), dtype=np.float64
        )

    def params(self) -> dict[str, Any]:
        """Hyper-parameters as given (the column names aside: they describe the data), the
        LightGBM parameters they resolved to and the number of trees kept: what a run logs."""
        out: dict[str, Any] = {
            k: v for k, v in self.get_params().items() if k not in ("feature_names", "categorical")
        }
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
        """The model saved by `save` in `folder`; refuses another class or format version. A
        folder saved before `feature_names`/`categorical` were hyper-parameters gets them from
        its learned names, so the loaded model refits as it was fitted."""
        folder = Path(folder)
        meta = json.loads((folder / META_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION or meta.get("class") != cls.__name__:
            raise NextbestError(
                f"{folder / META_FILE}: holds a {meta.get('class')} of format "
                f"{meta.get('format_version')}, expected {cls.__name__} of format {FORMAT_VERSION}"
            )
        hyper = {
            "feature_names": meta["feature_names"],
            "categorical": meta["categorical"],
            **cls._params_from_state(meta["state"]),
            **meta["hyper_parameters"],
        }
        model = cls(**_restore_tuples(cls, hyper))
        model.booster_ = lgb.Booster(model_file=str(folder / MODEL_FILE))
        model.feature_names_ = list(meta["feature_names"])
        model.categorical_ = list(meta["categorical"])
        model.n_features_in_ = len(model.feature_names_)
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
