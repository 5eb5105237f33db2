"""`predictions` (daily batch forecasts from the champion) and `online_features` (the recent
history the HTTP service forecasts from, as a Parquet file)."""

import os
from pathlib import Path

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetSelection,
    MaterializeResult,
    Output,
    asset,
)

from aq_assets.defs.ingest.catalog import location_names_of, timezones_of
from aq_assets.defs.model.tracking import MLflowTracking
from aq_assets.ml.cleaning import without_stuck
from aq_assets.ml.forecasting import feature_rows, forecasts_from_rows
from aq_assets.partitions import DAILY_READINGS, FOLLOWS_NEW_READINGS, day_partitions
from aq_assets.target import ForecastTarget
from aq_assets.warehouse import WAREHOUSE_KIND, WRITERS_POOL, Warehouse

ONLINE_FEATURES_FILE = "online_features.parquet"


@asset(
    group_name="predictions",
    partitions_def=day_partitions,
    deps=[DAILY_READINGS, "champion_model"],
    ins={"sensor_catalog": AssetIn()},
    metadata={"schema": "predictions", "partition_expr": "forecast_for_utc"},
    # Follows new readings of its day; a new champion does not redo past days.
    automation_condition=FOLLOWS_NEW_READINGS.ignore(AssetSelection.assets("champion_model")),
    pool=WRITERS_POOL,
    kinds={WAREHOUSE_KIND, "xgboost"},
)
def predictions(
    context: AssetExecutionContext,
    warehouse: Warehouse,
    mlflow_tracking: MLflowTracking,
    forecast_target: ForecastTarget,
    sensor_catalog: pd.DataFrame,
) -> Output[pd.DataFrame]:
    """For every sensor of the target parameter and every hour of the day, the forecast made
    1, 3, 6, 12 and 24 hours before by the model holding the `champion` alias when the run
    started (its version on every row), its quantiles (q05-q95), the probability of exceeding
    each threshold (p_above_*, AQ_THRESHOLDS) and its air-quality category, with the actual
    value once it is known. Re-running a day replaces it, e.g. to fill in actuals that
    arrived late."""
    version = mlflow_tracking.champion_version()
    if version is None:
        raise ValueError(
            "No champion model yet: materialize training_set, forecast_model and champion_model first."
        )
    forecaster = mlflow_tracking.load_forecaster(version)
    day_start = pd.Timestamp(context.partition_key)
    day_end = day_start + pd.Timedelta(days=1)
    history = pd.Timedelta(hours=forecaster.spec.history_hours + max(forecaster.spec.horizons))
    readings = warehouse.readings_between(forecaster.spec.parameter, day_start - history, day_end)
    timezones = timezones_of(sensor_catalog)
    rows = feature_rows(forecaster, readings, timezones, until=day_end - pd.Timedelta(hours=1))
    frame = daily_predictions(
        forecaster, rows, day_start, day_end, forecast_target.exceedance_thresholds()
    )
    frame["model_version"] = version
    frame["predicted_at"] = pd.Timestamp.now(tz="UTC").tz_localize(None)
    known = frame["actual"].notna() & frame["forecast"].notna()
    errors = (frame.loc[known, "forecast"] - frame.loc[known, "actual"]).abs()
    return Output(
        frame,
        metadata={
            "dagster/row_count": len(frame),
            "model_version": version,
            "sensors": int(frame["sensor_id"].nunique()),
            "rows_with_actual": int(known.sum()),
            "mae": float(errors.mean()) if len(errors) else float("nan"),
        },
    )


def daily_predictions(
    forecaster,
    rows: pd.DataFrame,
    day_start: pd.Timestamp,
    day_end: pd.Timestamp,
    thresholds: tuple[float, ...] = (),
) -> pd.DataFrame:
    """Forecasts whose target hour falls in [day_start, day_end), joined to the actual value."""
    forecasts = forecasts_from_rows(forecaster, rows, thresholds)
    in_day = (forecasts["forecast_for_utc"] >= day_start) & (
        forecasts["forecast_for_utc"] < day_end
    )
    forecasts = forecasts[in_day]
    actuals = rows[["sensor_id", "datetime_utc", "y"]].rename(
        columns={"datetime_utc": "forecast_for_utc", "y": "actual"}
    )
    frame = forecasts.merge(actuals, on=["sensor_id", "forecast_for_utc"], how="left")
    return frame.astype({"sensor_id": "int64", "horizon": "int64"}).sort_values(
        ["sensor_id", "forecast_for_utc", "horizon"], ignore_index=True
    )


@asset(
    group_name="predictions",
    deps=["raw_readings"],
    ins={"sensor_catalog": AssetIn()},
    automation_condition=FOLLOWS_NEW_READINGS,
    kinds={"parquet"},
)
def online_features(
    context: AssetExecutionContext,
    warehouse: Warehouse,
    forecast_target: ForecastTarget,
    sensor_catalog: pd.DataFrame,
) -> MaterializeResult:
    """The last hours of every parameter at each location with a target sensor, as a Parquet
    file under AQ_HOME: what the HTTP service forecasts from, so it never opens DuckDB. A
    stuck target sensor's repeated hours are quarantined here as in training: the service
    forecasts from its last trustworthy reading."""
    spec = forecast_target.spec()
    latest = warehouse.latest_reading(spec.parameter)
    if latest is None:
        raise ValueError(f"No {spec.parameter} readings yet: backfill raw_readings first.")
    end = latest.floor("h") + pd.Timedelta(hours=1)
    readings, quarantined = without_stuck(
        warehouse.readings_between(
            spec.parameter, end - pd.Timedelta(hours=spec.history_hours + 24), end
        ),
        spec.parameter,
    )
    timezones = timezones_of(sensor_catalog)
    snapshot = readings.assign(
        timezone=readings["location_id"].map(timezones).fillna("UTC").astype(str),
        # for the pages a person reads: "Kraków, ul. Bulwarowa" says more than an id
        location_name=readings["location_id"].map(location_names_of(sensor_catalog)),
    )
    path = online_features_path(warehouse)
    partial = path.with_suffix(".parquet.partial")
    snapshot.to_parquet(partial, index=False)
    os.replace(partial, path)  # readers see the old file or the new one, never half of one
    return MaterializeResult(
        metadata={
            "path": str(path),
            "dagster/row_count": len(snapshot),
            "sensors": int(
                snapshot.loc[snapshot["parameter"] == spec.parameter, "sensor_id"].nunique()
            ),
            "latest_hour_utc": str(end - pd.Timedelta(hours=1)),
            "quarantined_stuck_hours": quarantined,
        }
    )


def online_features_path(warehouse: Warehouse) -> Path:
    return warehouse.home / ONLINE_FEATURES_FILE
