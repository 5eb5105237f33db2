"""The pandas reference of cleaning and features: the rules as whole-frame pandas operations,
written the obvious way, against which the one implementation (`aq_assets.ml.cleaning`,
`aq_assets.ml.features`: compiled loops at every origin) is checked in
`ml/test_cleaning.py`, `ml/test_features.py` and `serving/tests/test_snapshot.py`. Nothing
outside the tests calls this."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from aq_assets.ml.cleaning import (
    SENTINELS,
    SPIKE_MIN_EXCESS,
    SPIKE_RATIO,
    UNIT_CONVERSIONS,
    CleaningReport,
    canonical_units,
    plausible_bounds,
)
from aq_assets.ml.features import (
    _OFFSET,
    NETWORK,
    PROFILE_DAYS,
    RELATIVE_OFFSET,
    FeatureSpec,
    sensor_codes,
)


def clean_readings(readings: pd.DataFrame) -> tuple[pd.DataFrame, CleaningReport]:
    """One value per (sensor, hour): columns sensor_id, location_id, parameter, datetime_utc,
    value. Drops nulls, sentinels and physically implausible values, clips small negatives to
    zero, averages repeated or sub-hourly readings within the hour, and drops isolated spikes
    judged against the preceding day only. Values in other units than their parameter's
    usual ones are converted into them (after the range check, in their own units)."""
    report = CleaningReport(rows_in=len(readings))
    frame = readings[["sensor_id", "location_id", "parameter", "units", "datetime_utc", "value"]]
    frame = frame.astype({"value": "float64", "parameter": str, "units": str})
    frame = frame.assign(units=frame["units"].map(canonical_units))

    null = frame["value"].isna()
    sentinel = frame["value"].isin(SENTINELS)
    bounds = plausible_bounds(frame)
    known = bounds["low"].notna()
    implausible = known & (
        (frame["value"] > bounds["high"]) | (frame["value"] < bounds["low"] - bounds["tolerance"])
    )
    implausible &= ~sentinel
    report.null_values = int(null.sum())
    report.sentinels = int(sentinel.sum())
    report.implausible = int(implausible.sum())
    frame = frame[~(null | sentinel | implausible)]

    below = known.reindex(frame.index) & (frame["value"] < bounds["low"].reindex(frame.index))
    report.negatives_clipped = int(below.sum())
    frame = frame.assign(value=frame["value"].where(~below, bounds["low"].reindex(frame.index)))
    for (parameter, units), (scale, shift) in UNIT_CONVERSIONS.items():
        other = (frame["parameter"] == parameter) & (frame["units"] == units)
        frame.loc[other, "value"] = frame.loc[other, "value"] * scale + shift

    frame = frame.assign(datetime_utc=frame["datetime_utc"].dt.floor("h"))
    keys = ["sensor_id", "location_id", "parameter", "datetime_utc"]
    hourly = frame.groupby(keys, as_index=False, sort=True)["value"].mean()
    report.repeated_hours = len(frame) - len(hourly)

    spikes = _isolated_spikes(hourly)
    report.spikes = int(spikes.sum())
    hourly = hourly[~spikes].reset_index(drop=True)
    report.hours_out = len(hourly)
    return hourly, report


def _isolated_spikes(hourly: pd.DataFrame) -> pd.Series:
    """True where a value dwarfs both the median of the 24 hours before it and the highest of
    the 3 hours before it (causal). An episode climbs hour by hour, so its peak stands close to
    the hours just before; a spike jumps from a quiet level."""
    excess = hourly["parameter"].map(SPIKE_MIN_EXCESS)
    if excess.isna().all():
        return pd.Series(False, index=hourly.index)
    by_sensor = hourly.set_index("datetime_utc").groupby("sensor_id")["value"]
    day_median = by_sensor.transform(lambda s: s.shift(1).rolling("24h", min_periods=6).median())
    recent_max = by_sensor.transform(lambda s: s.shift(1).rolling("3h", min_periods=1).max())
    reference = pd.Series(np.fmax(day_median.to_numpy(), recent_max.to_numpy()), index=hourly.index)
    reference = reference.where(pd.Series(day_median.to_numpy(), index=hourly.index).notna())
    value = hourly["value"]
    return (
        excess.notna()
        & (value > SPIKE_RATIO * reference.clip(lower=1.0))
        & (value - reference > excess.fillna(np.inf))
    )


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
    if NETWORK in spec.covariates:
        covariates[NETWORK] = _network_on_grid(target, grid)
    for p in spec.covariates:
        now = covariates[p].groupby(grid["sensor_id"], sort=False).ffill(limit=2)
        features[f"{p}_now"] = now
        features[f"{p}_change_3"] = now - now.groupby(grid["sensor_id"], sort=False).shift(3)
        if p in spec.hourly_changes:
            features[f"{p}_change_1"] = now - now.groupby(grid["sensor_id"], sort=False).shift(1)

    if "level_to_network_log" in spec.feature_columns:
        network = features[f"{NETWORK}_now"]
        features["level_to_network_log"] = np.log(
            (np.maximum(level, 0.0) + RELATIVE_OFFSET)
            / (np.maximum(network, 0.0) + RELATIVE_OFFSET)
        )
        features["network_minus_level"] = network - level

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


def _network_on_grid(target: pd.DataFrame, grid: pd.DataFrame) -> pd.Series:
    """Each row's network: the mean of the other target sensors' values at its hour."""
    network = pd.Series(np.nan, index=grid.index)
    for sensor_id in grid["sensor_id"].unique():
        others = target[target["sensor_id"] != sensor_id]
        if others.empty:
            continue
        means = others.groupby("datetime_utc")["value"].mean()
        rows = grid["sensor_id"] == sensor_id
        network[rows] = grid.loc[rows, "datetime_utc"].map(means).to_numpy(dtype="float64")
    return network


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
