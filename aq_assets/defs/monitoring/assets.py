"""`drift_report`: each day's features and errors against the model's training reference."""

import math
from typing import Any

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetIn,
    AssetKey,
    Config,
    MetadataValue,
    Output,
    asset,
)

from aq_assets.defs.ingest.catalog import timezones_of
from aq_assets.defs.model.tracking import MLflowTracking
from aq_assets.defs.monitoring.alerts import ServiceLinks
from aq_assets.ml.features import drift_view
from aq_assets.ml.forecasting import feature_rows, served_coverage
from aq_assets.partitions import DAILY_READINGS, FOLLOWS_NEW_READINGS, day_partitions
from aq_assets.warehouse import WAREHOUSE_KIND, WRITERS_POOL, Warehouse

DRIFT_REPORT = AssetKey("drift_report")
NO_SIGNIFICANT_DRIFT = AssetCheckSpec(
    "no_significant_drift",
    asset=DRIFT_REPORT,
    blocking=False,
    description=(
        "Fails when the day and the day before each drifted from the champion's reference: a "
        "feature past its own limit (the distance 99% of the champion's training days stay "
        "below), given enough rows. A failure triggers one retraining."
    ),
)


class DriftConfig(Config):
    max_drifted_share: float = 0.0
    """A day drifts when more than this share of the features drifted (measured: each feature
    against its own limit, the distance 99% of the champion's training days stay below), so by
    default when any one did (benchmarks/drift_calibration.py)."""
    confirm_days: int = 2
    """The check fails (and a retrain is asked for) only when each of this many consecutive
    days, ending with this one, drifted from the same champion: one odd day is weather."""
    max_error_ratio: float | None = None
    """When set, a day also drifts when its relative 1 h error exceeds the champion's held-out
    one by this factor. Off by default: a day's relative error moves with its weather (not
    calibrated on the real sets); accuracy against persistence on the same rows is the
    measure for that."""
    min_rows: int = 24
    """Fewer current rows than this (or values in a feature): not enough to decide, the day passes."""


