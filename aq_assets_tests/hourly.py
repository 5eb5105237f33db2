"""Small synthetic hourly readings the ML tests build frames from."""

from __future__ import annotations

import numpy as np
import pandas as pd

START = pd.Timestamp("2025-03-01 00:00")
UG = "µg/m³"


def readings(
    values,
    *,
    sensor_id: int = 1,
    location_id: int = 10,
    parameter: str = "pm25",
    units: str = UG,
    start: pd.Timestamp = START,
) -> pd.DataFrame:
    """Hourly readings of one sensor from `start`; None/NaN values are null readings."""
    values = np.asarray(values, dtype="float64")
    return pd.DataFrame(
        {
            "sensor_id": sensor_id,
            "location_id": location_id,
            "parameter": parameter,
            "units": units,
            "datetime_utc": pd.date_range(start, periods=len(values), freq="h"),
            "value": values,
        }
    )


def diurnal(hours: int, base: float, amplitude: float, noise: float, seed: int) -> np.ndarray:
    """A daily cycle peaking at 06:00 UTC, plus Gaussian noise."""
    hour = pd.date_range(START, periods=hours, freq="h").hour.to_numpy()
    rng = np.random.default_rng(seed)
    return base + amplitude * np.sin(2 * np.pi * hour / 24) + rng.normal(0, noise, hours)


def location_series(hours: int, seed: int = 0) -> pd.DataFrame:
    """Cleaned hourly values at location 10: pm25 sensors 1 and 2, and a pm10 sensor 3."""
    return pd.concat(
        [
            readings(diurnal(hours, 30, 12, 2, seed), sensor_id=1),
            readings(diurnal(hours, 20, 8, 2, seed + 1), sensor_id=2),
            readings(diurnal(hours, 45, 15, 3, seed + 2), sensor_id=3, parameter="pm10"),
        ],
        ignore_index=True,
    )


def at(frame: pd.DataFrame, sensor_id: int, when: pd.Timestamp) -> pd.Series:
    """The single row of `frame` for a sensor at an hour."""
    rows = frame[(frame["sensor_id"] == sensor_id) & (frame["datetime_utc"] == when)]
    assert len(rows) == 1, f"expected one row for sensor {sensor_id} at {when}, got {len(rows)}"
    return rows.iloc[0]
