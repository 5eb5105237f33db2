"""The resources every stage shares, configured from the environment (see README.md)."""

from __future__ import annotations

from typing import Any

from aq_assets.defs.ingest.resources import build_source
from aq_assets.defs.model.tracking import MLflowTracking
from aq_assets.defs.monitoring.alerts import Alerter, ServiceLinks
from aq_assets.defs.monitoring.automation import RetrainPolicy
from aq_assets.settings import env_number, env_or_default
from aq_assets.target import ForecastTarget
from aq_assets.warehouse import configured_warehouse_resources


def build_resources() -> dict[str, Any]:
    aq_home = env_or_default("AQ_HOME", ".aq")
    return {
        "mlflow_tracking": MLflowTracking(
            tracking_uri=env_or_default("MLFLOW_TRACKING_URI", ""), aq_home=aq_home
        ),
        **configured_warehouse_resources(aq_home),
        "source": build_source(),
        "forecast_target": ForecastTarget(
            parameter=env_or_default("AQ_PARAMETER", "pm25"),
            horizons=env_or_default("AQ_HORIZONS", "1,3,6,12,24"),
            thresholds=env_or_default("AQ_THRESHOLDS", ""),
        ),
        "alerter": Alerter(webhook_url=env_or_default("AQ_ALERT_WEBHOOK_URL", "")),
        "service_links": ServiceLinks(
            service_url=env_or_default("AQ_SERVICE_URL", "http://127.0.0.1:8000")
        ),
        "retrain_policy": RetrainPolicy(
            cooldown_hours=env_number("AQ_RETRAIN_COOLDOWN_HOURS", "12", minimum=0),
            retry_days=int(env_number("AQ_RETRAIN_RETRY_DAYS", "14", minimum=0, whole=True)),
        ),
    }