@asset(
    group_name="monitoring",
    partitions_def=day_partitions,
    deps=[DAILY_READINGS],
    ins={"predictions": AssetIn(), "sensor_catalog": AssetIn()},
    metadata={"schema": "monitoring", "partition_expr": "day"},
    check_specs=[NO_SIGNIFICANT_DRIFT],
    # Follows the day's predictions. A retrain does not re-judge past days (the reference is
    # the champion's, read when the report runs), so a retraining can never trigger itself.
    automation_condition=FOLLOWS_NEW_READINGS,
    pool=WRITERS_POOL,
    kinds={"evidently", WAREHOUSE_KIND},
)
def drift_report(
    context: AssetExecutionContext,
    config: DriftConfig,
    warehouse: Warehouse,
    mlflow_tracking: MLflowTracking,
    service_links: ServiceLinks,
    predictions: pd.DataFrame,
    sensor_catalog: pd.DataFrame,
):
    """Evidently's drift report of the day's features (scale-free: variability, relative
    changes, log ratios to co-located pollutants and to the network) against the champion's
    own reference: a sample of the days it learnt from with a limit per feature, kept with its
    version in MLflow, so nothing a refused candidate writes moves it. The check fails when
    the day and the `confirm_days` - 1 days before it all drifted. The HTML report is saved
    under AQ_HOME/reports; the summary (measured share of drifted features, which ones, the
    1 h error beside the champion's held-out error, model version) is stored in
    monitoring.drift_report and shown here, so it plots over days."""
    from aq_assets.ml.drift import DriftSummary, DriftThresholds, drift_summary, relative_error

    day_start = pd.Timestamp(context.partition_key)
    day_end = day_start + pd.Timedelta(days=1)
    version = mlflow_tracking.champion_version()
    if version is None:
        raise ValueError("No champion model yet: train one first (aq train).")
    forecaster = mlflow_tracking.load_forecaster(version)
    spec = forecaster.spec

    reference = mlflow_tracking.drift_reference(version)
    # The day and the days before it that confirm it, each judged on its own.
    first = day_start - pd.Timedelta(days=config.confirm_days - 1)
    history = pd.Timedelta(hours=spec.history_hours)
    readings = warehouse.readings_between(spec.parameter, first - history, day_end)
    timezones = timezones_of(sensor_catalog)
    rows = feature_rows(
        forecaster, readings, timezones, until=day_end - pd.Timedelta(hours=1), quarantine=True
    )
    rows = rows[rows["datetime_utc"] >= first]
    views = {
        day: drift_view(day_rows, spec)
        for day, day_rows in rows.groupby(rows["datetime_utc"].dt.floor("D"))
    }

    hour_ahead = predictions[predictions["horizon"] == 1]
    current_error = relative_error(hour_ahead["forecast"], hour_ahead["actual"])

    report_path = warehouse.home / "reports" / f"drift-{context.partition_key}.html"
    report_path.parent.mkdir(parents=True, exist_ok=True)
    thresholds = DriftThresholds(
        max_drifted_share=config.max_drifted_share,
        max_error_ratio=math.inf if config.max_error_ratio is None else config.max_error_ratio,
        min_rows=config.min_rows,
        method="wasserstein",  # the statistic the reference's limits are quantiles of
        per_column=reference.thresholds,
    )

    def judged(day: pd.Timestamp, **kwargs: Any) -> DriftSummary:
        view = views.get(day, pd.DataFrame(columns=list(reference.thresholds)))
        columns = [c for c in view.columns if c in reference.thresholds]
        return drift_summary(reference.rows, view, columns, thresholds, **kwargs)

    summary = judged(
        day_start,
        reference_error=reference.error,
        current_error=current_error,
        html_path=report_path,
    )
    confirmed = summary.drift_detected and all(
        judged(first + pd.Timedelta(days=k)).drift_detected for k in range(config.confirm_days - 1)
    )
    row = pd.DataFrame(
        {
            "day": [day_start],
            "share_drifted": [summary.share_drifted],
            "drifted_features": [",".join(summary.drifted_columns)],
            "features_evaluated": [len(summary.columns)],
            "rows_current": [summary.rows_current],
            "rows_reference": [summary.rows_reference],
            "reference_error": [np.nan if reference.error is None else reference.error],
            "current_error": [np.nan if current_error is None else current_error],
            "error_ratio": [np.nan if summary.error_ratio is None else summary.error_ratio],
            "drift_detected": [confirmed],
            "model_version": [version],
            "report_path": [str(report_path)],
        }
    )
    metadata: dict[str, Any] = {
        "share_drifted": float(summary.share_drifted),
        "drifted_features": ", ".join(summary.drifted_columns) or "none",
        "error_ratio": float("nan") if summary.error_ratio is None else float(summary.error_ratio),
        "current_error": float("nan") if current_error is None else current_error,
        "reference_error": float("nan") if reference.error is None else reference.error,
        "day_drifted": bool(summary.drift_detected),
        "drift_detected": bool(confirmed),
        "model_version": version,
        "report": MetadataValue.path(str(report_path)),
        "report_url": MetadataValue.url(service_links.drift_report(context.partition_key)),
    }
    yield Output(row, metadata=metadata)
    reasons = list(summary.reasons) or ["no drift"]
    if summary.drift_detected:
        reasons.append(
            f"drift on {config.confirm_days} consecutive days against version {version}: confirmed"
            if confirmed
            else f"not confirmed: needs {config.confirm_days} consecutive days past a limit"
        )
    yield AssetCheckResult(
        check_name=NO_SIGNIFICANT_DRIFT.name,
        asset_key=DRIFT_REPORT,
        passed=not confirmed,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "day_drifted": bool(summary.drift_detected),
            "confirm_days": config.confirm_days,
            "share_drifted": float(summary.share_drifted),
            "max_drifted_share": config.max_drifted_share,
            "error_ratio": float("nan")
            if summary.error_ratio is None
            else float(summary.error_ratio),
            **(
                {"max_error_ratio": config.max_error_ratio}
                if config.max_error_ratio is not None
                else {}
            ),
            "rows_current": summary.rows_current,
            "min_rows": config.min_rows,
            "enough_data": bool(summary.enough_data),
            "reasons": MetadataValue.md("\n".join(f"- {r}" for r in reasons)),
        },
    )


FORECAST_ACCURACY = AssetKey("forecast_accuracy")
CHAMPION_BEATS_BASELINES = AssetCheckSpec(
    "champion_beats_baselines",
    asset=FORECAST_ACCURACY,
    blocking=False,
    description=(
        "Fails when, over the champion's recent days, its forecasts are worse than the best "
        "baseline at some horizon with evidence (a Diebold-Mariano test on the daily "
        "squared-error differential), not on one bad day. A failure triggers one retraining."
    ),
)


class AccuracyConfig(Config):
    window_days: int = 14
    """The days (served by the same champion) the check weighs."""
    min_days: int = 7
    """Fewer days than this: not enough evidence, the check passes."""
    alpha: float = 0.05
    """One-sided significance of "worse than the best baseline"."""
    climatology_days: int = 28
    """The days before the day whose hourly means are the climatology baseline."""


