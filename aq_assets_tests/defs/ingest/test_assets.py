"""sensor_catalog and raw_readings, materialized in-process against a real DuckDB file."""

import datetime as dt

import pandas as pd
import pytest
from dagster import Definitions, materialize

from aq_assets.cli import backfill
from aq_assets.defs.ingest import checks
from aq_assets.defs.ingest.assets import raw_readings, sensor_catalog
from aq_assets.defs.ingest.catalog import merge_catalog
from aq_assets.defs.ingest.jobs import ingest_job
from aq_assets_tests.conftest import StubSource, check_results, resources_for

DAY = "2025-03-02"


def discover(instance, warehouse, source=None):
    result = materialize(
        [sensor_catalog],
        instance=instance,
        resources=resources_for(source or StubSource(), warehouse),
    )
    assert result.success
    return result


def ingest(instance, warehouse, key, source=None, raise_on_error=True):
    return materialize(
        [sensor_catalog, raw_readings],
        selection=[raw_readings],
        partition_key=key,
        instance=instance,
        resources=resources_for(source or StubSource(), warehouse),
        raise_on_error=raise_on_error,
    )


def stored_rows(warehouse) -> pd.DataFrame:
    return warehouse.query("SELECT * FROM ingest.raw_readings ORDER BY sensor_id, datetime_utc")


def test_catalog_registers_each_sensor_once_as_a_partition(instance, warehouse):
    discover(instance, warehouse)
    discover(instance, warehouse)
    assert instance.get_dynamic_partitions("sensor") == ["1002", "1010", "2002"]
    catalog = warehouse.query("SELECT * FROM ingest.sensor_catalog")
    assert sorted(catalog.sensor_id) == [1002, 1010, 2002] and catalog.active.all()


def test_catalog_keeps_sensors_the_source_stopped_offering():
    offered = StubSource().list_sensors()
    first = merge_catalog(None, offered, pd.Timestamp("2025-01-01"))
    later = merge_catalog(first, offered[offered.sensor_id != 1010], pd.Timestamp("2025-02-01"))
    assert dict(zip(later.sensor_id, later.active, strict=True)) == {
        1002: True,
        1010: False,
        2002: True,
    }
    assert set(later.discovered_at) == {pd.Timestamp("2025-01-01")}


def test_a_partition_is_stored_in_utc_and_replaced_on_rerun(instance, warehouse):
    discover(instance, warehouse)
    for value in (10.0, 12.0, 12.0):
        assert ingest(instance, warehouse, f"{DAY}|1002", StubSource(value=value)).success
    assert ingest(instance, warehouse, f"{DAY}|2002").success

    rows = stored_rows(warehouse)
    first = rows[rows.sensor_id == 1002]
    assert len(first) == 24 and set(first.value) == {12.0, 12.5}
    assert first.datetime_utc.min() == pd.Timestamp(
        DAY
    ) and first.datetime_utc.max() == pd.Timestamp(f"{DAY} 23:00")
    assert len(rows) == 48
    assert set(rows.columns) >= {
        "sensor_id",
        "location_id",
        "parameter",
        "units",
        "datetime_utc",
        "value",
        "source",
        "ingested_at",
    }


def test_a_failed_fetch_keeps_the_stored_partition(instance, warehouse):
    discover(instance, warehouse)
    assert ingest(instance, warehouse, f"{DAY}|2002").success

    result = ingest(
        instance,
        warehouse,
        f"{DAY}|2002",
        StubSource(mode="broken", value=99.0),
        raise_on_error=False,
    )

    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "sensor 2002 is unreachable" in str(failure.event_specific_data.error)
    assert set(stored_rows(warehouse).value) == {10.0, 10.5}


def test_checks_pass_on_good_data(instance, warehouse):
    discover(instance, warehouse)
    results = check_results(ingest(instance, warehouse, f"{DAY}|1002"))
    assert {name: r.passed for name, r in results.items()} == {
        spec.name: True for spec in checks.CHECK_SPECS
    }
    assert results["hourly_coverage"].metadata["min_coverage"].value == 1.0


def test_checks_fail_on_messy_data_and_stray_rows_are_not_stored(instance, warehouse):
    discover(instance, warehouse)
    result = ingest(instance, warehouse, f"{DAY}|1002", StubSource(mode="messy"))
    results = check_results(result)

    assert not results["values_in_plausible_range"].passed
    assert results["values_in_plausible_range"].metadata["implausible_values"].value == 1
    assert not results["no_duplicate_readings"].passed
    assert results["no_duplicate_readings"].metadata["duplicate_rows"].value == 1
    assert not results["timestamps_inside_partition"].passed
    assert results["timestamps_inside_partition"].metadata["rows_outside_partition_day"].value == 1
    assert not results["no_malformed_rows"].passed
    assert "value 'n/a'" in results["no_malformed_rows"].metadata["examples"].value
    assert results["schema_matches"].passed
    rows = stored_rows(warehouse)
    assert len(rows) == 25 and rows.datetime_utc.min() == pd.Timestamp(DAY)


