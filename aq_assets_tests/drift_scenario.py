"""A day-by-day run of the monitoring loop, in-process: readings arrive, predictions and the
drift report follow, the retrain sensor ticks, and the training it requests runs.

Shared by the monitoring test and `benchmarks/drift_loop.py`. The cooldown is zero, so a
second retraining would show: only the drift check itself may prevent it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from dagster import AssetKey, DagsterInstance, build_sensor_context, materialize

from aq_assets.defs.ingest.assets import raw_readings, sensor_catalog
from aq_assets.defs.ingest.catalog import sensors_by_id
from aq_assets.defs.ingest.readings import collect_readings
from aq_assets.defs.ingest.sources.base import ReadingsSource
from aq_assets.defs.ingest.sources.simulated import SimulatedSource
from aq_assets.defs.model.assets import champion_model, forecast_model
from aq_assets.defs.model.tracking import MLflowTracking
from aq_assets.defs.monitoring.alerts import Alerter, ServiceLinks
from aq_assets.defs.monitoring.assets import drift_report, forecast_accuracy
from aq_assets.defs.monitoring.automation import RetrainPolicy, retrain_on_drift
from aq_assets.defs.predictions.assets import online_features, predictions
from aq_assets.defs.training.assets import training_set
from aq_assets.partitions import reading_key, reading_partitions
from aq_assets.target import ForecastTarget
from aq_assets.warehouse import DuckDBWarehouse, partition_rows, warehouse_resources

ASSETS = [
    sensor_catalog,
    raw_readings,
    training_set,
    forecast_model,
    champion_model,
    predictions,
    online_features,
    drift_report,
    forecast_accuracy,
]


@dataclass(frozen=True)
class DayOutcome:
    day: dt.date
    check_passed: bool
    share_drifted: float
    error_ratio: float
    drifted_features: str
    retrain_requested: bool
    champion_version: int | None
    accuracy_passed: bool
    accuracy: dict[str, float]  # forecast_accuracy's numeric metadata
    report_url: str  # where the UI links for the day's HTML report


class Scenario:
    def __init__(
        self,
        home: Path,
        drift: str,
        instance: DagsterInstance,
        max_rounds: int = 300,
        source: ReadingsSource | None = None,
    ) -> None:
        self.source = source or SimulatedSource(drift=drift)
        self.warehouse = DuckDBWarehouse(aq_home=str(home))
        self.tracking = MLflowTracking(aq_home=str(home))
        self.instance = instance
        self.run_config = {"ops": {"forecast_model": {"config": {"max_rounds": max_rounds}}}}
        self.resources = {
            "source": self.source,
            "forecast_target": ForecastTarget(parameter=self.source.parameter),
            **warehouse_resources(self.warehouse.aq_home),
            "mlflow_tracking": self.tracking,
            "alerter": Alerter(),
            "service_links": ServiceLinks(),
            "retrain_policy": RetrainPolicy(cooldown_hours=0.0),
        }
        self.cursor: str | None = None
        self.retrains = 0

    def ingest(self, first: dt.date, last: dt.date) -> None:
        """Readings of every sensor for first..last, written as raw_readings partitions."""
        catalog = self.source.list_sensors()
        sensors = sensors_by_id(catalog, list(catalog["sensor_id"]))
        days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
        collected = collect_readings(
            self.source, [(s, d) for d in days for s in sensors.values()], pd.Timestamp.now()
        )
        keys = [reading_key(d, s) for d in days for s in sensors]
        rows, mapping = partition_rows(
            reading_partitions, keys, {"day": "datetime_utc", "sensor": "sensor_id"}
        )
        self.warehouse.replace("ingest", "raw_readings", collected.readings, rows, mapping)

    def start(self, first_monitored: dt.date, history_days: int = 90) -> None:
        assert materialize(
            [sensor_catalog], instance=self.instance, resources=self.resources
        ).success
        self.ingest(
            first_monitored - dt.timedelta(days=history_days),
            first_monitored - dt.timedelta(days=1),
        )
        self.train()

    def train(self, tags: dict[str, str] | None = None) -> bool:
        result = materialize(
            ASSETS,
            selection=[training_set, forecast_model, champion_model],
            instance=self.instance,
            resources=self.resources,
            run_config=self.run_config,
            tags=tags,
            raise_on_error=False,
        )
        return result.success

    def day(self, day: dt.date, retrain: bool = True) -> DayOutcome:
        """The day's readings arrive, are forecast, scored and judged; with `retrain`, the
        sensor ticks and the training it asks for runs (without, the champion is frozen)."""
        self.ingest(day, day)
        result = materialize(
            ASSETS,
            selection=[predictions, forecast_accuracy, drift_report],
            partition_key=str(day),
            instance=self.instance,
            resources=self.resources,
        )
        assert result.success
        check = next(
            e
            for e in result.get_asset_check_evaluations()
            if e.check_name == "no_significant_drift"
        )
        accuracy_check = next(
            e
            for e in result.get_asset_check_evaluations()
            if e.check_name == "champion_beats_baselines"
        )
        materialized = {
            e.asset_key: e.materialization.metadata
            for e in result.get_asset_materialization_events()
        }
        report = materialized[AssetKey("drift_report")]
        accuracy = {
            k: float(v.value)
            for k, v in materialized[AssetKey("forecast_accuracy")].items()
            if isinstance(v.value, (int, float)) and not isinstance(v.value, bool)
        }

        requested = False
        if retrain:
            sensor_resources = {k: self.resources[k] for k in ("alerter", "retrain_policy")}
            with build_sensor_context(
                instance=self.instance, cursor=self.cursor, resources=sensor_resources
            ) as context:
                tick = retrain_on_drift(context)
            self.cursor = tick.cursor
            requested = bool(tick.run_requests)
            for request in tick.run_requests:
                self.retrains += 1
                self.train(tags=dict(request.tags))
        return DayOutcome(
            day=day,
            check_passed=check.passed,
            share_drifted=float(report["share_drifted"].value),
            error_ratio=float(report["error_ratio"].value),
            drifted_features=str(report["drifted_features"].value),
            retrain_requested=requested,
            champion_version=self.tracking.champion_version(),
            accuracy_passed=accuracy_check.passed,
            accuracy=accuracy,
            report_url=str(report["report_url"].value),
        )
