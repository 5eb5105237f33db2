"""A real MLflow sqlite store with two trained versions of `aq-forecast` (built once per
session from simulated readings), the online_features snapshot, and apps on copies of it."""

from __future__ import annotations

import datetime as dt
import functools
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import uvicorn
from fastapi.testclient import TestClient

# Before the app modules are imported: never read the developer's store or token.
os.environ["AQ_HOME"] = tempfile.mkdtemp(prefix="aq-serving-tests-home-")
for _name in ("MLFLOW_TRACKING_URI", "AQ_API_TOKEN", "AQ_API_OPEN", "AQ_ONLINE_FEATURES"):
    os.environ.pop(_name, None)

from aq_assets.defs.ingest.catalog import location_names_of, sensors_by_id  # noqa: E402
from aq_assets.defs.ingest.sources.simulated import SimulatedSource  # noqa: E402
from aq_assets.ml.cleaning import clean_readings  # noqa: E402
from aq_assets.ml.features import FeatureSpec, build_features  # noqa: E402
from aq_assets.ml.forecasting import latest_forecasts  # noqa: E402
from aq_assets.ml.model import Forecaster, TimeSplit, train_forecaster  # noqa: E402
from serving.app import create_app  # noqa: E402
from serving.settings import Settings  # noqa: E402
from serving.snapshot import ReadingsHistory, readings_history  # noqa: E402

MODEL = "aq-forecast"
TOKEN = "test-token-3f9a-serving"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DAYS = 32
FIRST_DAY = dt.date(2025, 3, 1)
ROUNDS = {"1": 40, "2": 12}  # two versions that forecast visibly different numbers


def pytest_configure(config: pytest.Config) -> None:
    # serving.forecasting silences numpy's note on parsed offsets; pytest resets filters.
    config.addinivalue_line(
        "filterwarnings", "ignore:no explicit representation of timezones:UserWarning"
    )


@dataclass
class Store:
    """An AQ_HOME with an MLflow store (v1 is champion) and the data the models saw."""

    home: Path
    readings: pd.DataFrame  # raw readings of every sensor, as raw_readings holds them
    timezones: dict[int, str]
    forecasters: dict[str, Forecaster]  # registry version -> the forecaster logged there
    sources: dict[str, str]  # registry version -> its artifact location

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow.db'}"

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    @property
    def spec(self) -> FeatureSpec:
        return self.forecasters["1"].spec

    def copy_to(self, home: Path) -> Store:
        """The same store at another AQ_HOME: its alias can move without touching this one."""
        shutil.copytree(self.home, home)
        return Store(home, self.readings, self.timezones, self.forecasters, self.sources)


def simulated_readings() -> tuple[pd.DataFrame, dict[int, str]]:
    source = SimulatedSource()
    catalog = source.list_sensors()
    sensors = sensors_by_id(catalog, list(catalog["sensor_id"]))
    frames = [
        source.fetch_day(sensor, FIRST_DAY + dt.timedelta(days=i)).readings
        for i in range(DAYS)
        for sensor in sensors.values()
    ]
    readings = pd.concat(frames, ignore_index=True).astype({"parameter": str, "units": str})
    timezones = dict(zip(catalog["location_id"], catalog["timezone"], strict=False))
    return readings[
        ["sensor_id", "location_id", "parameter", "units", "datetime_utc", "value"]
    ], timezones


def log_version(
    uri: str, forecaster: Forecaster, experiment_id: str, directory: Path
) -> tuple[str, Path]:
    """One forecast_model run: metrics by horizon and the pyfunc with its `forecaster`
    artifact, registered as a new version (as model/assets.py `_log_and_register` does,
    minus the slow pip requirement inference)."""
    import mlflow

    from aq_assets.ml.pyfunc import FORECASTER_ARTIFACT

    directory = directory / FORECASTER_ARTIFACT
    forecaster.save(directory)
    # mlflow.set_*_uri also set environment variables, which the service's settings read.
    with pytest.MonkeyPatch.context() as patch:
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            patch.setenv(name, uri)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            info = _log(mlflow, forecaster, experiment_id, directory)
        finally:  # None unsets them (mlflow's annotations say str)
            mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
            mlflow.set_registry_uri(None)  # type: ignore[arg-type]
    return str(info.registered_model_version), directory


def _log(mlflow, forecaster: Forecaster, experiment_id: str, directory: Path):
    from aq_assets.ml.pyfunc import FORECASTER_ARTIFACT, ForecastModel

    with mlflow.start_run(experiment_id=experiment_id):
        for i, h in enumerate(forecaster.spec.horizons):
            mlflow.log_metrics({f"rmse_h{h}": 5.0 + i, f"mae_h{h}": 4.0 + i, f"skill_h{h}": 0.2})
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=ForecastModel(),
            artifacts={FORECASTER_ARTIFACT: str(directory)},
            registered_model_name=MODEL,
            pip_requirements=["aq"],
        )
    return info


