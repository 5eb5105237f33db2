"""Declarative automation for the whole graph."""

from dagster import AssetSelection, AutomationConditionSensorDefinition, DefaultSensorStatus

# The implicit automation sensor starts STOPPED; ours runs from the first `dg dev`.
aq_automation = AutomationConditionSensorDefinition(
    "aq_automation", target=AssetSelection.all(), default_status=DefaultSensorStatus.RUNNING
)
