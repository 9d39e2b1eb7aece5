"""The reference point of the serving bench: a bare BentoML service (one worker) returning one
LightGBM prediction for 20 rows, the way a minimal model server is written (Booster.predict per call).

Reads `BARE_MODEL` (a LightGBM text model) at start; serve it with
`bentoml serve bench.bare_service:Bare`.
"""

from __future__ import annotations

import os

import bentoml
import lightgbm as lgb
import numpy as np

ROWS = 20


@bentoml.service(name="bare", workers=1, threads=1, logging={"access": {"enabled": False}})
class Bare:
    """One model, a fixed 20-row matrix, one prediction per request."""

    def __init__(self) -> None:
        self.booster = lgb.Booster(model_file=os.environ["BARE_MODEL"])
        rng = np.random.default_rng(0)
        self.rows = rng.normal(size=(ROWS, self.booster.num_feature()))

    @bentoml.api(route="/predict")
    def predict(self, customer_id: str) -> float:
        """Mean prediction of the 20 rows (the id only shapes the request like /recommend)."""
        return float(self.booster.predict(self.rows, num_threads=1).mean())
