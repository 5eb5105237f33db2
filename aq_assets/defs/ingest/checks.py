"""Data-quality checks on `raw_readings`, returned with each materialization.

Each check is a pure function of the rows a run wrote (and the rows it had to reject), so it
sees exactly what was stored and costs no second read. Thresholds and observed values go into
the check's metadata. None of these block: bad readings are worth keeping and looking at.
"""

from __future__ import annotations

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetKey

from aq_assets.defs.ingest.sources.base import READING_COLUMNS
from aq_assets.ml.cleaning import STUCK_HOURS, clean_readings, plausible_bounds, stuck_hours

RAW_READINGS = AssetKey("raw_readings")

# Share of a sensor-day's 24 hours that must be present before coverage warns.
MIN_COVERAGE = 0.75
# Sensors go offline now and then (22 of the 1,200 simulated sensor-days of `aq up`): the
# check warns when gaps are common in a run, and names the worst sensor-days either way.
MAX_SHARE_BELOW = 0.05


CHECK_SPECS = [
    AssetCheckSpec(
        "schema_matches",
        asset=RAW_READINGS,
        description=(
            "Columns and types are those of ingest.raw_readings, with no missing sensor, time or units."
        ),
    ),
    AssetCheckSpec(
        "values_in_plausible_range",
        asset=RAW_READINGS,
        description=(
            "Every value lies in its parameter's plausible range; small negatives are counted, not failed."
        ),
    ),
    AssetCheckSpec(
        "no_duplicate_readings",
        asset=RAW_READINGS,
        description=("At most one reading per sensor and timestamp."),
    ),
    AssetCheckSpec(
        "timestamps_inside_partition",
        asset=RAW_READINGS,
        description=(
            "The source returned no reading outside the partition's UTC day (such rows are rejected)."
        ),
    ),
    AssetCheckSpec(
        "hourly_coverage",
        asset=RAW_READINGS,
        description=(
            f"At most {MAX_SHARE_BELOW:.0%} of the sensor-days of a run have less than "
            f"{MIN_COVERAGE:.0%} of their 24 hours (the worst are listed either way)."
        ),
    ),
    AssetCheckSpec(
        "no_stuck_sensor",
        asset=RAW_READINGS,
        description=(
            f"No sensor of the target parameter repeats one non-zero value for {STUCK_HOURS} "
            "hours or more. Such hours are quarantined: not learnt from, not scored, not "
            "judged for drift (a data-quality event, not a reason to retrain)."
        ),
    ),
    AssetCheckSpec(
        "no_malformed_rows",
        asset=RAW_READINGS,
        description=(
            "The source gave no row that could not be read (such rows are counted and shown)."
        ),
    ),
]


def schema_matches(readings: pd.DataFrame) -> AssetCheckResult:
    expected = {**READING_COLUMNS, "ingested_at": "datetime64[ns]"}
    missing = [c for c in expected if c not in readings.columns]
    wrong = {
        c: str(readings[c].dtype)
        for c, dtype in expected.items()
        if c in readings.columns and not _same_kind(readings[c].dtype, dtype)
    }
    key_columns = ["sensor_id", "datetime_utc", "parameter", "units"]
    nulls = {c: int(readings[c].isna().sum()) for c in key_columns if c in readings.columns}
    null_total = sum(nulls.values())
    return AssetCheckResult(
        check_name="schema_matches",
        asset_key=RAW_READINGS,
        passed=not missing and not wrong and null_total == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "missing_columns": ", ".join(missing) or "none",
            "wrong_types": ", ".join(f"{c}: {t}" for c, t in wrong.items()) or "none",
            "nulls_in_key_columns": null_total,
        },
    )


def values_in_plausible_range(readings: pd.DataFrame) -> AssetCheckResult:
    bounds = plausible_bounds(readings)
    low, high, tolerance = bounds["low"], bounds["high"], bounds["tolerance"]
    value = readings["value"]
    known = low.notna()
    negatives = known & (value < low) & (value >= low - tolerance)
    implausible = known & ((value < low - tolerance) | (value > high))
    unknown = sorted(
        {
            f"{p} ({u})"
            for p, u in readings.loc[~known, ["parameter", "units"]].itertuples(index=False)
        }
    )
    worst = readings.loc[implausible].head(5)
    return AssetCheckResult(
        check_name="values_in_plausible_range",
        asset_key=RAW_READINGS,
        passed=not implausible.any(),
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "implausible_values": int(implausible.sum()),
            "small_negatives": int(negatives.sum()),
            "null_values": int(value.isna().sum()),
            "rows_checked": int(known.sum()),
            "parameters_without_range": ", ".join(unknown) or "none",
            "examples": _examples(worst),
        },
    )


