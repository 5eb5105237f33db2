"""Forecasts from a history of readings: the one path batch predictions and the HTTP service
share, so both give the same numbers for the same input."""

from __future__ import annotations

import pandas as pd

from aq_assets.ml.cleaning import clean_readings, without_stuck
from aq_assets.ml.features import build_features
from aq_assets.ml.model import Forecaster

FORECAST_COLUMNS = ["sensor_id", "origin_utc", "horizon", "forecast_for_utc", "forecast"]


def feature_rows(
    forecaster: Forecaster,
    readings: pd.DataFrame,
    timezones: dict[int, str] | None = None,
    until: pd.Timestamp | None = None,
    quarantine: bool = False,
) -> pd.DataFrame:
    """Cleaned, feature-engineered rows (one per sensor-hour) for the forecaster's spec, from
    raw readings with columns sensor_id, location_id, parameter, units, datetime_utc, value.
    With `quarantine`, stuck hours of the target are gaps (for scoring and drift; forecasts
    are made from what the sensor reports)."""
    hourly, _ = clean_readings(readings)
    if quarantine:
        hourly, _ = without_stuck(hourly, forecaster.spec.parameter)
    return build_features(hourly, forecaster.spec, timezones, until=until)


def forecasts_from_rows(forecaster: Forecaster, rows: pd.DataFrame) -> pd.DataFrame:
    """Long format: one row per (sensor, origin hour, horizon) with the hour forecast and
    the forecast level (NaN where the origin has no current level)."""
    predicted = forecaster.predict(rows)
    pieces = []
    for h in forecaster.spec.horizons:
        pieces.append(
            pd.DataFrame(
                {
                    "sensor_id": rows["sensor_id"].to_numpy(),
                    "origin_utc": rows["datetime_utc"].to_numpy(),
                    "horizon": h,
                    "forecast_for_utc": (rows["datetime_utc"] + pd.Timedelta(hours=h)).to_numpy(),
                    "forecast": predicted[f"h{h}"].to_numpy(),
                }
            )
        )
    if not pieces:
        return pd.DataFrame(columns=FORECAST_COLUMNS)
    return pd.concat(pieces, ignore_index=True)


def latest_forecasts(
    forecaster: Forecaster,
    readings: pd.DataFrame,
    timezones: dict[int, str] | None = None,
    origin: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Each target sensor's forecasts from its forecast origin: `origin` when given (an hour,
    UTC), else the sensor's latest reading hour."""
    rows = feature_rows(forecaster, readings, timezones, until=origin)
    if rows.empty:
        return pd.DataFrame(columns=FORECAST_COLUMNS)
    at_origin = rows.groupby("sensor_id", sort=True).tail(1)
    return forecasts_from_rows(forecaster, at_origin)
