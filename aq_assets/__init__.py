"""aq: air-quality forecasting as Dagster software-defined assets."""

import warnings

# Two beta APIs aq uses on purpose (raw_readings' backfill policy: runs of many sensor-days;
# the day-to-all-sensors mapping of the daily assets). Dagster would warn at every load and
# in every `aq` command; the choice is made and documented, so say it once here instead.
warnings.filterwarnings(
    "ignore",
    message=r"(Parameter `backfill_policy` of function `asset`"
    r"|Class `MultiToSingleDimensionPartitionMapping`) is currently in beta",
)
