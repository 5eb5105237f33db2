"""The champion from the MLflow registry: which version the alias names, and that version
loaded for serving, with what /v1/model reports about it."""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aq_assets.ml.features import FeatureSpec
from aq_assets.ml.intervals import RECENT_COLUMNS
from aq_assets.ml.model import RECENT_MEANS, Forecaster
from aq_assets.ml.registry import FORECASTER_ARTIFACT, run_url

if TYPE_CHECKING:
    from mlflow import MlflowClient

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
    thresholds: tuple[float, ...] = ()  # exceedance probabilities answered (AQ_THRESHOLDS)

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
            run_url=run_url(self.tracking_uri, experiment_id, run_id)
            if run_id and experiment_id
            else None,
            trained_at=trained_at,
            metrics=metrics,
        )


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


class OnlineForecaster:
    """`Forecaster.predict` for rows built by `origin_features`, without pandas: every
    horizon's trees in one compiled call (`trees.TreeEnsemble`), then the forecaster's own
    blend (`BlendTable`)."""

    def __init__(self, forecaster: Forecaster) -> None:
        self.spec = forecaster.spec
        self.horizons = tuple(forecaster.spec.horizons)
        self._forecaster = forecaster
        self.intervals = forecaster.intervals
        self._table = forecaster.blend_table()
        columns = self.spec.feature_columns
        self.level_index = columns.index("level")
        self._recent_means = [columns.index(c) for c in RECENT_MEANS if c in columns]
        self._recent = [columns.index(c) for c in RECENT_COLUMNS if c in columns]
        self.compiled_error: str | None = None
        self._changes = self._predictor(len(columns))

    @property
    def is_baseline(self) -> bool:
        """A baseline forecaster: no trees, its blend alone forecasts."""
        return self._forecaster.is_baseline

    @property
    def compiled(self) -> bool:
        """Whether the trees run compiled (else through XGBoost, horizon by horizon)."""
        return self.compiled_error is None

    def _predictor(self, n_features: int) -> Callable[[np.ndarray], np.ndarray]:
        """float32 rows -> the boosters' changes (rows × horizons): compiled when that
        predicts exactly what `inplace_predict` of each horizon's booster does on rows that
        take every branch. A baseline forecaster (no boosters) changes nothing."""
        if self._forecaster.is_baseline:
            return self._forecaster.changes
        boosters = [self._forecaster.boosters[h] for h in self.horizons]
        try:
            from serving.trees import TreeEnsemble  # numba, compiled on first use

            ensemble = TreeEnsemble.from_boosters(boosters)
            probe = ensemble.edge_rows(n_features)
            expected = np.column_stack([b.inplace_predict(probe) for b in boosters])
            if not np.array_equal(ensemble.predict(probe), expected):
                raise ValueError("its predictions differ from XGBoost's on the probe rows")
            return ensemble.predict
        except (ImportError, ValueError, KeyError) as exc:  # numba missing, a layout unknown
            self.compiled_error = f"{type(exc).__name__}: {exc}"
        return self._forecaster.changes

    def recent(self, rows: np.ndarray) -> np.ndarray | None:
        """The rows' RECENT_COLUMNS, which scale the intervals (None: the spec lacks them)."""
        if len(self._recent) < len(RECENT_COLUMNS):
            return None
        return np.atleast_2d(rows)[:, self._recent]

    def predict(
        self,
        rows: np.ndarray,
        sensor_ids: Sequence[int | None],
        origins: Sequence[int],
    ) -> np.ndarray:
        """Forecasts (n rows × horizons, float64) from feature rows (n × features, float64),
        the rows' sensors and origin hours; NaN where a row has no current level."""
        rows = np.atleast_2d(rows)
        n = rows.shape[0]
        if n == 0:
            return np.empty((0, len(self.horizons)))
        matrix = np.ascontiguousarray(rows, dtype=np.float32)
        return self._table.forecast(
            level=rows[:, self.level_index],
            changes=self._changes(matrix),
            sensor_rows=self._table.rows_of(sensor_ids),
            origin_hours=np.asarray(origins, dtype=np.int64) % 24,
            recent_means=rows[:, self._recent_means]
            if len(self._recent_means) == len(RECENT_MEANS)
            else np.full((n, len(RECENT_MEANS)), np.nan),  # a spec without them: left out
        )