@pytest.fixture(scope="session")
def store(tmp_path_factory) -> Store:
    from mlflow import MlflowClient

    readings, timezones = simulated_readings()
    hourly, _ = clean_readings(readings)
    targets = sorted(hourly.loc[hourly["parameter"] == "pm25", "sensor_id"].unique())
    spec = FeatureSpec().with_sensors(targets)
    frame = build_features(hourly, spec, timezones)
    split = TimeSplit.last_days(frame["datetime_utc"], holdout_days=4, validation_days=5)
    train, validation, _ = split.parts(frame, max(spec.horizons))

    home = tmp_path_factory.mktemp("store") / "aq"
    home.mkdir()
    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment_id = client.create_experiment(
        "aq-forecast", artifact_location=(home / "mlartifacts").as_uri()
    )
    forecasters, sources = {}, {}
    for version, rounds in ROUNDS.items():
        forecaster = train_forecaster(
            train, validation, spec, max_rounds=rounds, early_stopping_rounds=rounds
        )
        logged, saved = log_version(
            uri, forecaster, experiment_id, tmp_path_factory.mktemp(f"v{version}")
        )
        assert logged == version
        forecasters[version] = Forecaster.load(saved)  # what the service will load
        sources[version] = client.get_model_version_download_uri(MODEL, version)
    client.set_registered_model_alias(MODEL, "champion", "1")
    store = Store(home, readings, timezones, forecasters, sources)
    write_snapshot(store)
    return store


def snapshot_readings(store: Store) -> pd.DataFrame:
    """What online_features holds: the last history_hours + 24 hours of every parameter."""
    hours = store.spec.history_hours + 24
    readings = store.readings
    recent = readings[
        readings["datetime_utc"] > readings["datetime_utc"].max() - pd.Timedelta(hours=hours)
    ]
    return recent.assign(
        timezone=recent["location_id"].map(store.timezones),
        location_name=recent["location_id"].map(simulated_location_names()),
    ).reset_index(drop=True)


@functools.cache
def simulated_location_names() -> dict[int, str]:
    """The simulated catalog's location names, as online_features writes them."""
    return location_names_of(SimulatedSource().list_sensors())


def write_snapshot(store: Store) -> Path:
    path = store.home / "online_features.parquet"
    snapshot_readings(store).to_parquet(path, index=False)
    return path


def settings_for(home: Path, **overrides) -> Settings:
    values = {
        "aq_home": str(home),
        "api_token": TOKEN,
        "api_open": False,
        "poll_seconds": 0,  # tests refresh by hand
        "mlflow_tracking_uri": "",
        "online_features": "",
        **overrides,
    }
    return Settings(**values)


@pytest.fixture(scope="session")
def session_client(store) -> Iterator[TestClient]:
    """A service on the session store, for tests that do not change it."""
    with TestClient(create_app(settings_for(store.home))) as client:
        yield client


@pytest.fixture
def own_store(store, tmp_path) -> Store:
    """A copy of the store this test may change (move the alias, add versions)."""
    return store.copy_to(tmp_path / "aq")


def history_of(
    readings: pd.DataFrame, timezones: dict[int, str | None] | None = None
) -> ReadingsHistory:
    return readings_history(
        readings["sensor_id"].to_numpy(),
        readings["location_id"].to_numpy(),
        readings["parameter"].astype(str).to_numpy(),
        readings["units"].astype(str).to_numpy(),
        readings["datetime_utc"].to_numpy().astype("datetime64[s]").astype(np.int64),
        readings["value"].to_numpy(dtype="float64"),
        timezones,
    )


def expected_forecasts(
    forecaster: Forecaster,
    readings: pd.DataFrame,
    timezones: dict[int, str],
    origin: pd.Timestamp | None = None,
) -> dict[int, list[float]]:
    """The batch path's forecasts by sensor (horizon order)."""
    table = latest_forecasts(forecaster, readings, timezones, origin=origin)
    return {
        int(sensor): rows.sort_values("horizon")["forecast"].astype(float).tolist()
        for sensor, rows in table.groupby("sensor_id")
    }


def history_body(
    readings: pd.DataFrame,
    sensor_id: int,
    timezones: dict[int, str],
    origin: pd.Timestamp | None = None,
    covariates: tuple[str, ...] = ("pm10", "no2", "o3"),
) -> dict:
    """One series of a POST /v1/forecast body: the sensor's readings and its location's
    co-located parameters."""
    own = readings[readings["sensor_id"] == sensor_id]
    location = int(own["location_id"].iloc[0])

    def pairs(rows: pd.DataFrame) -> dict:
        return {
            "timestamps": [t.isoformat() + "Z" for t in rows["datetime_utc"]],
            "values": [None if np.isnan(v) else float(v) for v in rows["value"]],
            "units": str(rows["units"].iloc[0]),
        }

    co_located = readings[
        (readings["location_id"] == location) & (readings["sensor_id"] != sensor_id)
    ]
    series = {
        "sensor_id": int(sensor_id),
        "timezone": timezones[location],
        **pairs(own),
        "covariates": {
            name: pairs(rows)
            for name, rows in co_located.groupby("parameter")
            if name in covariates
        },
    }
    if origin is not None:
        series["origin"] = origin.isoformat() + "Z"
    return series


def values_of(result: dict) -> list[float | None]:
    return [f["value"] for f in result["forecasts"]]


@pytest.fixture(scope="session")
def live_service(store) -> Iterator[str]:
    """The service on a free local port, in this process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings_for(store.home)), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:  # set by uvicorn once it listens
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)
