"""`sensor_catalog` and `raw_readings`: what sensors exist, and what each read, day by day."""

from collections.abc import Iterator

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AssetMaterialization,
    BackfillPolicy,
    Failure,
    MetadataValue,
    Output,
    asset,
)

from aq_assets.defs.ingest import checks
from aq_assets.defs.ingest.catalog import merge_catalog, sensors_by_id
from aq_assets.defs.ingest.readings import collect_readings, failure_summary
from aq_assets.defs.ingest.sources.base import ReadingsSource
from aq_assets.partitions import SENSOR, reading_partitions, split_reading_key
from aq_assets.warehouse import WAREHOUSE_KIND, WRITERS_POOL, Warehouse

# A backfill runs this many sensor-days per run: one run costs ~6-10 s of Dagster overhead on
# two cores, one sensor-day ~1 ms of work, so few large runs win.
MAX_PARTITIONS_PER_RUN = 2000


@asset(
    group_name="ingest",
    metadata={"schema": "ingest"},
    pool=WRITERS_POOL,
    kinds={WAREHOUSE_KIND},
)
def sensor_catalog(
    context: AssetExecutionContext, source: ReadingsSource, warehouse: Warehouse
) -> Output[pd.DataFrame]:
    """The sensors the source offers at the configured locations that measure the target
    parameter (AQ_PARAMETER), with their co-located sensors: location, coordinates, units,
    first and last reading. New sensors become `sensor` partitions of `raw_readings`."""
    previous = (
        warehouse.read("ingest", "sensor_catalog")
        if warehouse.table_exists("ingest", "sensor_catalog")
        else None
    )
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    catalog = merge_catalog(previous, source.list_sensors(), now)
    registered = set(context.instance.get_dynamic_partitions(SENSOR))
    new_sensors = [str(s) for s in catalog["sensor_id"] if str(s) not in registered]
    if new_sensors:
        context.instance.add_dynamic_partitions(SENSOR, new_sensors)
        context.log.info(
            f"Registered {len(new_sensors)} new sensor partition(s): {new_sensors[:20]}"
        )
    active = catalog[catalog["active"]]
    return Output(
        catalog,
        metadata={
            "dagster/row_count": len(catalog),
            "source": source.name,
            "active_sensors": len(active),
            "new_sensors": len(new_sensors),
            "locations": int(active["location_id"].nunique()),
            "target_sensors": int((active["parameter"] == source.parameter).sum()),
            "sensors": MetadataValue.md(
                active[["sensor_id", "location_id", "location_name", "parameter", "units"]]
                .head(50)
                .to_markdown(index=False)
            ),
        },
    )


@asset(
    group_name="ingest",
    partitions_def=reading_partitions,
    metadata={"schema": "ingest", "partition_expr": {"day": "datetime_utc", "sensor": "sensor_id"}},
    io_manager_key="readings_io_manager",
    check_specs=checks.CHECK_SPECS,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=MAX_PARTITIONS_PER_RUN),
    pool=WRITERS_POOL,
    kinds={WAREHOUSE_KIND},
)
def raw_readings(
    context: AssetExecutionContext,
    source: ReadingsSource,
    warehouse: Warehouse,
    sensor_catalog: pd.DataFrame,
) -> Iterator:
    """One sensor's readings for one UTC day, as the source gave them: UTC timestamp, value,
    units, source and time of ingestion. Re-materializing a partition replaces it. Data-quality
    checks (schema, range, duplicates, partition bounds, coverage, malformed rows) come with it."""
    keys = [split_reading_key(k) for k in context.partition_keys]
    sensors = sensors_by_id(sensor_catalog, sorted({sensor_id for _, sensor_id in keys}))
    sensor_days = [(sensors[sensor_id], day) for day, sensor_id in keys]
    step = max(1, len(sensor_days) // 10)

    def progress(done: int, total: int) -> None:
        if done % step == 0 or done == total:
            context.log.info(f"Fetched {done}/{total} sensor-days from {source.name}")

    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    collected = collect_readings(source, sensor_days, now, progress)
    if collected.failures:
        stored = _store_what_read_fine(context, warehouse, collected.readings, collected.failures)
        raise Failure(
            description=failure_summary(
                collected.failures, len(sensor_days), source.name, stored=len(stored)
            ),
            metadata={
                "failed_partitions": len(collected.failures),
                "stored_partitions": len(stored),
            },
        )
    readings = collected.readings
    times = readings["datetime_utc"]
    yield Output(
        readings,
        metadata={
            "dagster/row_count": len(readings),
            "partitions": len(sensor_days),
            "sensors": len(sensors),
            "source": source.name,
            "first_reading_utc": str(times.min()) if len(times) else "none",
            "last_reading_utc": str(times.max()) if len(times) else "none",
            "rejected_rows": len(collected.rejected),
        },
    )
    yield checks.schema_matches(readings)
    yield checks.values_in_plausible_range(readings)
    yield checks.no_duplicate_readings(readings)
    yield checks.timestamps_inside_partition(collected.outside_partition)
    yield checks.hourly_coverage(
        readings, [(s.sensor_id, pd.Timestamp(day)) for s, day in sensor_days]
    )
    yield checks.no_stuck_sensor(readings, source.parameter)
    yield checks.no_malformed_rows(collected.rejected)


def _store_what_read_fine(
    context: AssetExecutionContext,
    warehouse: Warehouse,
    readings: pd.DataFrame,
    failures: dict[str, str],
) -> list[str]:
    """In a run where some sensor-days failed, store the others and record each as
    materialized (the failed ones keep what they had and show failed), so a retry needs only
    the failed ones. Returns the keys stored."""
    good = [key for key in context.partition_keys if key not in failures]
    if not good:
        return []
    metadata = context.assets_def.metadata_by_key[context.asset_key]
    warehouse.replace_partitions(
        metadata["schema"],
        context.asset_key.path[-1],
        readings,
        reading_partitions,
        good,
        metadata["partition_expr"],
    )
    for key in good:
        context.log_event(
            AssetMaterialization(context.asset_key, partition=key, metadata={"partial_run": True})
        )
    return good
