"""Cleaning raw readings into one trustworthy value per sensor and hour.

Every step looks only at the reading itself or at earlier hours, so the same function can
clean a forecast's input history without seeing the future. Gaps stay gaps: nothing here
invents a value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class PlausibleRange:
    """Physically plausible values of a parameter in given units. Values a little below zero
    are instrument noise at low concentrations, down to `low - negative_tolerance`."""

    low: float
    high: float
    negative_tolerance: float


PLAUSIBLE_RANGES: dict[tuple[str, str], PlausibleRange] = {
    ("pm25", "µg/m³"): PlausibleRange(0, 1000, 10),
    ("pm10", "µg/m³"): PlausibleRange(0, 2000, 10),
    ("pm1", "µg/m³"): PlausibleRange(0, 1000, 10),
    ("o3", "ppm"): PlausibleRange(0, 0.6, 0.01),
    ("no2", "ppm"): PlausibleRange(0, 2, 0.01),
    ("no", "ppm"): PlausibleRange(0, 2, 0.01),
    ("nox", "ppm"): PlausibleRange(0, 3, 0.01),
    ("so2", "ppm"): PlausibleRange(0, 2, 0.01),
    ("co", "ppm"): PlausibleRange(0, 50, 0.1),
    ("o3", "µg/m³"): PlausibleRange(0, 1200, 10),
    ("no2", "µg/m³"): PlausibleRange(0, 4000, 10),
    ("so2", "µg/m³"): PlausibleRange(0, 5000, 10),
    ("co", "µg/m³"): PlausibleRange(0, 60000, 100),
    ("temperature", "c"): PlausibleRange(-60, 60, 0),
    ("relativehumidity", "%"): PlausibleRange(0, 100, 1),
}

# Placeholders some networks write for "no data"; never a measurement.
SENTINELS = (-999.0, -9999.0, 9999.0, 99999.0)

# A reading this many times its recent level (the higher of the trailing 24-hour median and
# the last 3 hours' maximum), and this far above it, is an isolated instrument spike.
SPIKE_RATIO = 10.0
SPIKE_MIN_EXCESS = {"pm25": 150.0, "pm10": 300.0}


def plausible_bounds(readings: pd.DataFrame) -> pd.DataFrame:
    """Columns low, high, tolerance per row of `readings` (NaN where the pair is unknown)."""
    ranges = pd.DataFrame(
        [(p, u, r.low, r.high, r.negative_tolerance) for (p, u), r in PLAUSIBLE_RANGES.items()],
        columns=["parameter", "units", "low", "high", "tolerance"],
    )
    keys = readings[["parameter", "units"]].astype(str)
    merged = keys.merge(ranges, on=["parameter", "units"], how="left")
    return merged[["low", "high", "tolerance"]].set_index(readings.index)


@dataclass
class CleaningReport:
    """How many readings each rule touched, for metadata and for trust."""

    rows_in: int = 0
    null_values: int = 0
    sentinels: int = 0
    implausible: int = 0
    negatives_clipped: int = 0
    spikes: int = 0
    repeated_hours: int = 0
    hours_out: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def clean_readings(readings: pd.DataFrame) -> tuple[pd.DataFrame, CleaningReport]:
    """One value per (sensor, hour): columns sensor_id, location_id, parameter, datetime_utc,
    value. Drops nulls, sentinels and physically implausible values, clips small negatives to
    zero, averages repeated or sub-hourly readings within the hour, and drops isolated spikes
    judged against the preceding day only."""
    report = CleaningReport(rows_in=len(readings))
    frame = readings[["sensor_id", "location_id", "parameter", "units", "datetime_utc", "value"]]
    frame = frame.astype({"value": "float64", "parameter": str, "units": str})

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


# A sensor repeating one non-zero value for this many consecutive hours is stuck: on the real
# sets such runs are rare (1 of 238 sensor-days in Toronto, 4 of 5,827 in Poland) and a
# stuck series teaches a forecaster that nothing moves. Runs at zero are a floor (clean air).
STUCK_HOURS = 12


def stuck_hours(hourly: pd.DataFrame, min_hours: int = STUCK_HOURS) -> pd.Series:
    """True for the hours of `clean_readings`' output that belong to a run of at least
    `min_hours` consecutive hours with the same non-zero value of one sensor."""
    frame = hourly.sort_values(["sensor_id", "datetime_utc"])
    same_sensor = frame["sensor_id"].eq(frame["sensor_id"].shift())
    next_hour = frame["datetime_utc"].diff().eq(pd.Timedelta(hours=1))
    repeats = frame["value"].eq(frame["value"].shift()) & (frame["value"] != 0)
    run = (~(same_sensor & next_hour & repeats)).cumsum()
    length = run.map(run.value_counts())
    return (length >= min_hours).reindex(hourly.index)


def without_stuck(hourly: pd.DataFrame, parameter: str) -> tuple[pd.DataFrame, int]:
    """`hourly` less the stuck hours of `parameter`'s sensors (quarantined: not learnt from,
    not scored, not judged for drift), and how many were left out. Other parameters keep
    theirs: a co-located CO sensor at 0.1 ppm resolution repeats itself honestly."""
    stuck = stuck_hours(hourly) & hourly["parameter"].eq(parameter)
    return hourly[~stuck].reset_index(drop=True), int(stuck.sum())
