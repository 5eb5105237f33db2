"""Declarative automation for the whole graph."""

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

from aq_assets.settings import sensor_interval_seconds

# The implicit automation sensor starts STOPPED; ours runs from the first `dg dev`.
aq_automation = AutomationConditionSensorDefinition(
    "aq_automation",
    target=AssetSelection.all(),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=sensor_interval_seconds(),
)