def no_duplicate_readings(readings: pd.DataFrame) -> AssetCheckResult:
    duplicated = readings.duplicated(["sensor_id", "datetime_utc"], keep="first")
    return AssetCheckResult(
        check_name="no_duplicate_readings",
        asset_key=RAW_READINGS,
        passed=not duplicated.any(),
        severity=AssetCheckSeverity.WARN,
        metadata={
            "duplicate_rows": int(duplicated.sum()),
            "threshold": 0,
            "examples": _examples(readings.loc[duplicated].head(5)),
        },
    )


def timestamps_inside_partition(outside: pd.DataFrame) -> AssetCheckResult:
    return AssetCheckResult(
        check_name="timestamps_inside_partition",
        asset_key=RAW_READINGS,
        passed=outside.empty,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "rows_outside_partition_day": len(outside),
            "threshold": 0,
            "examples": _examples(outside.head(5)),
        },
    )


def hourly_coverage(
    readings: pd.DataFrame, sensor_days: list[tuple[int, pd.Timestamp]]
) -> AssetCheckResult:
    """Share of the 24 hours present for every (sensor, day) the run wrote, empty ones included."""
    hours = readings.assign(
        day=readings["datetime_utc"].dt.floor("D"), hour=readings["datetime_utc"].dt.floor("h")
    )
    present = hours.groupby(["sensor_id", "day"])["hour"].nunique()
    index = pd.MultiIndex.from_tuples(sensor_days, names=["sensor_id", "day"])
    coverage = (present.reindex(index, fill_value=0) / 24).clip(upper=1.0)
    below = coverage[coverage < MIN_COVERAGE]
    share_below = len(below) / len(coverage) if len(coverage) else 0.0
    return AssetCheckResult(
        check_name="hourly_coverage",
        asset_key=RAW_READINGS,
        passed=share_below <= MAX_SHARE_BELOW,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "threshold": MIN_COVERAGE,
            "max_share_below": MAX_SHARE_BELOW,
            "share_below_threshold": share_below,
            "min_coverage": float(coverage.min()) if len(coverage) else 0.0,
            "mean_coverage": float(coverage.mean()) if len(coverage) else 0.0,
            "sensor_days": len(coverage),
            "sensor_days_below_threshold": len(below),
            "lowest": ", ".join(
                f"{day.date()}|{sensor}: {share:.0%}"
                for (sensor, day), share in below.nsmallest(5).items()
            )
            or "none",
        },
    )


def no_stuck_sensor(readings: pd.DataFrame, parameter: str) -> AssetCheckResult:
    """Sensor-days of `parameter` with a stuck run, from the run's cleaned hours."""
    hourly, _ = clean_readings(readings[readings["parameter"] == parameter])
    stuck = hourly[stuck_hours(hourly)]
    days = stuck.groupby(["sensor_id", stuck["datetime_utc"].dt.floor("D")]).size()
    return AssetCheckResult(
        check_name="no_stuck_sensor",
        asset_key=RAW_READINGS,
        passed=days.empty,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "threshold_hours": STUCK_HOURS,
            "stuck_sensor_days": len(days),
            "quarantined_hours": len(stuck),
            "stuck": ", ".join(
                f"{day.date()}|{sensor}: {hours} h"
                for (sensor, day), hours in days.head(10).items()
            )
            or "none",
        },
    )


def no_malformed_rows(rejected: list[str]) -> AssetCheckResult:
    return AssetCheckResult(
        check_name="no_malformed_rows",
        asset_key=RAW_READINGS,
        passed=not rejected,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "malformed_rows": len(rejected),
            "threshold": 0,
            "examples": "\n".join(rejected[:5]) or "none",
        },
    )


def _same_kind(actual: object, expected: str) -> bool:
    actual_name = str(actual)
    if expected.startswith("datetime64"):
        return actual_name.startswith("datetime64") and "," not in actual_name  # tz-naive UTC only
    if expected == "string":
        return actual_name in {"string", "object", "str"}
    return actual_name == expected


def _examples(rows: pd.DataFrame) -> str:
    if rows.empty:
        return "none"
    return "\n".join(
        f"sensor {r.sensor_id} at {r.datetime_utc}: {r.value} {r.units}" for r in rows.itertuples()
    )
