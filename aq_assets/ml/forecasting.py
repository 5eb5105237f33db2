"""Forecasts from a history of readings: the one path batch predictions and the HTTP service
share, so both give the same numbers for the same input."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aq_assets.ml.air_quality import SCALES, category_indices
from aq_assets.ml.cleaning import clean_readings, without_stuck
from aq_assets.ml.features import build_features
from aq_assets.ml.intervals import INTERVALS, QUANTILES, Intervals, recent_of
from aq_assets.ml.model import Forecaster

FORECAST_COLUMNS = ["sensor_id", "origin_utc", "horizon", "forecast_for_utc", "forecast"]


@dataclass(frozen=True)
class Outlook:
    """What point forecasts (rows × horizons) mean: their quantiles (rows × horizons ×
    QUANTILES) and probabilities of exceeding each threshold (rows × horizons × thresholds),
    both None for a forecaster without intervals, and each forecast's air-quality category
    (rows × horizons of str or None, an object array; None for a parameter without a
    scale)."""

    quantiles: np.ndarray | None
    exceedance: np.ndarray | None
    categories: np.ndarray | None

    @classmethod
    def of(
        cls,
        intervals: Intervals | None,
        parameter: str,
        point: np.ndarray,
        thresholds: Sequence[float],
        recent: np.ndarray | None = None,
    ) -> Outlook:
        scale = SCALES.get(parameter)
        names = None
        if scale is not None:  # index -1 (unknown) takes the None at the end
            labels = np.array([c.name for c in scale[0]] + [None], dtype=object)
            names = labels[category_indices(parameter, point)]
        if intervals is None:
            return cls(None, None, names)
        return cls(*intervals.both(point, thresholds, recent), names)


def quantile_name(level: float) -> str:
    """q05, q10, q50, q90, q95."""
    return f"q{round(level * 100):02d}"


def exceedance_name(threshold: float) -> str:
    """p_above_15, p_above_35_4: a column name without a dot."""
    return "p_above_" + f"{threshold:g}".replace(".", "_")


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


def served_coverage(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per horizon of served forecasts (`predictions` rows with their quantile columns and
    `actual`): how many have an actual, and the share of those inside each central interval
    (`coverage80`, `coverage90`). Empty for forecasts without quantiles."""
    if quantile_name(QUANTILES[0]) not in predictions.columns:
        return pd.DataFrame(
            {
                "horizon": pd.Series(dtype="int64"),
                "rows": pd.Series(dtype="int64"),
                **{f"coverage{n}": pd.Series(dtype="float64") for n in INTERVALS},
            }
        )
    known = predictions[predictions["actual"].notna() & predictions["q50"].notna()]
    inside = {
        f"coverage{nominal}": known["actual"].between(
            known[quantile_name(low)], known[quantile_name(high)]
        )
        for nominal, (low, high) in INTERVALS.items()
    }
    return (
        pd.DataFrame({"horizon": known["horizon"], **inside})
        .groupby("horizon")
        .agg(rows=("horizon", "size"), **{name: (name, "mean") for name in inside})
        .reset_index()
    )


def forecasts_from_rows(
    forecaster: Forecaster, rows: pd.DataFrame, thresholds: Sequence[float] = ()
) -> pd.DataFrame:
    """Long format: one row per (sensor, origin hour, horizon) with the hour forecast and
    the forecast level (NaN where the origin has no current level), then its quantiles,
    probabilities of exceeding `thresholds` and category where the forecaster has them."""
    if rows.empty or not forecaster.spec.horizons:
        return pd.DataFrame(columns=FORECAST_COLUMNS)
    horizons = list(forecaster.spec.horizons)
    point = forecaster.predict(rows)[[f"h{h}" for h in horizons]].to_numpy(dtype="float64")
    outlook = Outlook.of(
        forecaster.intervals, forecaster.spec.parameter, point, thresholds, recent_of(rows)
    )
    n, width = len(rows), len(horizons)
    origins = rows["datetime_utc"].to_numpy()
    # Horizon-major, as the rows are laid out below: all of the first horizon, then the next.
    frame = pd.DataFrame(
        {
            "sensor_id": np.tile(rows["sensor_id"].to_numpy(), width),
            "origin_utc": np.tile(origins, width),
            "horizon": np.repeat(horizons, n),
            "forecast_for_utc": np.concatenate(
                [origins + np.timedelta64(h, "h") for h in horizons]
            ),
            "forecast": point.T.reshape(-1),
        }
    )
    if outlook.quantiles is not None and outlook.exceedance is not None:
        for k, level in enumerate(QUANTILES):
            frame[quantile_name(level)] = outlook.quantiles[:, :, k].T.reshape(-1)
        for k, threshold in enumerate(thresholds):
            frame[exceedance_name(threshold)] = outlook.exceedance[:, :, k].T.reshape(-1)
    if outlook.categories is not None:
        frame["category"] = outlook.categories.T.reshape(-1)
    return frame


def latest_forecasts(
    forecaster: Forecaster,
    readings: pd.DataFrame,
    timezones: dict[int, str] | None = None,
    origin: pd.Timestamp | None = None,
    thresholds: Sequence[float] = (),
) -> pd.DataFrame:
    """Each target sensor's forecasts (`forecasts_from_rows`) from its forecast origin:
    `origin` when given (an hour, UTC), else the sensor's latest reading hour."""
    rows = feature_rows(forecaster, readings, timezones, until=origin)
    if rows.empty:
        return pd.DataFrame(columns=FORECAST_COLUMNS)
    at_origin = rows.groupby("sensor_id", sort=True).tail(1)
    return forecasts_from_rows(forecaster, at_origin, thresholds)
