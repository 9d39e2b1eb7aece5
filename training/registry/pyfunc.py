"""The bundle as an MLflow pyfunc, for tools that load "models:/nextbest@champion" through MLflow.

Logged as the model's code ("models from code", `mlflow_models.MODEL_CODE`), so the registered model
holds no pickle. nextbest itself reads bundles with `mlflow_models.load_bundle`, not through this.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel, PythonModelContext

from training.registry.bundle import Bundle


class NextbestPyfunc(PythonModel):
    """The bundle as an MLflow pyfunc: FeatureBuilder output rows in, scores out."""

    def load_context(self, context: PythonModelContext) -> None:
        self.bundle = Bundle.load(Path(context.artifacts["bundle"]))

    def predict(
        self,
        context: PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        return self.bundle.score_frame(model_input)
