"""`drift_report`: each day's features and errors against the model's training reference."""

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetDep,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    AssetSelection,
    AutomationCondition,
    Config,
    MetadataValue,
    MultiToSingleDimensionPartitionMapping,
    Output,
    asset,
)

from aq_assets.ingest.catalog import timezones_of
from aq_assets.ml.features import drift_view
from aq_assets.ml.forecasting import feature_rows
from aq_assets.model.tracking import MLflowTracking
from aq_assets.partitions import DAY, day_partitions
from aq_assets.predictions.assets import readings_between
from aq_assets.warehouse import Warehouse

DRIFT_REPORT = AssetKey("drift_report")
NO_SIGNIFICANT_DRIFT = AssetCheckSpec(
    "no_significant_drift",
    asset=DRIFT_REPORT,
    blocking=False,
    description=(
        "Fails when the MEASURED share of drifted features, or the error against the reference "
        "error, passes its threshold, given enough rows. A failure triggers one retraining."
    ),
)


class DriftConfig(Config):
    reference_days: int = 1
    """The last days of the training set the day is compared with: the regime the model last saw."""
    stattest: str = "wasserstein"
    """Evidently's per-feature test. Wasserstein distance over the reference's standard deviation is
    an effect size: on hourly data, within-day autocorrelation makes p-value tests (K-S) cry wolf."""
    column_threshold: float = 0.6
    """A feature drifts when its test score passes this (for Wasserstein: reference standard deviations)."""
    max_drifted_share: float = 0.5
    """The check fails when more than this share of the features drifted (measured, per feature)."""
    max_error_ratio: float = 1.5
    """The check fails when the day's relative 1 h error exceeds the reference's by this factor."""
    min_rows: int = 48
    """Fewer current or reference rows than this: not enough to decide, the check passes."""


def relative_error(forecast: pd.Series, actual: pd.Series) -> float | None:
    """Mean absolute error over the mean actual: comparable across levels and regimes."""
    known = forecast.notna() & actual.notna()
    if not known.any() or actual[known].mean() == 0:
        return None
    return float((forecast[known] - actual[known]).abs().mean() / actual[known].mean())


@asset(
    group_name="monitoring",
    partitions_def=day_partitions,
    deps=[
        AssetDep(
            "raw_readings",
            partition_mapping=MultiToSingleDimensionPartitionMapping(partition_dimension_name=DAY),
        ),
        "training_set",
    ],
    ins={"predictions": AssetIn(), "sensor_catalog": AssetIn()},
    metadata={"schema": "monitoring", "partition_expr": "day"},
    check_specs=[NO_SIGNIFICANT_DRIFT],
    # Follows the day's predictions; a retrain (new training set) does not re-judge past days,
    # so a retraining can never trigger itself.
    automation_condition=AutomationCondition.eager().ignore(AssetSelection.assets("training_set")),
    pool="duckdb",
    kinds={"evidently", "duckdb"},
)
def drift_report(
    context: AssetExecutionContext,
    config: DriftConfig,
    warehouse: Warehouse,
    mlflow_tracking: MLflowTracking,
    predictions: pd.DataFrame,
    sensor_catalog: pd.DataFrame,
):
    """Evidently's drift report of the day's features (scale-free: variability, relative
    changes, ratios to co-located parameters) and 1 h forecast errors against the last
    `reference_days` of the training set. The HTML report is saved under AQ_HOME/reports; the
    summary (measured share of drifted features, which ones, errors, model version) is stored
    in monitoring.drift and shown here, so it plots over days."""
    from aq_assets.ml.drift import DriftThresholds, drift_summary

    day_start = pd.Timestamp(context.partition_key)
    day_end = day_start + pd.Timedelta(days=1)
    version = mlflow_tracking.champion_version()
    if version is None:
        raise ValueError("No champion model yet: train one first (aq train).")
    forecaster = mlflow_tracking.load_forecaster(version)
    spec = forecaster.spec

    reference = warehouse.query(
        "SELECT * FROM training.training_set WHERE datetime_utc >= "
        "(SELECT max(datetime_utc) FROM training.training_set) - to_days(CAST(? AS BIGINT)) + INTERVAL 1 HOUR",
        [config.reference_days],
    )
    history = pd.Timedelta(hours=spec.history_hours)
    readings = readings_between(warehouse, spec.parameter, day_start - history, day_end)
    timezones = timezones_of(sensor_catalog)
    rows = feature_rows(forecaster, readings, timezones, until=day_end - pd.Timedelta(hours=1))
    current = rows[rows["datetime_utc"] >= day_start]

    reference_error = (
        relative_error(forecaster.predict(reference)["h1"], reference["target_h1"])
        if len(reference)
        else None
    )
    hour_ahead = predictions[predictions["horizon"] == 1]
    current_error = relative_error(hour_ahead["forecast"], hour_ahead["actual"])

    report_path = (
        Path(warehouse.aq_home).expanduser().resolve()
        / "reports"
        / f"drift-{context.partition_key}.html"
    )
    report_path.parent.mkdir(parents=True, exist_ok=True)
    thresholds = DriftThresholds(
        max_drifted_share=config.max_drifted_share,
        max_error_ratio=config.max_error_ratio,
        min_rows=config.min_rows,
        method=config.stattest,
        column_threshold=config.column_threshold,
    )
    summary = drift_summary(
        drift_view(reference, spec.covariates),
        drift_view(current, spec.covariates),
        list(drift_view(current.head(1), spec.covariates).columns),
        thresholds,
        reference_error=reference_error,
        current_error=current_error,
        html_path=report_path,
    )
    row = pd.DataFrame(
        {
            "day": [day_start],
            "share_drifted": [summary.share_drifted],
            "drifted_features": [",".join(summary.drifted_columns)],
            "features_evaluated": [len(summary.columns)],
            "rows_current": [summary.rows_current],
            "rows_reference": [summary.rows_reference],
            "reference_error": [np.nan if reference_error is None else reference_error],
            "current_error": [np.nan if current_error is None else current_error],
            "error_ratio": [np.nan if summary.error_ratio is None else summary.error_ratio],
            "drift_detected": [summary.drift_detected],
            "model_version": [version],
            "report_path": [str(report_path)],
        }
    )
    metadata: dict[str, Any] = {
        "share_drifted": float(summary.share_drifted),
        "drifted_features": ", ".join(summary.drifted_columns) or "none",
        "error_ratio": float("nan") if summary.error_ratio is None else float(summary.error_ratio),
        "current_error": float("nan") if current_error is None else current_error,
        "reference_error": float("nan") if reference_error is None else reference_error,
        "drift_detected": bool(summary.drift_detected),
        "model_version": version,
        "report": MetadataValue.path(str(report_path)),
    }
    yield Output(row, metadata=metadata)
    yield AssetCheckResult(
        check_name=NO_SIGNIFICANT_DRIFT.name,
        asset_key=DRIFT_REPORT,
        passed=not summary.drift_detected,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "share_drifted": float(summary.share_drifted),
            "max_drifted_share": config.max_drifted_share,
            "error_ratio": float("nan")
            if summary.error_ratio is None
            else float(summary.error_ratio),
            "max_error_ratio": config.max_error_ratio,
            "rows_current": summary.rows_current,
            "min_rows": config.min_rows,
            "enough_data": bool(summary.enough_data),
            "reasons": MetadataValue.md("\n".join(f"- {r}" for r in summary.reasons) or "no drift"),
        },
    )
