"""The aq code location: assembles the stages, nothing else."""

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
    Definitions,
    load_assets_from_modules,
)

from aq_assets.ingest import assets as ingest_assets
from aq_assets.ingest.automation import discover_sensors_weekly, ingest_latest_days
from aq_assets.ingest.jobs import catalog_job, ingest_job
from aq_assets.model import assets as model_assets
from aq_assets.model.jobs import train_job
from aq_assets.monitoring import assets as monitoring_assets
from aq_assets.monitoring.automation import (
    alert_on_failed_checks,
    alert_on_run_failure,
    retrain_on_drift,
)
from aq_assets.predictions import assets as prediction_assets
from aq_assets.resources import build_resources
from aq_assets.training import assets as training_assets

defs = Definitions(
    assets=load_assets_from_modules(
        [ingest_assets, training_assets, model_assets, prediction_assets, monitoring_assets]
    ),
    jobs=[catalog_job, ingest_job, train_job],
    schedules=[ingest_latest_days, discover_sensors_weekly],
    sensors=[
        # The implicit automation sensor starts STOPPED; ours runs from the first `dagster dev`.
        AutomationConditionSensorDefinition(
            "aq_automation", target=AssetSelection.all(), default_status=DefaultSensorStatus.RUNNING
        ),
        retrain_on_drift,
        alert_on_run_failure,
        alert_on_failed_checks,
    ],
    resources=build_resources(),
)
