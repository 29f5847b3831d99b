"""The stacked model as one MLflow ``pyfunc``: a folder of model files plus this small wrapper.

``mlflow.pyfunc.load_model("models:/btc-l2@champion").predict(frame)`` returns one row per input
row with ``p_up``, ``p_down`` (calibrated) and ``signal`` (+1 / 0 / -1 at the stored thresholds).
The live runner skips the wrapper and calls ``StackedModel`` on a numpy vector directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc.model import PythonModel

from models.model import ModelInputError, StackedModel


class StackPyfunc(PythonModel):
    def load_context(self, context: Any) -> None:
        self.model = StackedModel.load(Path(context.artifacts["model"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return predict_frame(self.model, model_input)


def predict_frame(model: StackedModel, model_input: Any) -> pd.DataFrame:
    """Predictions for a DataFrame with the model's feature columns (any order) or an array."""
    if isinstance(model_input, pd.DataFrame):
        missing = [n for n in model.feature_names if n not in model_input.columns]
        if missing:
            raise ModelInputError(
                f"the input lacks {len(missing)} of the model's features (first: {missing[0]}); "
                f"feature set {model.feature_set}"
            )
        x = model_input[model.feature_names].to_numpy(np.float64)
    else:
        x = np.asarray(model_input, np.float64)
    proba = model.predict_proba(x)
    return pd.DataFrame({"p_up": proba[:, 0], "p_down": proba[:, 1], "signal": model.signal(proba)})
