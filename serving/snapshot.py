"""The `online_features` snapshot: the latest hours of every sensor at the locations that
measure the target parameter, a Parquet file the pipeline rewrites. Loaded whole and
cleaned once per file version, so a forecast for a known sensor only builds its feature row."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from aq_assets.ml.cleaning import HourlySeries, clean_by_sensor, location_means
from aq_assets.ml.features import NETWORK, SensorSeries, check_timezone, network_series

COLUMNS = ("sensor_id", "location_id", "parameter", "units", "datetime_utc", "value", "timezone")
# Read when present: snapshots written before it (or by hand) work without it.
LOCATION_NAME = "location_name"


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """What changes when the file is rewritten (mtime, size, inode); None if it is absent."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


@dataclass(frozen=True)
class OnlineSnapshot:
    path: Path
    stamp: tuple[int, int, int]
    modified_at: dt.datetime
    latest_reading_at: dt.datetime | None  # the newest hour of any reading in it
    rows: int
    history: ReadingsHistory
    timezone_errors: dict[int, str]  # locations whose time zone build_features cannot read
    location_names: dict[int, str] = field(default_factory=dict)  # by location, where known

    @classmethod
    def load(cls, path: Path) -> OnlineSnapshot:
        import pyarrow.parquet as pq

        stamp = file_stamp(path)
        if stamp is None:
            raise FileNotFoundError(f"no online_features snapshot at {path}")
        table = pq.read_table(path)
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise ValueError(f"{path} lacks columns {missing}; expected {list(COLUMNS)}")
        named = LOCATION_NAME in table.column_names
        frame = table.select([*COLUMNS, *([LOCATION_NAME] if named else [])]).to_pandas()
        frame = frame.dropna(subset=["sensor_id", "location_id", "datetime_utc"])
        times = pd.to_datetime(frame["datetime_utc"])
        if times.dt.tz is not None:
            times = times.dt.tz_convert("UTC").dt.tz_localize(None)
        zones = frame.dropna(subset=["timezone"]).drop_duplicates("location_id")
        timezones: dict[int, str | None] = {
            int(loc): str(tz)
            for loc, tz in zip(zones["location_id"], zones["timezone"], strict=True)
        }
        history = readings_history(
            frame["sensor_id"].to_numpy(dtype=np.int64),
            frame["location_id"].to_numpy(dtype=np.int64),
            frame["parameter"].astype(str).to_numpy(),
            frame["units"].astype(str).to_numpy(),
            times.to_numpy().astype("datetime64[s]").astype(np.int64),
            frame["value"].to_numpy(dtype=np.float64, na_value=np.nan),
            timezones,
        )
        timezone_errors = {}
        for location, zone in timezones.items():
            try:
                check_timezone(zone)
            except ValueError as exc:
                timezone_errors[location] = f"location {location}: {exc}"
        latest = times.max() if len(times) else None
        return cls(
            path=path,
            stamp=stamp,
            modified_at=dt.datetime.fromtimestamp(stamp[0] / 1e9, dt.UTC),
            latest_reading_at=None
            if latest is None or pd.isna(latest)
            else latest.floor("h").to_pydatetime().replace(tzinfo=dt.UTC),
            rows=len(frame),
            history=history,
            timezone_errors=timezone_errors,
            location_names=_location_names(frame) if named else {},
        )

    def place_of(self, sensor_id: int) -> str | None:
        """The name of the sensor's location, None where the snapshot has none."""
        series = self.history.sensors.get(sensor_id)
        location = None if series is None else series.location_id
        return None if location is None else self.location_names.get(location)

    def age_hours(self, now: dt.datetime) -> float | None:
        """Hours from the end of the newest reading hour to `now`: how far behind the
        pipeline's snapshot is (about 24-48 for a daily ingest of complete days)."""
        if self.latest_reading_at is None:
            return None
        return (now - self.latest_reading_at).total_seconds() / 3600 - 1


def _location_names(frame: pd.DataFrame) -> dict[int, str]:
    """Each location's name in the snapshot (`online_features` writes them from the catalog,
    `location_names_of`), where it has one."""
    names = frame[["location_id", LOCATION_NAME]].dropna().drop_duplicates("location_id")
    return dict(
        zip(names["location_id"].astype(int), names[LOCATION_NAME].astype(str), strict=True)
    )


@dataclass(frozen=True)
class ReadingsHistory:
    """Cleaned readings of several sensors, each with its location's mean series per
    parameter as its co-located parameters and the other sensors of its parameter as its
    network (as `build_features` reads them)."""

    sensors: dict[int, SensorSeries]


def readings_history(
    sensor_id: np.ndarray,
    location_id: np.ndarray,
    parameter: np.ndarray,
    units: np.ndarray,
    seconds: np.ndarray,
    values: np.ndarray,
    timezones: Mapping[int, str | None] | None = None,
) -> ReadingsHistory:
    """Raw readings as columns (one sensor = one parameter at one location, the first row's)
    → every sensor cleaned (`clean_by_sensor`), every location's parameters averaged over its
    sensors (`location_means`) and every sensor's network over the snapshot's other sensors of
    its parameter (`network_series`), as `clean_readings` + `build_features` see them;
    `timezones` by location."""
    sensor_id = np.asarray(sensor_id, dtype=np.int64)
    firsts, cleaned, _ = clean_by_sensor(
        sensor_id, np.asarray(parameter), np.asarray(units), np.asarray(seconds), np.asarray(values)
    )
    where = [
        (int(sensor_id[first]), int(location_id[first]), str(parameter[first])) for first in firsts
    ]
    locations = location_means(
        (location, name, clean) for (_, location, name), clean in zip(where, cleaned, strict=True)
    )
    by_parameter: dict[str, dict[int, HourlySeries]] = {}
    for (sensor, _, name), clean in zip(where, cleaned, strict=True):
        by_parameter.setdefault(name, {})[sensor] = clean
    networks = {
        sensor: network
        for sensors in by_parameter.values()
        for sensor, network in network_series(sensors).items()
    }
    zones = timezones or {}
    out = {}
    for (sensor, location, name), clean in zip(where, cleaned, strict=True):
        covariates = locations.get(location, {})
        if sensor in networks:
            covariates = {**covariates, NETWORK: networks[sensor]}
        out[sensor] = SensorSeries(clean, covariates, sensor, location, zones.get(location), name)
    return ReadingsHistory(out)
