"""How the forecaster sits in MLflow, for the pipeline that logs it and the service that reads
it. Nothing here imports MLflow: the service loads it only when it fetches a version."""

from __future__ import annotations

# The pyfunc model's artifact holding the forecaster's saved files.
FORECASTER_ARTIFACT = "forecaster"


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """The run in the MLflow UI: the tracking server's, or for a local store the one
    `mlflow ui --backend-store-uri <uri>` serves on port 5000."""
    base = tracking_uri.rstrip("/") if tracking_uri.startswith("http") else "http://127.0.0.1:5000"
    return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