@asset(
    group_name="monitoring",
    partitions_def=day_partitions,
    deps=[DAILY_READINGS],
    ins={"predictions": AssetIn(), "sensor_catalog": AssetIn()},
    metadata={"schema": "monitoring", "partition_expr": "day"},
    check_specs=[CHAMPION_BEATS_BASELINES],
    automation_condition=FOLLOWS_NEW_READINGS,
    pool=WRITERS_POOL,
    kinds={WAREHOUSE_KIND},
)
def forecast_accuracy(
    context: AssetExecutionContext,
    config: AccuracyConfig,
    warehouse: Warehouse,
    mlflow_tracking: MLflowTracking,
    predictions: pd.DataFrame,
    sensor_catalog: pd.DataFrame,
):
    """The day's served forecasts (`predictions`) against what happened, per horizon, beside
    persistence, same-hour-yesterday and hour-of-day climatology on the same rows: RMSE and
    MAE of each, stored in monitoring.forecast_accuracy, and, over the last `window_days`
    served by the same champion, its skill over the best baseline and whether it is worse
    with evidence. Numeric metadata, so the UI plots each horizon over days."""
    from aq_assets.ml.evaluation import loss_differential, scores_of_day

    day_start = pd.Timestamp(context.partition_key)
    day_end = day_start + pd.Timedelta(days=1)
    versions = predictions["model_version"].dropna().unique()
    if len(versions) == 0:
        raise ValueError(
            f"No predictions for {context.partition_key}: materialize predictions for it first."
        )
    version = int(versions.max())
    forecaster = mlflow_tracking.load_forecaster(version)
    spec = forecaster.spec
    start = day_start - pd.Timedelta(days=config.climatology_days)
    history = pd.Timedelta(hours=spec.history_hours)
    readings = warehouse.readings_between(spec.parameter, start - history, day_end)
    rows = feature_rows(
        forecaster,
        readings,
        timezones_of(sensor_catalog),
        until=day_end - pd.Timedelta(hours=1),
        quarantine=True,
    )
    origins = rows[rows["datetime_utc"] >= day_start - pd.Timedelta(hours=max(spec.horizons))]
    served = served_forecasts(predictions, origins, spec.horizons)
    known = rows[rows["datetime_utc"] < day_start]
    scores = scores_of_day(origins, served, known, spec, day_start)
    coverage = served_coverage(predictions)
    today = scores.merge(
        coverage.drop(columns="rows").assign(forecaster="champion"),
        on=["horizon", "forecaster"],
        how="left",
    ).assign(day=day_start, model_version=version)

    earlier = warehouse.accuracy_of(
        version, day_start - pd.Timedelta(days=config.window_days - 1), day_start
    )
    window = (
        pd.concat([earlier.reindex(columns=today.columns), today], ignore_index=True)
        if len(earlier)
        else today
    )
    verdict = loss_differential(window, "champion", config.min_days, config.alpha)
    lost = bool(verdict["worse"].any()) if len(verdict) else False

    metadata: dict[str, Any] = {"model_version": version, "accuracy_lost": lost}
    day_rmse = today.pivot(index="horizon", columns="forecaster", values="rmse")
    for h, row in day_rmse.iterrows():
        metadata[f"rmse_champion_h{h}"] = float(row["champion"])
        metadata[f"rmse_persistence_h{h}"] = float(row["persistence"])
        metadata[f"rmse_best_baseline_h{h}"] = float(row.drop("champion").min())
    for row in verdict.itertuples():
        metadata[f"window_skill_vs_best_h{row.horizon}"] = row.skill_vs_best
    for row in coverage.itertuples():  # the intervals served that day, per horizon
        metadata[f"coverage80_h{row.horizon}"] = float(row.coverage80)
        metadata[f"coverage90_h{row.horizon}"] = float(row.coverage90)
    yield Output(
        today[
            [
                "day",
                "horizon",
                "forecaster",
                "rows",
                "rmse",
                "mae",
                "rmse_episodes",
                "coverage80",
                "coverage90",
                "model_version",
            ]
        ],
        metadata=metadata,
    )
    worse = verdict[verdict["worse"]] if len(verdict) else verdict
    yield AssetCheckResult(
        check_name=CHAMPION_BEATS_BASELINES.name,
        asset_key=FORECAST_ACCURACY,
        passed=not lost,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "days": int(verdict["days"].max()) if len(verdict) else 0,
            "min_days": config.min_days,
            "worse_at_horizons": ", ".join(str(h) for h in worse["horizon"]) or "none",
            "verdict": MetadataValue.md(verdict.to_markdown(index=False, floatfmt=".4g"))
            if len(verdict)
            else "no scored rows",
        },
    )


def served_forecasts(
    predictions: pd.DataFrame, origins: pd.DataFrame, horizons: tuple[int, ...]
) -> pd.DataFrame:
    """The served forecasts as `h{h}` columns of the origin rows they were made from."""
    keys = pd.MultiIndex.from_arrays([origins["sensor_id"], origins["datetime_utc"]])
    columns = {}
    for h in horizons:
        at = predictions[predictions["horizon"] == h]
        made = pd.Series(
            at["forecast"].to_numpy(),
            index=pd.MultiIndex.from_arrays(
                [at["sensor_id"], at["forecast_for_utc"] - pd.Timedelta(hours=h)]
            ),
        )
        columns[f"h{h}"] = made.reindex(keys).to_numpy()
    return pd.DataFrame(columns, index=origins.index)
