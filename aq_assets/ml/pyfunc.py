"""The forecaster as an MLflow pyfunc model: what the registry stores and serving loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from aq_assets.ml.model import Forecaster
from aq_assets.ml.registry import FORECASTER_ARTIFACT


class ForecastModel(PythonModel):
    """Input: feature rows (`sensor_id`, `datetime_utc` and the spec's feature columns). Output: `h{h}`
    columns, the forecast level h hours after each row's hour."""

    forecaster: Forecaster

    def load_context(self, context: Any) -> None:
        self.forecaster = Forecaster.load(Path(context.artifacts[FORECASTER_ARTIFACT]))

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        return self.forecaster.predict(model_input)
