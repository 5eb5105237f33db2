"""The champion from the MLflow registry: which version the alias names, and that version
loaded for serving, with what /v1/model reports about it."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aq_assets.ml.features import FeatureSpec
from aq_assets.ml.model import Forecaster
from aq_assets.ml.online import OnlineForecaster

if TYPE_CHECKING:
    from mlflow import MlflowClient

FORECASTER_ARTIFACT = "forecaster"  # aq_assets.ml.pyfunc.FORECASTER_ARTIFACT
METRICS = ("rmse", "mae", "skill")


@dataclass(frozen=True)
class LoadedModel:
    """One registry version, ready to forecast. Immutable: a request holds one reference from
    start to end, so a swap never mixes two versions in one answer."""

    name: str
    version: str
    forecaster: OnlineForecaster
    run_id: str | None = None
    experiment_id: str | None = None
    run_url: str | None = None
    trained_at: dt.datetime | None = None
    metrics: dict[int, dict[str, float]] = field(default_factory=dict)
    loaded_at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @property
    def spec(self) -> FeatureSpec:
        return self.forecaster.spec


class Registry:
    """The registered model and alias in one MLflow store (sqlite under AQ_HOME or a server)."""

    def __init__(self, tracking_uri: str, name: str, alias: str) -> None:
        self.tracking_uri = tracking_uri
        self.name = name
        self.alias = alias

    def client(self) -> MlflowClient:
        """A client of the store, which must exist: MLflow would create an empty sqlite
        store where none is, and the service would wait on it forever."""
        from mlflow import MlflowClient

        local = self.tracking_uri.removeprefix("sqlite:///")
        if local != self.tracking_uri and not Path(local).is_file():
            raise FileNotFoundError(
                f"No MLflow store at {local}. Point AQ_HOME at the pipeline's home (the folder "
                "holding mlflow.db) or set MLFLOW_TRACKING_URI, or train a model first "
                "(aq train)."
            )
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def champion_version(self) -> str | None:
        """The version the alias names; None while there is no such model or alias. Other
        errors (store unreachable) raise."""
        from mlflow.exceptions import MlflowException

        try:
            return str(self.client().get_model_version_by_alias(self.name, self.alias).version)
        except MlflowException as exc:
            if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
                return None
            raise

    def load(self, version: str) -> LoadedModel:
        """Download the version's `forecaster` artifact and load it. Reads the saved files
        (spec.json, forecaster.json, booster_h{h}.ubj), never the pickled pyfunc: the service
        runs no code from the registry."""
        import mlflow.artifacts
        from mlflow.models import Model

        client = self.client()
        model_version = client.get_model_version(self.name, version)
        source = client.get_model_version_download_uri(self.name, version)
        with tempfile.TemporaryDirectory(prefix="aq-serving-") as tmp:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=source,
                    dst_path=tmp,
                    tracking_uri=self.tracking_uri,
                    registry_uri=self.tracking_uri,
                )
            )
            flavor = Model.load(str(local)).flavors.get("python_function", {})
            artifact = (flavor.get("artifacts") or {}).get(FORECASTER_ARTIFACT)
            if not artifact:
                raise ValueError(
                    f"{self.name} version {version} has no '{FORECASTER_ARTIFACT}' artifact; "
                    "it was not logged by forecast_model."
                )
            forecaster = OnlineForecaster(Forecaster.load(local / artifact["path"]))
        run_id = model_version.run_id or None
        experiment_id, trained_at, metrics = None, None, {}
        if run_id:
            run = client.get_run(run_id)
            experiment_id = run.info.experiment_id
            millis = run.info.end_time or run.info.start_time
            trained_at = dt.datetime.fromtimestamp(millis / 1000, dt.UTC) if millis else None
            metrics = _metrics_by_horizon(run.data.metrics, forecaster.horizons)
        return LoadedModel(
            name=self.name,
            version=str(version),
            forecaster=forecaster,
            run_id=run_id,
            experiment_id=experiment_id,
            run_url=self.run_url(experiment_id, run_id) if run_id and experiment_id else None,
            trained_at=trained_at,
            metrics=metrics,
        )

    def run_url(self, experiment_id: str, run_id: str) -> str:
        """As `MLflowTracking.run_url`: the tracking server's UI, or for a local store the
        one `mlflow ui --backend-store-uri <uri>` serves on port 5000."""
        uri = self.tracking_uri
        base = uri.rstrip("/") if uri.startswith("http") else "http://127.0.0.1:5000"
        return f"{base}/#/experiments/{experiment_id}/runs/{run_id}"


def _metrics_by_horizon(
    logged: dict[str, float], horizons: tuple[int, ...]
) -> dict[int, dict[str, float]]:
    """forecast_model's `rmse_h{h}`, `mae_h{h}` and `skill_h{h}`, by horizon."""
    out: dict[int, dict[str, float]] = {}
    for h in horizons:
        found = {m: float(logged[f"{m}_h{h}"]) for m in METRICS if f"{m}_h{h}" in logged}
        if found:
            out[h] = found
    return out
