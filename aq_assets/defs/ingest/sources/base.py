"""The contract every source of readings fulfils, and the columns it returns.

A source answers two questions: which sensors exist (`list_sensors`) and what one sensor
read during one UTC day (`fetch_day`). Everything else (partitions, storage, checks) is the
same whatever the source.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import pandas as pd
from dagster import ConfigurableResource

# Columns and dtypes of `ingest.sensor_catalog` (one row per sensor).
CATALOG_COLUMNS: dict[str, str] = {
    "sensor_id": "int64",
    "location_id": "int64",
    "location_name": "string",
    "parameter": "string",
    "units": "string",
    "latitude": "float64",
    "longitude": "float64",
    "timezone": "string",  # IANA name or "+HH:MM"; "UTC" when the source does not say
    "first_seen_utc": "datetime64[ns]",
    "last_seen_utc": "datetime64[ns]",
    "source": "string",
}

# Columns and dtypes of `ingest.raw_readings` as a source returns them (the asset adds
# `ingested_at`). Timestamps are tz-naive UTC: DuckDB stores them as TIMESTAMP.
READING_COLUMNS: dict[str, str] = {
    "sensor_id": "int64",
    "location_id": "int64",
    "parameter": "string",
    "units": "string",
    "datetime_utc": "datetime64[ns]",
    "value": "float64",
    "source": "string",
}


@dataclass(frozen=True)
class Sensor:
    """What a source needs to know about a sensor to fetch its readings."""

    sensor_id: int
    location_id: int
    parameter: str
    units: str
    timezone: str = "UTC"


@dataclass
class DayReadings:
    """One sensor's readings for one UTC day, plus the rows that could not be read.

    `rejected` holds one human-readable line per malformed input row (what it was and why),
    so malformed input is counted and shown, never silently dropped.
    """

    readings: pd.DataFrame
    rejected: list[str] = field(default_factory=list)


def empty_readings() -> pd.DataFrame:
    return typed_frame({}, READING_COLUMNS)


# Other names OpenAQ gives a quantity the forecaster knows by one: some low-cost networks
# report relative humidity (%) as `humidity` (parameter 134) where others say
# `relativehumidity` (98). Stored under one name, it is one covariate wherever it comes from.
PARAMETER_ALIASES: dict[str, str] = {"humidity": "relativehumidity"}


def typed_frame(data: dict | pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """A frame with exactly `columns`, in order, cast to their dtypes, and a `parameter`
    column's aliases under their usual names (PARAMETER_ALIASES)."""
    frame = pd.DataFrame(data)
    for name, dtype in columns.items():
        if name not in frame:
            frame[name] = pd.Series(dtype=dtype)
    frame = frame[list(columns)].astype(columns).reset_index(drop=True)
    if "parameter" in columns and frame["parameter"].isin(list(PARAMETER_ALIASES)).any():
        frame["parameter"] = frame["parameter"].replace(PARAMETER_ALIASES)
    return frame


def utc_day_bounds(day: dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
    """[start, end) of a UTC day as tz-naive timestamps."""
    start = pd.Timestamp(day)
    return start, start + pd.Timedelta(days=1)


class SourceError(RuntimeError):
    """A source could not answer; the message names the cause and the fix."""


class SourceUnreachable(SourceError):
    """The source's host does not answer at all: the rest of the run fails at once with this
    message, rather than each sensor-day waiting out its own retries."""


class ReadingsSource(ConfigurableResource, ABC):
    """Where readings come from. Chosen by `AQ_SOURCE`; see `aq_assets/defs/ingest/resources.py`."""

    parameter: str = "pm25"

    @property
    @abstractmethod
    def name(self) -> str:
        """Short name stored in the `source` column (`simulated`, `openaq`, `archive`)."""

    @abstractmethod
    def list_sensors(self) -> pd.DataFrame:
        """Every sensor at the configured locations that measure `parameter`, including the
        other parameters co-located there, as a frame with `CATALOG_COLUMNS`."""

    @abstractmethod
    def fetch_day(self, sensor: Sensor, day: dt.date) -> DayReadings:
        """The sensor's readings with `day` <= datetime_utc < `day` + 1, as
        `READING_COLUMNS`. No data is an empty frame, not an error; an answer the source
        cannot give raises `SourceError`."""
