"""The partition writer: idempotent, atomic, and usable with a dynamic partition dimension."""

import duckdb
import pandas as pd
import pytest
from dagster import (
    AssetIn,
    DagsterInstance,
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MultiPartitionsDefinition,
    asset,
    materialize,
)

from aq_assets.warehouse import Warehouse, WarehouseError, WarehouseIOManager, partition_rows

DAYS = DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-01-10", timezone="UTC")
SENSORS = DynamicPartitionsDefinition(name="sensor")
READINGS = MultiPartitionsDefinition({"day": DAYS, "sensor": SENSORS})
EXPR = {"day": "datetime_utc", "sensor": "sensor_id"}


def day_rows(day: str, sensor_id: int, value: float = 1.0, hours: int = 24) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "sensor_id": sensor_id,
            "datetime_utc": pd.date_range(day, periods=hours, freq="h"),
            "value": value,
        }
    )


def write(warehouse: Warehouse, frame: pd.DataFrame, keys: list[str]) -> None:
    rows, mapping = partition_rows(READINGS, keys, EXPR)
    warehouse.replace("ingest", "readings", frame, rows, mapping)


def stored(warehouse: Warehouse) -> pd.DataFrame:
    return warehouse.read("ingest", "readings").sort_values(["sensor_id", "datetime_utc"])


@pytest.fixture
def warehouse(tmp_path) -> Warehouse:
    return Warehouse(aq_home=str(tmp_path / "aq"))


def test_rewriting_a_partition_replaces_it_and_leaves_the_others(warehouse):
    write(
        warehouse,
        pd.concat([day_rows("2025-01-02", 1), day_rows("2025-01-02", 2)]),
        ["2025-01-02|1", "2025-01-02|2"],
    )
    write(warehouse, day_rows("2025-01-03", 1), ["2025-01-03|1"])
    for _ in range(3):
        write(warehouse, day_rows("2025-01-02", 1, value=7.0, hours=20), ["2025-01-02|1"])

    rows = stored(warehouse)
    assert len(rows) == 20 + 24 + 24
    rewritten = rows[(rows.sensor_id == 1) & (rows.datetime_utc < "2025-01-03")]
    assert len(rewritten) == 20 and set(rewritten.value) == {7.0}
    assert set(rows[rows.sensor_id == 2].value) == {1.0}


def test_an_empty_partition_write_clears_only_that_partition(warehouse):
    write(
        warehouse,
        pd.concat([day_rows("2025-01-02", 1), day_rows("2025-01-03", 1)]),
        ["2025-01-02|1", "2025-01-03|1"],
    )
    write(warehouse, day_rows("2025-01-02", 1).iloc[0:0], ["2025-01-02|1"])
    assert stored(warehouse).datetime_utc.min() == pd.Timestamp("2025-01-03")


def test_a_failing_insert_leaves_the_old_rows(warehouse):
    write(warehouse, day_rows("2025-01-02", 1), ["2025-01-02|1"])
    bad = day_rows("2025-01-02", 1).astype({"value": "object"})
    bad.loc[5, "value"] = "not a number"  # the DELETE runs, then the INSERT fails

    with pytest.raises(duckdb.ConversionException):
        write(warehouse, bad, ["2025-01-02|1"])

    rows = stored(warehouse)
    assert len(rows) == 24 and set(rows.value) == {1.0}


def test_rows_outside_the_partitions_written_are_refused(warehouse):
    write(warehouse, day_rows("2025-01-02", 1), ["2025-01-02|1"])
    stray = pd.concat([day_rows("2025-01-02", 1, value=3.0), day_rows("2025-01-04", 1, hours=2)])

    with pytest.raises(WarehouseError, match=r"2 row.* fall outside the 1 partition"):
        write(warehouse, stray, ["2025-01-02|1"])

    assert set(stored(warehouse).value) == {1.0}


def test_a_new_column_is_a_clear_error(warehouse):
    write(warehouse, day_rows("2025-01-02", 1), ["2025-01-02|1"])
    with pytest.raises(WarehouseError, match=r"no column\(s\) \['extra'\]"):
        write(warehouse, day_rows("2025-01-02", 1).assign(extra=1), ["2025-01-02|1"])
    assert len(stored(warehouse)) == 24


def test_reading_a_missing_table_names_it(warehouse):
    warehouse.replace("ingest", "other", pd.DataFrame({"a": [1]}))
    with pytest.raises(WarehouseError, match=r"ingest\.readings does not exist"):
        warehouse.read("ingest", "readings")


def test_the_io_manager_round_trips_a_dynamic_multi_partitioned_asset(tmp_path):
    @asset(partitions_def=READINGS, metadata={"schema": "ingest", "partition_expr": EXPR})
    def readings(context) -> pd.DataFrame:
        frames = []
        for key in context.partition_keys:
            day, sensor = key.split("|")
            frames.append(day_rows(day, int(sensor), value=float(sensor)))
        return pd.concat(frames)

    @asset(ins={"readings": AssetIn()}, metadata={"schema": "training"})
    def summary(readings: pd.DataFrame) -> pd.DataFrame:
        return readings.groupby("sensor_id", as_index=False)["value"].count()

    resources = {"io_manager": WarehouseIOManager(warehouse=Warehouse(aq_home=str(tmp_path)))}
    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("sensor", ["11", "12"])
    for _ in range(2):
        for key in ["2025-01-02|11", "2025-01-02|12", "2025-01-03|11"]:
            assert materialize(
                [readings], partition_key=key, instance=instance, resources=resources
            ).success
    result = materialize(
        [readings, summary], selection=[summary], instance=instance, resources=resources
    )

    assert result.success
    counts = dict(result.output_for_node("summary").itertuples(index=False))
    assert counts == {11: 48, 12: 24}
    assert (
        Warehouse(aq_home=str(tmp_path)).query("SELECT count(*) AS n FROM training.summary").n[0]
        == 2
    )
