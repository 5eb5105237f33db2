"""The one place partitions are defined.

`day` is a daily UTC partition set; `sensor` is a dynamic set of source sensor ids, filled by
`sensor_catalog`. A reading partition key reads `2025-01-03|9001002` (dimensions sorted by name).
"""

from __future__ import annotations

import datetime as dt

from dagster import (
    AssetDep,
    AutomationCondition,
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    MultiToSingleDimensionPartitionMapping,
)

from aq_assets.settings import DEFAULT_START_DATE, SettingError, env_date, newest_day

# The first day a user can ingest; read when the code location loads (partition sets are
# static). Set AQ_START_DATE=2020-12-01 to reach the Mexico City archive data.
START_DATE = env_date("AQ_START_DATE", DEFAULT_START_DATE)
# The day after the last partition; unset, a new day partition appears every midnight UTC.
# Set it to replay a past period as if it were live: the automation then treats the day
# before it as the newest (AQ_END_DATE=2025-06-11 makes 2025-06-10 "yesterday").
END_DATE = env_date("AQ_END_DATE") or None
if END_DATE is not None and END_DATE <= START_DATE:
    raise SettingError(
        f"AQ_END_DATE={END_DATE} is not after AQ_START_DATE={START_DATE}: the calendar would "
        "hold no day. Set AQ_START_DATE to a day before it (`aq up` and `aq backfill` move it "
        "back to the first day they ingest), or AQ_END_DATE to the day after the last one to "
        "replay, or unset AQ_END_DATE."
    )

DAY = "day"
SENSOR = "sensor"

day_partitions = DailyPartitionsDefinition(start_date=START_DATE, end_date=END_DATE, timezone="UTC")
sensor_partitions = DynamicPartitionsDefinition(name=SENSOR)
reading_partitions = MultiPartitionsDefinition({DAY: day_partitions, SENSOR: sensor_partitions})

# What the daily assets (predictions, forecast_accuracy, drift_report) read: every sensor's
# readings of their day.
DAILY_READINGS = AssetDep(
    "raw_readings",
    partition_mapping=MultiToSingleDimensionPartitionMapping(partition_dimension_name=DAY),
)
# Eager, except that it does not wait for every upstream partition: a calendar that starts
# before the first ingested day, or one sensor-day that failed, must not freeze what follows
# the newest readings (stock `eager()` waits while any dependency partition is missing).
FOLLOWS_NEW_READINGS = AutomationCondition.eager().without(~AutomationCondition.any_deps_missing())


def last_day() -> dt.date:
    """The newest complete day partition: yesterday (UTC), or the day before AQ_END_DATE."""
    return newest_day(END_DATE)


def reading_key(day: dt.date | str, sensor_id: int | str) -> str:
    """The partition key string of one sensor-day, e.g. `2025-01-03|9001002`."""
    return str(MultiPartitionKey({DAY: str(day), SENSOR: str(sensor_id)}))


def split_reading_key(key: str) -> tuple[dt.date, int]:
    """(`day`, `sensor_id`) of a reading partition key."""
    day, sensor = key.split("|")
    return dt.date.fromisoformat(day), int(sensor)
