"""MLflow as a Dagster resource: one MLflow run per materialization, closed with its true
status, and the model registry with its `champion` alias."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from dagster import ConfigurableResource

if TYPE_CHECKING:
    import mlflow

    from aq_assets.ml.drift import DriftReference
    from aq_assets.ml.model import Forecaster

CHAMPION = "champion"
DRIFT_REFERENCE = "drift/reference.parquet"
DRIFT_THRESHOLDS = "drift/thresholds.json"
DRIFT_REFERENCE_ERROR = "drift_reference_error_h1"


class _DropMessages(logging.Filter):
    def __init__(self, *starts: str) -> None:
        super().__init__()
        self.starts = starts

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.starts)


def _quiet_mlflow_advice() -> None:
    """Two pieces of MLflow advice printed on every training, both about choices aq made:
    integer columns in the schema (ids and hours, never missing) and a pyfunc model
    serialized with CloudPickle (aq's loader reads the saved files, not the pickle)."""
    warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    if not any(isinstance(f, _DropMessages) for f in pyfunc_log.filters):
        pyfunc_log.addFilter(_DropMessages("Passing a Python object as `python_model`"))


class MLflowTracking(ConfigurableResource):
    """`MLFLOW_TRACKING_URI` when set, else a sqlite store and artifact folder under AQ_HOME.

    We use this instead of dagster-mlflow's `mlflow_tracking`: that resource leaves runs open
    unless a job hook ends them, and reuses one MLflow run for two Dagster runs in a process.
    """

    tracking_uri: str = ""
    aq_home: str = ".aq"
    experiment: str = "aq-forecast"
    model_name: str = "aq-forecast"

    @property
    def uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{Path(self.aq_home).expanduser().resolve() / 'mlflow.db'}"

    def client(self) -> mlflow.MlflowClient:
        import mlflow

        # A progress bar per artifact (each model load, each drift reference) fills run logs.
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        _quiet_mlflow_advice()

        mlflow.set_tracking_uri(self.uri)
        return mlflow.MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    @contextmanager
    def start_run(self, run_name: str, tags: dict[str, str]) -> Iterator[mlflow.ActiveRun]:
        """An MLflow run that ends FINISHED, or FAILED if the block raises."""
        import mlflow

        client = self.client()
        experiment = client.get_experiment_by_name(self.experiment)
        if experiment is None:
            artifacts = None
            if not self.tracking_uri or self.uri.startswith("sqlite"):
                artifacts = (Path(self.aq_home).expanduser().resolve() / "mlartifacts").as_uri()
            experiment_id = client.create_experiment(self.experiment, artifact_location=artifacts)
        else:
            experiment_id = experiment.experiment_id
        while mlflow.active_run():  # a run left open by earlier code in this process is not ours
            mlflow.end_run()
        run = mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags)
        try:
            yield run
        except BaseException:
            mlflow.end_run(status="FAILED")
            raise
        mlflow.end_run(status="FINISHED")

    # -- the active run: what a training records ---------------------------------------

    def log_training_set(
        self,
        frame: pd.DataFrame,
        fingerprint: str,
        target: str,
        built_from: str,
        partitions: dict[str, Any],
    ) -> None:
        """The training set as the run's dataset input (its first 1,000 rows as the schema and
        profile, its content fingerprint as the digest, the partitions it was built from as
        a tag) and the whole partition list as `training_set/partitions.json`."""
        import mlflow
        from mlflow.data.pandas_dataset import from_pandas

        mlflow.log_input(
            from_pandas(frame.head(1000), name="training_set", digest=fingerprint, targets=target),
            context="training",
            tags={"built_from_partitions": built_from},
        )
        mlflow.log_dict(partitions, "training_set/partitions.json")

    def log_params(self, params: dict[str, Any]) -> None:
        import mlflow

        mlflow.log_params(params)

    def log_metrics(self, metrics: dict[str, float]) -> None:
        import mlflow

        mlflow.log_metrics(metrics)

    def log_text(self, text: str, path: str) -> None:
        import mlflow

        mlflow.log_text(text, path)

    def log_dict(self, value: dict[str, Any], path: str) -> None:
        import mlflow

        mlflow.log_dict(value, path)

    def register(self, forecaster: Forecaster, example: pd.DataFrame) -> int:
        """The forecaster logged with the active run as a pyfunc model (its saved files as the
        artifact, the signature inferred from `example`) and registered as a new version of
        `model_name`; returns the version."""
        import mlflow
        from mlflow.models import infer_signature

        from aq_assets.ml.pyfunc import FORECASTER_ARTIFACT, ForecastModel

        with tempfile.TemporaryDirectory() as tmp:
            forecaster.save(Path(tmp) / FORECASTER_ARTIFACT)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=ForecastModel(),
                artifacts={FORECASTER_ARTIFACT: str(Path(tmp) / FORECASTER_ARTIFACT)},
                signature=infer_signature(example, forecaster.predict(example)),
                input_example=example,
                registered_model_name=self.model_name,
            )
        return int(info.registered_model_version)

    def tag_version(self, version: int, tags: dict[str, str]) -> None:
        client = self.client()
        for key, value in tags.items():
            client.set_model_version_tag(self.model_name, str(version), key, value)

    def champion_version(self) -> int | None:
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client().get_model_version_by_alias(self.model_name, CHAMPION).version)
        except MlflowException:
            return None

    def set_champion(self, version: int) -> None:
        self.client().set_registered_model_alias(self.model_name, CHAMPION, str(version))

    def version_tags(self, version: int) -> dict[str, str]:
        return dict(self.client().get_model_version(self.model_name, str(version)).tags)

    def load_forecaster(self, version: int) -> Forecaster:
        import mlflow.pyfunc

        self.client()
        model = mlflow.pyfunc.load_model(f"models:/{self.model_name}/{version}")
        return model.unwrap_python_model().forecaster

    def log_drift_reference(self, reference: DriftReference) -> None:
        """With the active run (the one that registers a version): the rows, per-column
        thresholds and held-out error its days will be judged with."""
        import mlflow

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / Path(DRIFT_REFERENCE).name
            reference.rows.to_parquet(path, index=False)
            mlflow.log_artifact(str(path), str(Path(DRIFT_REFERENCE).parent))
        mlflow.log_dict(reference.thresholds, DRIFT_THRESHOLDS)
        if reference.error is not None:
            mlflow.log_metric(DRIFT_REFERENCE_ERROR, reference.error)

    def drift_reference(self, version: int) -> DriftReference:
        """The drift reference a version was registered with."""
        import mlflow

        from aq_assets.ml.drift import DriftReference

        client = self.client()
        run_id = client.get_model_version(self.model_name, str(version)).run_id
        try:
            if run_id is None:
                raise FileNotFoundError("the version has no run")
            rows = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=DRIFT_REFERENCE, tracking_uri=self.uri
            )
            thresholds = mlflow.artifacts.load_dict(
                f"{client.get_run(run_id).info.artifact_uri}/{DRIFT_THRESHOLDS}"
            )
        except Exception as exc:
            raise FileNotFoundError(
                f"Model version {version} has no drift reference ({DRIFT_REFERENCE} in run "
                f"{run_id}): it was registered before versions kept one. Retrain (aq train) "
                "so the champion carries its own reference."
            ) from exc
        error = client.get_run(run_id).data.metrics.get(DRIFT_REFERENCE_ERROR)
        return DriftReference(pd.read_parquet(rows), thresholds, error)

    def describe(self) -> dict[str, Any]:
        return {"tracking_uri": self.uri, "model_name": self.model_name}
