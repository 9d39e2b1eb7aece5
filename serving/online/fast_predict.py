"""One-row LightGBM predictions without the Python wrapper's per-call set-up.

`Booster.predict` rebuilds a predictor and its parameter string on every call: ~0.1 ms, which is
almost all of the time of a one-row prediction. A decision makes ~25 of them (3 score models and
one or more boosters per action and uplift outcome), so the service would spend most of its
budget there. LightGBM's C API has a path made for this, `LGBM_BoosterPredictForMatSingleRowFast`:
the configuration is prepared once per booster and prediction type, then each row costs only the
tree walk. `FastBooster` wraps a booster with it for one-row calls and delegates everything else
(several rows, leaf indices, importances) to the booster itself, so it drops into the bundle's
models unchanged; the trees are the same, and so are the predictions (a test checks bit equality).
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _safe_call

from training.registry.bundle import Bundle
from training.uplift.learners import UpliftLearner
from training.uplift.selection import base_learners

_PREDICT_NORMAL, _PREDICT_RAW, _PREDICT_CONTRIB = 0, 1, 3  # C_API_PREDICT_* of c_api.h
_FLOAT64 = 1  # C_API_DTYPE_FLOAT64
_ALL_ITERATIONS = -1
# Up to this many rows are predicted row by row on the fast path (a decision's few rows, an
# S-learner's copy per arm); more go to the booster's own predict, whose set-up then pays off.
FEW_ROWS = 64


class FastBooster:
    """A booster whose one-row `predict` goes through LightGBM's single-row fast C API."""

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster = booster
        self.n_features = booster.num_feature()
        self.n_outputs = booster.num_model_per_iteration()
        self._lock = threading.Lock()  # fast configs and buffers below: one caller at a time
        self._row = np.empty(self.n_features, dtype=np.float64)
        self._row_ptr = self._row.ctypes.data_as(ctypes.c_void_p)
        self._out_len = ctypes.c_int64()
        self._out_len_ref = ctypes.byref(self._out_len)
        self._fast: dict[int, tuple[ctypes.c_void_p, np.ndarray, Any]] = {}

    def _prepared(self, predict_type: int) -> tuple[ctypes.c_void_p, np.ndarray, Any]:
        """(fast config, result buffer, its C pointer) for a prediction type, made once."""
        if predict_type not in self._fast:
            config = ctypes.c_void_p()
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                    self.booster._handle,
                    ctypes.c_int(predict_type),
                    ctypes.c_int(0),
                    ctypes.c_int(_ALL_ITERATIONS),
                    ctypes.c_int(_FLOAT64),
                    ctypes.c_int32(self.n_features),
                    ctypes.c_char_p(b"num_threads=1"),
                    ctypes.byref(config),
                )
            )
            width = self.n_features + 1 if predict_type == _PREDICT_CONTRIB else 1
            out = np.empty(self.n_outputs * width, dtype=np.float64)
            self._fast[predict_type] = (
                config,
                out,
                out.ctypes.data_as(ctypes.POINTER(ctypes.c_double)),
            )
        return self._fast[predict_type]

    def _predict_type(self, X: Any, raw_score: bool, kwargs: dict[str, Any]) -> int | None:
        """The fast path's prediction type for this call, or None when it does not apply."""
        plain = (
            isinstance(X, np.ndarray)
            and X.ndim == 2
            and X.shape[1] == self.n_features
            and 0 < len(X) <= FEW_ROWS
            and not kwargs.get("pred_leaf")
            and kwargs.get("num_iteration") in (None, 0, -1)
            and not kwargs.get("start_iteration")
        )
        if not plain:
            return None
        if kwargs.get("pred_contrib"):
            return _PREDICT_CONTRIB if self.n_outputs == 1 else None
        return _PREDICT_RAW if raw_score else _PREDICT_NORMAL

    def predict(self, X: Any, raw_score: bool = False, **kwargs: Any) -> np.ndarray:
        """Like `Booster.predict`; a few plain rows (a decision's) take the fast path, row by row."""
        predict_type = self._predict_type(X, raw_score, kwargs)
        if predict_type is None:
            return np.asarray(self.booster.predict(X, raw_score=raw_score, **kwargs))
        with self._lock:
            config, out, out_ptr = self._prepared(predict_type)
            result = np.empty((len(X), len(out)), dtype=np.float64)
            for i, row in enumerate(X):
                self._row[:] = row
                _safe_call(
                    _LIB.LGBM_BoosterPredictForMatSingleRowFast(
                        config, self._row_ptr, self._out_len_ref, out_ptr
                    )
                )
                result[i] = out
        if predict_type == _PREDICT_CONTRIB or self.n_outputs > 1:
            return result
        return result[:, 0]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.booster, name)

    def __del__(self) -> None:
        for config, _, _ in self._fast.values():
            _LIB.LGBM_FastConfigFree(config)


def accelerate(bundle: Bundle) -> Bundle:
    """Wrap every booster of the bundle's score and uplift models in a FastBooster (in place)."""
    for score_model in bundle.models.values():
        booster = getattr(score_model, "booster_", None)
        if isinstance(booster, lgb.Booster):
            score_model.booster_ = FastBooster(booster)  # type: ignore[attr-defined]
    for model in bundle.uplift.values():
        for learner in base_learners(model):
            accelerate_learner(learner)
    return bundle


def accelerate_learner(learner: UpliftLearner) -> UpliftLearner:
    """Wrap a meta-learner's boosters in FastBoosters (in place). An S-learner's own tree walk
    (its `forest_`) needs none; its booster serves the models that cannot be walked so."""
    for name, booster in list(learner.models_.items()):
        if isinstance(booster, lgb.Booster):
            learner.models_[name] = FastBooster(booster)  # type: ignore[assignment]
    return learner
