"""Shared fixtures: every test writes under its own tmp_path, never the user's AQ_HOME."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import DagsterInstance, instance_for_test

from aq_assets.defs.ingest.sources.base import (
    CATALOG_COLUMNS,
    READING_COLUMNS,
    DayReadings,
    ReadingsSource,
    Sensor,
    SourceError,
    typed_frame,
)
from aq_assets.target import ForecastTarget
from aq_assets.warehouse import DuckDBWarehouse, Warehouse, warehouse_resources

# Set before any test module imports the code location, whose resources read AQ_HOME through
# EnvVar: no test may fall back to `.aq/` in the working directory.
os.environ["AQ_HOME"] = tempfile.mkdtemp(prefix="aq-tests-home-")
os.environ["DAGSTER_HOME"] = tempfile.mkdtemp(prefix="aq-tests-dagster-")
# The embedded DuckDB warehouse unless a test chooses PostgreSQL (read when the code loads).
for _name in ("AQ_WAREHOUSE_URL", "AQ_WAREHOUSE_PASSWORD"):
    os.environ.pop(_name, None)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def isolated_env(tmp_path, monkeypatch):
    """No test reads the developer's environment or writes outside tmp_path."""
    for name in (
        "AQ_SOURCE",
        "AQ_LOCATIONS",
        "AQ_PARAMETER",
        "AQ_SIM_DRIFT",
        "AQ_ALERT_WEBHOOK_URL",
        "AQ_API_TOKEN",
        "MLFLOW_TRACKING_URI",
        "OPENAQ_API_KEY",
        "OPENAQ_BASE_URL",
        "AQ_ARCHIVE_ROOT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AQ_HOME", str(tmp_path / "aq"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    # `aq` and Dagster read `.env` in the working folder (`aq up` writes one in the repo).
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def instance():
    with instance_for_test() as inst:
        yield inst


@pytest.fixture
def warehouse(tmp_path) -> DuckDBWarehouse:
    return DuckDBWarehouse(aq_home=str(tmp_path / "aq"))


def resources_for(source: ReadingsSource, warehouse: Warehouse) -> dict:
    return {
        "source": source,
        "forecast_target": ForecastTarget(parameter=source.parameter),
        **warehouse_resources(warehouse.aq_home),
    }


class StubSource(ReadingsSource):
    """A source whose answers a test chooses: `good` (pm25 alternates `value` and `value` +
    0.5 by the hour), `stuck` (pm25 is `value` all day), `broken` (raises for one sensor),
    `messy` (out-of-day rows, duplicates, an implausible value, a malformed row)."""

    mode: str = "good"
    value: float = 10.0

    @property
    def name(self) -> str:
        return "stub"

    def list_sensors(self) -> pd.DataFrame:
        return typed_frame(
            {
                "sensor_id": [1002, 1010, 2002],
                "location_id": [1, 1, 2],
                "location_name": ["One", "One", "Two"],
                "parameter": ["pm25", "o3", "pm25"],
                "units": ["µg/m³", "ppm", "µg/m³"],
                "timezone": ["UTC", "UTC", "UTC"],
                "source": ["stub"] * 3,
            },
            CATALOG_COLUMNS,
        )

    def fetch_day(self, sensor: Sensor, day: dt.date) -> DayReadings:
        if self.mode == "broken" and sensor.sensor_id == 2002:
            raise SourceError(f"sensor {sensor.sensor_id} is unreachable")
        value = self.value if sensor.parameter == "pm25" else 0.03
        if sensor.parameter == "pm25" and self.mode != "stuck":
            value = value + 0.5 * (np.arange(24) % 2)
        frame = pd.DataFrame(
            {
                "sensor_id": sensor.sensor_id,
                "location_id": sensor.location_id,
                "parameter": sensor.parameter,
                "units": sensor.units,
                "datetime_utc": pd.date_range(str(day), periods=24, freq="h"),
                "value": value,
                "source": "stub",
            }
        )
        rejected: list[str] = []
        if self.mode == "messy" and sensor.sensor_id == 1002:
            extra = frame.iloc[[0, 1]].copy()
            extra.loc[:, "datetime_utc"] = [
                pd.Timestamp(day) - pd.Timedelta(hours=1),
                frame.datetime_utc[3],
            ]
            frame = pd.concat([frame, extra], ignore_index=True)
            frame.loc[5, "value"] = 5000.0
            rejected = ["line 7: value 'n/a' is not a number"]
        return DayReadings(typed_frame(frame, READING_COLUMNS), rejected)


def check_results(result) -> dict[str, object]:
    """Check name -> evaluation, from a materialize() result."""
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


__all__ = ["SHARED_DATA", "DagsterInstance", "StubSource", "check_results", "resources_for"]


@pytest.fixture
def webhook():
    """A webhook on a free local port: its URL and the JSON bodies posted to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()


def free_port() -> int:
    """A TCP port of 127.0.0.1 nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
