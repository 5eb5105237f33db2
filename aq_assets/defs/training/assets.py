"""`training_set`: the hourly, cleaned, feature-engineered rows a forecaster learns from."""

import datetime
import json

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AutomationCondition,
    Config,
    Failure,
    MetadataValue,
    Output,
    asset,
)

from aq_assets.defs.ingest.catalog import timezones_of
from aq_assets.defs.training.lineage import content_fingerprint, partitions_summary
from aq_assets.ml.cleaning import clean_readings, without_stuck
from aq_assets.ml.evaluation import MIN_TRAINING_DAYS
from aq_assets.ml.features import as_float32, build_features
from aq_assets.partitions import last_day
from aq_assets.target import ForecastTarget
from aq_assets.warehouse import WAREHOUSE_KIND, WRITERS_POOL, Warehouse


class TrainingSetConfig(Config):
    window_days: int = 365
    """Days of readings to learn from, ending at the end of the calendar's last complete day
    (yesterday UTC, or the day before AQ_END_DATE) or at the latest reading stored, whichever
    is earlier. A year spans every season; 20 sensors × 365 days train in about a minute on
    one thread (benchmarks/README.md). At least 8, the fewest a model trains on."""


@asset(
    group_name="training",
    deps=["raw_readings"],
    ins={"sensor_catalog": AssetIn()},
    metadata={"schema": "training"},
    # Rebuilt when the model it feeds goes stale (freshness policy on forecast_model).
    automation_condition=(
        AutomationCondition.asset_matches(
            AssetKey("forecast_model"), AutomationCondition.freshness_failed().newly_true()
        )
        & ~AutomationCondition.in_progress()
    ).with_label("forecast_model went stale"),
    pool=WRITERS_POOL,
    kinds={WAREHOUSE_KIND, "pandas"},
)
def training_set(
    context: AssetExecutionContext,
    config: TrainingSetConfig,
    warehouse: Warehouse,
    forecast_target: ForecastTarget,
    sensor_catalog: pd.DataFrame,
) -> Output[pd.DataFrame]:
    """Hourly rows per sensor of the target parameter (AQ_PARAMETER) over the last
    `window_days` up to the calendar's last complete day (AQ_END_DATE): cleaned values (gaps
    stay gaps), lags, rolling statistics, calendar, the co-located parameters of the same
    location, sensor identity, and the value 1-24 h later as targets, in single precision
    (float32). The fingerprint identifies its exact content in MLflow."""
    if config.window_days < MIN_TRAINING_DAYS:  # refused before the stored table is replaced
        raise Failure(
            f"training_set's window_days={config.window_days} is too few days to train on; "
            f"set it to at least {MIN_TRAINING_DAYS} (default 365). The stored training set is "
            "unchanged."
        )
    spec = forecast_target.spec()
    calendar_end = pd.Timestamp(last_day() + datetime.timedelta(days=1))
    readings = warehouse.readings_window(
        spec.parameter, config.window_days * 24 + spec.history_hours, calendar_end
    )
    if readings.empty:
        raise ValueError(
            f"No {spec.parameter} readings in ingest.raw_readings before {calendar_end} "
            "(AQ_END_DATE): backfill raw_readings first (aq backfill), or check AQ_PARAMETER "
            "and AQ_END_DATE."
        )
    hourly, report = clean_readings(readings)
    hourly, quarantined = without_stuck(hourly, spec.parameter)
    target_sensors = sorted(hourly.loc[hourly["parameter"] == spec.parameter, "sensor_id"].unique())
    spec = spec.with_sensors(target_sensors)
    timezones = timezones_of(sensor_catalog)
    frame = as_float32(build_features(hourly, spec, timezones))  # the float64 copy goes at once
    window_start = frame["datetime_utc"].max() - pd.Timedelta(days=config.window_days)
    frame = frame[frame["datetime_utc"] > window_start].reset_index(drop=True)

    fingerprint = content_fingerprint(frame)
    first_hour, last_hour = frame["datetime_utc"].min(), frame["datetime_utc"].max()
    partitions = partitions_summary(
        first_hour.date(), last_hour.date(), [int(s) for s in target_sensors]
    )
    context.log.info(f"training_set {fingerprint}: {len(frame)} rows from {partitions}")
    return Output(
        frame,
        metadata={
            "dagster/row_count": len(frame),
            "sensors": len(target_sensors),
            "first_hour_utc": str(first_hour),
            "last_hour_utc": str(last_hour),
            "missing_share": float(frame["y"].isna().mean()),
            "fingerprint": fingerprint,
            "built_from_partitions": partitions,
            "feature_spec": MetadataValue.json(json.loads(spec.to_json())),
            "cleaning": MetadataValue.json(report.as_dict()),
            "quarantined_stuck_hours": quarantined,
        },
    )
