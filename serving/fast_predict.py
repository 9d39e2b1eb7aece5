"""One-row LightGBM predictions without the Python wrapper's per-call set-up.

`Booster.predict` rebuilds a predictor and its parameter string on every call: ~0.1 ms, which is
almost all of the time of a one-row prediction. A decision makes ~25 of them (3 score models and
one or more boosters per action and uplift outcome), so the service would spend most of its
budget there. LightGBM's C API has a path made for this, `LGBM_BoosterPredictForMatSingleRowFast`:
the configuration is prepared once per booster and prediction type, then each row costs only the
tree walk. `FastBooster` wraps a booster with it for one-row calls and delegates everything else
(several rows, SHAP contributions, importances) to the booster itself, so it drops into the bundle's
models unchanged; the trees are the same, and so are the predictions (a test checks bit equality).
"""

from __future__ import annotations

import ctypes
import threading
from typing import TYPE_CHECKING, Any

import lightgbm as lgb
import numpy as np
from lightgbm.basic import _LIB, _safe_call

if TYPE_CHECKING:
    from training.bundle import Bundle

_PREDICT_NORMAL, _PREDICT_RAW = 0, 1  # C_API_PREDICT_* of LightGBM's c_api.h
_FLOAT64 = 1  # C_API_DTYPE_FLOAT64
_ALL_ITERATIONS = -1


class FastBooster:
    """A booster whose one-row `predict` goes through LightGBM's single-row fast C API."""

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster = booster
        self.n_features = booster.num_feature()
        self.n_outputs = booster.num_model_per_iteration()
        self._configs: dict[bool, ctypes.c_void_p] = {}
        self._lock = threading.Lock()  # a fast config and the buffers below: one caller at a time
        # the row and result buffers and their C pointers, made once: per call only the tree walk
        self._row = np.empty(self.n_features, dtype=np.float64)
        self._out = np.empty(self.n_outputs, dtype=np.float64)
        self._out_len = ctypes.c_int64()
        self._row_ptr = self._row.ctypes.data_as(ctypes.c_void_p)
        self._out_ptr = self._out.ctypes.data_as(ctypes.POINTER(ctypes.c_double))
        self._out_len_ref = ctypes.byref(self._out_len)

    def _config(self, raw_score: bool) -> ctypes.c_void_p:
        config = self._configs.get(raw_score)
        if config is None:
            config = ctypes.c_void_p()
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFastInit(
                    self.booster._handle,
                    ctypes.c_int(_PREDICT_RAW if raw_score else _PREDICT_NORMAL),
                    ctypes.c_int(0),
                    ctypes.c_int(_ALL_ITERATIONS),
                    ctypes.c_int(_FLOAT64),
                    ctypes.c_int32(self.n_features),
                    ctypes.c_char_p(b"num_threads=1"),
                    ctypes.byref(config),
                )
            )
            self._configs[raw_score] = config
        return config

    def _is_fast(self, X: Any, kwargs: dict[str, Any]) -> bool:
        """One row of a numpy matrix, all iterations, plain predictions."""
        return (
            isinstance(X, np.ndarray)
            and X.shape == (1, self.n_features)
            and not kwargs.get("pred_contrib")
            and not kwargs.get("pred_leaf")
            and kwargs.get("num_iteration") in (None, 0, -1)
            and not kwargs.get("start_iteration")
        )

    def predict(self, X: Any, raw_score: bool = False, **kwargs: Any) -> np.ndarray:
        """Like `Booster.predict`; one plain row takes the fast path."""
        if not self._is_fast(X, kwargs):
            return np.asarray(self.booster.predict(X, raw_score=raw_score, **kwargs))
        with self._lock:
            self._row[:] = X[0]
            _safe_call(
                _LIB.LGBM_BoosterPredictForMatSingleRowFast(
                    self._config(raw_score), self._row_ptr, self._out_len_ref, self._out_ptr
                )
            )
            out = self._out.copy()
        return out[None, :] if self.n_outputs > 1 else out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.booster, name)

    def __del__(self) -> None:
        for config in self._configs.values():
            _LIB.LGBM_FastConfigFree(config)


def accelerate(bundle: Bundle) -> Bundle:
    """Wrap every booster of the bundle's score and uplift models in a FastBooster (in place)."""
    for model in bundle.models.values():
        booster = getattr(model, "booster_", None)
        if isinstance(booster, lgb.Booster):
            model.booster_ = FastBooster(booster)  # type: ignore[attr-defined]
    for learner in bundle.uplift.values():
        for name, booster in list(learner.models_.items()):
            if isinstance(booster, lgb.Booster):
                learner.models_[name] = FastBooster(booster)  # type: ignore[assignment]
    return bundle
