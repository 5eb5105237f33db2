"""Features of the target series at each hour: the one function training, batch predictions
and the HTTP service all call, so they agree to the number.

Rows live on a complete hourly grid per sensor (a missing hour is a row with NaN), so a shift
by k rows is a shift by k hours. Every feature at hour t uses hours <= t only; `target_h{h}`
columns hold the value h hours later and are for training and evaluation only.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

DEFAULT_COVARIATES = (
    "pm10",
    "pm1",
    "no2",
    "no",
    "nox",
    "o3",
    "co",
    "so2",
    "temperature",
    "relativehumidity",
)
WEATHER = ("temperature", "relativehumidity")  # co-located, but not pollutants
PROFILE_DAYS = (7, 28)
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


@dataclass(frozen=True)
class FeatureSpec:
    """What the features are; saved with every model so serving rebuilds exactly these."""

    parameter: str = "pm25"
    horizons: tuple[int, ...] = (1, 3, 6, 12, 24)
    lags: tuple[int, ...] = (1, 2, 3, 6, 12, 23, 24, 48, 168)
    windows: tuple[int, ...] = (3, 6, 24, 168)
    covariates: tuple[str, ...] = DEFAULT_COVARIATES
    max_fill_hours: int = 3  # the "current level" is the latest value at most this old
    sensors: tuple[int, ...] = field(default=())  # sensor identity categories, fixed at training

    @property
    def feature_columns(self) -> list[str]:
        columns = ["level", "hours_since_reading"]
        columns += [f"lag_{k}" for k in self.lags]
        for w in self.windows:
            columns += [f"mean_{w}", f"std_{w}"]
        columns += ["max_24", "change_1", "change_3", "change_24"]
        for days in PROFILE_DAYS:
            columns += [f"same_hour_{days}d_h{h}" for h in self.horizons if h <= 24]
        columns += ["hour_sin", "hour_cos", "day_of_week", "is_weekend", "doy_sin", "doy_cos"]
        for p in self.covariates:
            columns += [f"{p}_now", f"{p}_change_3"]
        columns.append("sensor_code")
        return columns

    @property
    def target_columns(self) -> list[str]:
        return [f"target_h{h}" for h in self.horizons]

    @property
    def history_hours(self) -> int:
        """Hours of history before a forecast origin that every feature reads: with less, the
        long windows and the same-hour profiles are computed over fewer values than in
        training, and the forecast differs."""
        return max(*self.lags, *self.windows, 24 * max(PROFILE_DAYS)) + 1

    def with_sensors(self, sensors: list[int]) -> FeatureSpec:
        return FeatureSpec(**{**asdict(self), "sensors": tuple(sorted(int(s) for s in sensors))})

    @classmethod
    def of_training_set(cls, frame: pd.DataFrame, parameter: str) -> FeatureSpec:
        """The spec a training set was built with: horizons from its target columns, sensor
        identities from its rows, the rest the defaults (checked against its columns)."""
        horizons = tuple(
            sorted(
                int(c.removeprefix("target_h")) for c in frame.columns if c.startswith("target_h")
            )
        )
        spec = cls(parameter=parameter, horizons=horizons).with_sensors(
            list(frame["sensor_id"].unique())
        )
        missing = [c for c in spec.feature_columns if c not in frame.columns]
        if missing:
            raise ValueError(
                f"training_set lacks feature columns {missing[:5]}; re-materialize training_set."
            )
        return spec

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        raw = json.loads(text)
        fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**fields)


def build_features(
    hourly: pd.DataFrame,
    spec: FeatureSpec,
    timezones: dict[int, str] | None = None,
    until: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Feature rows for every target-parameter sensor in `hourly` (cleaned, one value per
    sensor-hour, all parameters), one per hour from its first reading to its last (or to
    `until`, the forecast origin). Columns: sensor_id, location_id, datetime_utc, y, the
    spec's feature columns, then its target columns."""
    target = hourly[hourly["parameter"] == spec.parameter]
    if target.empty:
        return pd.DataFrame(
            columns=[
                "sensor_id",
                "location_id",
                "datetime_utc",
                "y",
                *spec.feature_columns,
                *spec.target_columns,
            ]
        )
    # Extend each sensor's grid past its last hour so features that look at the target hour's
    # past (the same-hour profiles) exist at the forecast origin too, as they do in training.
    grid = _hourly_grid(target, until, extra_hours=max(spec.horizons))
    by_sensor = grid.groupby("sensor_id", sort=False)
    y = grid["y"]

    features: dict[str, pd.Series | np.ndarray] = {}
    level = by_sensor["y"].ffill(limit=spec.max_fill_hours)
    observed_at = grid["datetime_utc"].where(y.notna())
    last_seen = observed_at.groupby(grid["sensor_id"], sort=False).ffill(limit=spec.max_fill_hours)
    features["level"] = level
    features["hours_since_reading"] = (grid["datetime_utc"] - last_seen).dt.total_seconds() / 3600
    for k in spec.lags:
        features[f"lag_{k}"] = by_sensor["y"].shift(k)
    for w in spec.windows:
        rolling = by_sensor["y"].rolling(w, min_periods=max(1, w // 3))
        features[f"mean_{w}"] = rolling.mean().reset_index(level=0, drop=True)
        features[f"std_{w}"] = rolling.std().reset_index(level=0, drop=True)
    features["max_24"] = (
        by_sensor["y"].rolling(24, min_periods=8).max().reset_index(level=0, drop=True)
    )
    for k in (1, 3, 24):
        features[f"change_{k}"] = level - by_sensor["y"].shift(k)

    # The sensor's recent daily profile at the hour being forecast: the mean of the values at
    # t+h-24k over the last 7 and 28 days, all known at t. The long horizons lean on it.
    same_hour = grid.groupby(["sensor_id", grid["datetime_utc"].dt.hour], sort=False)["y"]
    profiles = {
        f"{days}d": same_hour.transform(
            lambda s, d=days: s.shift(1).rolling(d, min_periods=max(1, d // 4)).mean()
        )
        for days in PROFILE_DAYS
    }
    for name, profile in profiles.items():
        by_sensor_profile = profile.groupby(grid["sensor_id"], sort=False)
        for h in spec.horizons:
            if h <= 24:
                features[f"same_hour_{name}_h{h}"] = by_sensor_profile.shift(-h)

    local = _local_times(grid, timezones or {})
    hour = local.dt.hour + local.dt.minute / 60
    features["hour_sin"] = np.sin(2 * np.pi * hour / 24)
    features["hour_cos"] = np.cos(2 * np.pi * hour / 24)
    features["day_of_week"] = local.dt.dayofweek.astype("float64")
    features["is_weekend"] = (local.dt.dayofweek >= 5).astype("float64")
    features["doy_sin"] = np.sin(2 * np.pi * local.dt.dayofyear / 365.25)
    features["doy_cos"] = np.cos(2 * np.pi * local.dt.dayofyear / 365.25)

    covariates = _covariates_on_grid(hourly, grid, spec.covariates)
    for p in spec.covariates:
        now = covariates[p].groupby(grid["sensor_id"], sort=False).ffill(limit=2)
        features[f"{p}_now"] = now
        features[f"{p}_change_3"] = now - now.groupby(grid["sensor_id"], sort=False).shift(3)

    features["sensor_code"] = sensor_codes(grid["sensor_id"], spec)

    targets = {f"target_h{h}": by_sensor["y"].shift(-h) for h in spec.horizons}
    frame = pd.concat(
        [
            grid.drop(columns="extension"),
            pd.DataFrame(features, index=grid.index),
            pd.DataFrame(targets, index=grid.index),
        ],
        axis=1,
    )
    frame = frame[~grid["extension"].to_numpy()]
    columns = [
        "sensor_id",
        "location_id",
        "datetime_utc",
        "y",
        *spec.feature_columns,
        *spec.target_columns,
    ]
    return frame[columns].reset_index(drop=True)


def feature_matrix(frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """The float32 matrix a model predicts from, columns in the spec's order. Sensor identity
    is re-coded with this spec's own sensor list, so a model trained on other sensors reads
    the same frame correctly (an unknown sensor is missing, not another sensor)."""
    matrix = frame[spec.feature_columns].to_numpy(dtype=np.float32, na_value=np.nan)
    matrix[:, spec.feature_columns.index("sensor_code")] = sensor_codes(frame["sensor_id"], spec)
    return matrix


def sensor_codes(sensor_ids: pd.Series, spec: FeatureSpec) -> np.ndarray:
    codes = {sensor: float(i) for i, sensor in enumerate(spec.sensors)}
    return sensor_ids.map(codes).to_numpy(dtype=np.float32, na_value=np.nan)


def _hourly_grid(
    target: pd.DataFrame, until: pd.Timestamp | None, extra_hours: int
) -> pd.DataFrame:
    spans = target.groupby("sensor_id").agg(
        location_id=("location_id", "first"),
        start=("datetime_utc", "min"),
        end=("datetime_utc", "max"),
    )
    pieces = []
    for sensor_id, span in spans.iterrows():
        end = until if until is not None else span["end"]
        hours = pd.date_range(span["start"], end + pd.Timedelta(hours=extra_hours), freq="h")
        pieces.append(
            pd.DataFrame(
                {
                    "sensor_id": sensor_id,
                    "location_id": span["location_id"],
                    "datetime_utc": hours,
                    "extension": hours > end,
                }
            )
        )
    grid = pd.concat(pieces, ignore_index=True).astype(
        {"sensor_id": "int64", "location_id": "int64"}
    )
    values = target[["sensor_id", "datetime_utc", "value"]].rename(columns={"value": "y"})
    if until is not None:
        values = values[values["datetime_utc"] <= until]
    return grid.merge(values, on=["sensor_id", "datetime_utc"], how="left")


def _covariates_on_grid(
    hourly: pd.DataFrame, grid: pd.DataFrame, covariates: tuple[str, ...]
) -> pd.DataFrame:
    present = hourly[hourly["parameter"].isin(covariates)]
    wide = present.pivot_table(
        index=["location_id", "datetime_utc"], columns="parameter", values="value", aggfunc="mean"
    )
    aligned = grid[["location_id", "datetime_utc"]].merge(
        wide, left_on=["location_id", "datetime_utc"], right_index=True, how="left"
    )
    return aligned.reindex(columns=list(covariates)).set_index(grid.index).astype("float64")


def _local_times(grid: pd.DataFrame, timezones: dict[int, str]) -> pd.Series:
    """Local wall-clock time of each row, from its location's IANA zone or fixed offset."""
    local = grid["datetime_utc"].copy()
    for location_id, tz in timezones.items():
        rows = grid["location_id"] == location_id
        if not rows.any() or not tz or tz in {"UTC", "+00:00", "Z"}:
            continue
        match = _OFFSET.match(tz)
        if match:
            sign = 1 if match.group(1) == "+" else -1
            local[rows] = grid.loc[rows, "datetime_utc"] + sign * pd.Timedelta(
                hours=int(match.group(2)), minutes=int(match.group(3))
            )
        else:
            zone = ZoneInfo(tz)
            local[rows] = (
                grid.loc[rows, "datetime_utc"]
                .dt.tz_localize("UTC")
                .dt.tz_convert(zone)
                .dt.tz_localize(None)
            )
    return local


def drift_view(frame: pd.DataFrame, covariates: tuple[str, ...]) -> pd.DataFrame:
    """Scale-free views of feature rows, the columns drift is judged on: variability and changes
    relative to the day's level, and the log ratio to each co-located pollutant and to the
    other sensors of the network at the same hour. Weather moves every pollutant of a place,
    and a city's sensors, together, so these hold still through an episode, while a sensor
    that reads 1.5 times as high, gets noisier or sticks changes them at once. Log ratios
    (of values + 1) because plain ones explode where the other value nears zero, and a day's
    few such hours would decide the distance. Rows without a reading are left out."""
    frame = frame[frame["y"].notna()]
    mean = frame["mean_24"].where(frame["mean_24"].abs() > 1e-9)
    view = {
        "cv_24": frame["std_24"] / mean,
        "relative_change_1": frame["change_1"] / mean,
        "relative_change_24": frame["change_24"] / mean,
    }
    log_y = np.log1p(frame["y"].clip(lower=0))
    for p in covariates:
        if p not in WEATHER:  # a ratio to a temperature that crosses zero means nothing
            view[f"log_ratio_to_{p}"] = log_y - np.log1p(frame[f"{p}_now"].clip(lower=0))
    # The mean of the other sensors' values at the hour (none with fewer than two sensors).
    by_hour = frame.groupby("datetime_utc")["y"]
    others = (by_hour.transform("sum") - frame["y"]) / (by_hour.transform("count") - 1)
    view["log_ratio_to_network"] = log_y - np.log1p(others.clip(lower=0))
    return pd.DataFrame(view, index=frame.index).replace([np.inf, -np.inf], np.nan)
