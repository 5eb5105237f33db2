"""Keeping readings current: a daily schedule that ingests the latest days for every sensor."""

import datetime as dt

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from aq_assets.defs.ingest import jobs  # the module: autoloading then finds each job once
from aq_assets.partitions import SENSOR, reading_key


def latest_days_request(instance, scheduled: dt.datetime, days: int = 2) -> RunRequest | SkipReason:
    """All sensors × the last `days` complete UTC days before `scheduled`, as one run. The
    day before yesterday is taken again: late readings replace what it held."""
    sensors = instance.get_dynamic_partitions(SENSOR)
    if not sensors:
        return SkipReason("No sensors registered yet: materialize sensor_catalog.")
    last = scheduled.date() - dt.timedelta(days=1)
    first = last - dt.timedelta(days=days - 1)
    return RunRequest(
        run_key=f"ingest-{first}-{last}",
        tags={
            "dagster/asset_partition_range_start": reading_key(first, sensors[0]),
            "dagster/asset_partition_range_end": reading_key(last, sensors[-1]),
        },
    )


@schedule(
    cron_schedule="20 0 * * *",
    job=jobs.ingest_job,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Every day at 00:20 UTC: yesterday and the day before, for every sensor.",
)
def ingest_latest_days(context: ScheduleEvaluationContext):
    return latest_days_request(context.instance, context.scheduled_execution_time)


discover_sensors_weekly = ScheduleDefinition(
    name="discover_sensors_weekly",
    cron_schedule="0 0 * * 1",
    job=jobs.catalog_job,
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Every Monday: look for new sensors and register them as partitions.",
)