def test_a_stuck_sensor_is_flagged_and_its_hours_counted_as_quarantined(instance, warehouse):
    discover(instance, warehouse)
    result = ingest(instance, warehouse, f"{DAY}|1002", StubSource(mode="stuck"))

    stuck = check_results(result)["no_stuck_sensor"]
    assert not stuck.passed and stuck.severity.value == "WARN"
    assert stuck.metadata["stuck_sensor_days"].value == 1
    assert stuck.metadata["quarantined_hours"].value == 24
    assert stuck.metadata["stuck"].value == f"{DAY}|1002: 24 h"
    assert check_results(ingest(instance, warehouse, f"{DAY}|1002"))["no_stuck_sensor"].passed


def readings_frame(**overrides) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "sensor_id": 1002,
            "location_id": 1,
            "parameter": "pm25",
            "units": "µg/m³",
            "datetime_utc": pd.date_range(DAY, periods=24, freq="h"),
            "value": 8.0,
            "source": "stub",
            "ingested_at": pd.Timestamp("2025-03-03"),
        }
    )
    return frame.assign(**overrides)


@pytest.mark.parametrize(
    ("value", "passed", "negatives"),
    [(8.0, True, 0), (-3.0, True, 24), (-999.0, False, 0), (1500.0, False, 0)],
)
def test_plausible_range_flags_small_negatives_and_fails_sentinels(value, passed, negatives):
    result = checks.values_in_plausible_range(readings_frame(value=value))
    assert result.passed is passed
    assert result.metadata["small_negatives"].value == negatives


def test_schema_check_fails_on_a_missing_column_and_a_text_timestamp():
    frame = readings_frame().drop(columns=["units"])
    frame["datetime_utc"] = frame["datetime_utc"].astype(str)
    result = checks.schema_matches(frame)
    assert not result.passed
    assert result.metadata["missing_columns"].value == "units"
    assert "datetime_utc" in result.metadata["wrong_types"].value


def test_coverage_counts_sensor_days_with_no_rows_at_all():
    frame = readings_frame().iloc[:20]
    days = [(1002, pd.Timestamp(DAY)), (2002, pd.Timestamp(DAY))]
    result = checks.hourly_coverage(frame, days)
    assert not result.passed
    assert result.metadata["sensor_days_below_threshold"].value == 1
    assert result.metadata["min_coverage"].value == 0.0
    assert result.metadata["threshold"].value == checks.MIN_COVERAGE


def test_a_rare_outage_is_listed_but_warns_only_when_gaps_are_common():
    frame = readings_frame()
    day = pd.Timestamp(DAY)
    sensors = sorted(set(frame.sensor_id))
    full = [(sensor, day) for sensor in sensors]
    outage = (999, day)  # no rows at all

    repeats = -(-20 // len(full))  # at least 20 full sensor-days
    rare = checks.hourly_coverage(frame, [*full * repeats, outage])  # 1 in 21 or more: < 5%
    common = checks.hourly_coverage(frame, [*full, outage])

    assert rare.passed and "999: 0%" in rare.metadata["lowest"].value
    assert not common.passed and common.metadata["share_below_threshold"].value > 0.05


def test_a_partly_failed_backfill_stores_the_rest_and_ends_with_the_cause(instance, warehouse):
    """The sensor-days that read fine are stored and shown materialized; the failed ones keep
    what they had and show failed. `aq backfill`'s last line is the source's cause and fix,
    not "Execution of step ... failed", and sensor-days failing for one reason are one line."""

    def definitions(source):
        return Definitions(
            assets=[sensor_catalog, raw_readings],
            jobs=[ingest_job],
            resources=resources_for(source, warehouse),
        )

    discover(instance, warehouse)
    first = dt.date.fromisoformat(DAY)
    last = first + dt.timedelta(days=2)
    with pytest.raises(SystemExit) as exit_:
        backfill(instance, definitions(StubSource(mode="broken")), first, last)

    message = str(exit_.value.code)
    assert "3 of 9 sensor-day(s) could not be fetched" in message
    assert "the other 6 were stored" in message
    assert message.splitlines()[-1] == (
        f"- 3, {first}|2002 .. {last}|2002: sensor 2002 is unreachable"
    )
    stored = stored_rows(warehouse)
    assert set(stored.sensor_id) == {1002, 1010} and len(stored) == 6 * 24
    materialized = instance.get_materialized_partitions(raw_readings.key)
    assert len(materialized) == 6 and not any(key.endswith("|2002") for key in materialized)

    # Once the source answers again, `aq backfill --missing` runs only what failed.
    runs = backfill(instance, definitions(StubSource()), first, last, only_missing=True)
    assert (
        len(runs) == 1
        and instance.get_run_by_id(runs[0]).tags["dagster/asset_partition_range_start"]
        == f"{first}|2002"
    )
    assert len(instance.get_materialized_partitions(raw_readings.key)) == 9
    assert len(stored_rows(warehouse)) == 9 * 24
