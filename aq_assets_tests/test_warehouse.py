"""The warehouse: dagster-duckdb's resource and pandas IO manager where they serve, aq's partition
writer where they cannot; idempotent and atomic either way, on DuckDB and on PostgreSQL (the
local server, see postgres.py): the tests of the seam run on both. The `upstream` tests show
what the stock parts do where aq differs: when one of them fails, Dagster has fixed it and aq's
replacement can go."""

import threading
import time
from collections.abc import Iterator

import duckdb
import numpy as np
import pandas as pd
import psycopg2
import pytest
from dagster import (
    AssetIn,
    DagsterInstance,
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MultiPartitionsDefinition,
    StaticPartitionsDefinition,
    asset,
    materialize,
)
from dagster_duckdb import DuckDBResource
from dagster_duckdb_pandas import DuckDBPandasIOManager

from aq_assets.warehouse import (
    DuckDBWarehouse,
    PostgresWarehouse,
    Warehouse,
    WarehouseError,
    WarehouseIOManager,
    check_warehouse_url,
    partition_rows,
    warehouse_resources,
)
from aq_assets_tests.postgres import scratch_database

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


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """One database for the module's PostgreSQL tests; each drops its schemas afterwards."""
    with scratch_database("warehouse") as url:
        yield url


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request, tmp_path) -> Iterator[Warehouse]:
    if request.param == "duckdb":
        yield DuckDBWarehouse(aq_home=str(tmp_path / "aq"))
        return
    url = request.getfixturevalue("postgres_url")
    yield PostgresWarehouse(aq_home=str(tmp_path / "aq"), url=url)
    with psycopg2.connect(url) as con, con.cursor() as cur:
        cur.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
            "AND nspname NOT IN ('public', 'information_schema')"
        )
        for (schema,) in cur.fetchall():
            cur.execute(f'DROP SCHEMA "{schema}" CASCADE')
    con.close()


def resources_of(warehouse: Warehouse) -> dict:
    """The resources the code location builds for this warehouse."""
    url = warehouse.url if isinstance(warehouse, PostgresWarehouse) else ""
    return warehouse_resources(warehouse.aq_home, url)


# What each engine raises for a value its column cannot hold.
CONVERSION_ERRORS = (duckdb.ConversionException, psycopg2.DataError)


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

    with pytest.raises(CONVERSION_ERRORS):
        write(warehouse, bad, ["2025-01-02|1"])

    rows = stored(warehouse)
    assert len(rows) == 24 and set(rows.value) == {1.0}


def test_rows_outside_the_partitions_written_are_refused(warehouse):
    write(warehouse, day_rows("2025-01-02", 1), ["2025-01-02|1"])
    stray = pd.concat([day_rows("2025-01-02", 1, value=3.0), day_rows("2025-01-04", 1, hours=2)])

    with pytest.raises(WarehouseError, match=r"2 row.* fall outside the 1 partition"):
        write(warehouse, stray, ["2025-01-02|1"])

    assert set(stored(warehouse).value) == {1.0}


def test_a_new_output_column_is_added_and_stored_partitions_keep_their_rows(warehouse):
    """An asset that gains a column (predictions gained quantiles) keeps what it stored."""
    write(warehouse, day_rows("2025-01-02", 1), ["2025-01-02|1"])

    write(warehouse, day_rows("2025-01-03", 1).assign(extra=1.5), ["2025-01-03|1"])

    table = stored(warehouse)
    assert len(table) == 48
    by_day = table.groupby(table["datetime_utc"].dt.date.astype(str))["extra"]
    assert by_day.apply(lambda e: e.isna().all()).to_dict() == {
        "2025-01-02": True,
        "2025-01-03": False,
    }
    assert (table.loc[table["extra"].notna(), "extra"] == 1.5).all()


def test_reading_a_missing_table_names_it(warehouse):
    warehouse.replace("ingest", "other", pd.DataFrame({"a": [1]}))
    with pytest.raises(WarehouseError, match=r"ingest\.readings does not exist"):
        warehouse.read("ingest", "readings")


def test_the_io_manager_round_trips_a_dynamic_multi_partitioned_asset(warehouse):
    @asset(
        partitions_def=READINGS,
        metadata={"schema": "ingest", "partition_expr": EXPR},
        io_manager_key="readings_io_manager",
    )
    def readings(context) -> pd.DataFrame:
        frames = []
        for key in context.partition_keys:
            day, sensor = key.split("|")
            frames.append(day_rows(day, int(sensor), value=float(sensor)))
        return pd.concat(frames)

    @asset(ins={"readings": AssetIn()}, metadata={"schema": "training"})
    def summary(readings: pd.DataFrame) -> pd.DataFrame:
        return readings.groupby("sensor_id", as_index=False)["value"].count()

    resources = resources_of(warehouse)
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
    assert warehouse.query("SELECT count(*) AS n FROM training.summary").n[0] == 2


def test_the_duckdb_warehouse_is_a_duckdb_resource_and_refuses_a_foreign_file_at_once(tmp_path):
    warehouse = DuckDBWarehouse(aq_home=str(tmp_path / "aq"))
    assert isinstance(warehouse, DuckDBResource)
    warehouse.replace("ingest", "other", pd.DataFrame({"a": [1]}))
    with warehouse.get_connection() as con:
        assert con.execute("SELECT 41 + 1").fetchone() == (42,)
    with (
        warehouse.get_connection(read_only=True) as con,
        pytest.raises(duckdb.Error, match="read-only"),
    ):
        con.execute("CREATE TABLE t (a INT)")

    warehouse.path.write_bytes(b"not a database, but long enough")
    # upstream's backoff alone would retry this open for ~100 s
    with (
        pytest.raises(WarehouseError, match=r"is not a DuckDB database.*Move it away"),
        warehouse.get_connection(),
    ):
        pass


def opened(database: str) -> duckdb.DuckDBPyConnection:
    """A connection as dagster-duckdb opens one: after a failed write upstream leaves its
    connection open, and DuckDB refuses a second one to the file with other settings."""
    return duckdb.connect(database, config={"custom_user_agent": "dagster"})


DAILY = DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-01-10")


def daily_asset(frame_of: dict[str, pd.DataFrame]):
    """A day-partitioned asset whose output per day the test sets in `frame_of`."""

    @asset(partitions_def=DAILY, metadata={"schema": "monitoring", "partition_expr": "day"})
    def scores(context) -> pd.DataFrame:
        return frame_of[context.partition_key]

    return scores


def day_scores(day: str, score: float) -> pd.DataFrame:
    return pd.DataFrame({"day": [pd.Timestamp(day)] * 3, "score": [score] * 3})


@pytest.mark.parametrize("io_manager", ["aq", "upstream"])
def test_a_failing_daily_write_keeps_the_old_rows_only_in_a_transaction(tmp_path, io_manager):
    """Upstream deletes the day's rows and then inserts, as two commits: a failed insert
    loses the day. aq's client wraps both in one transaction."""
    database = str(tmp_path / "w.duckdb")
    manager = (
        WarehouseIOManager(database=database)
        if io_manager == "aq"
        else DuckDBPandasIOManager(database=database)
    )
    bad = day_scores("2025-01-02", 1.0).astype({"score": "object"})
    bad.loc[1, "score"] = "not a number"
    frames = {"2025-01-02": day_scores("2025-01-02", 1.0)}
    scores = daily_asset(frames)
    resources = {"io_manager": manager}
    assert materialize([scores], partition_key="2025-01-02", resources=resources).success

    frames["2025-01-02"] = bad
    assert not materialize(
        [scores], partition_key="2025-01-02", resources=resources, raise_on_error=False
    ).success

    with opened(database) as con:
        kept = con.execute("SELECT count(*) FROM monitoring.scores").fetchone()
    assert kept == ((3,) if io_manager == "aq" else (0,))


def test_daily_writes_replace_their_day_and_an_empty_day_still_makes_the_table(warehouse):
    frames = {
        "2025-01-02": day_scores("2025-01-02", 1.0).iloc[0:0],
        "2025-01-03": day_scores("2025-01-03", 2.0),
    }
    scores = daily_asset(frames)
    resources = {"io_manager": resources_of(warehouse)["io_manager"]}

    assert materialize([scores], partition_key="2025-01-02", resources=resources).success
    # upstream creates no table here
    assert warehouse.query("SELECT count(*) AS n FROM monitoring.scores").n[0] == 0
    for _ in range(2):
        assert materialize([scores], partition_key="2025-01-03", resources=resources).success
    frames["2025-01-02"] = day_scores("2025-01-02", 5.0)[["score", "day"]]  # by name
    assert materialize([scores], partition_key="2025-01-02", resources=resources).success

    rows = warehouse.query("SELECT day, score FROM monitoring.scores ORDER BY day")
    assert rows.groupby("day").score.agg(list).to_dict() == {
        pd.Timestamp("2025-01-02"): [5.0] * 3,
        pd.Timestamp("2025-01-03"): [2.0] * 3,
    }


@pytest.mark.parametrize("io_manager", ["aq", "upstream"])
def test_a_whole_table_output_may_change_its_columns(tmp_path, io_manager):
    """The training set's columns follow the sensors and parameters stored. Upstream keeps the
    table and deletes its rows, so a new column cannot be written."""
    database = str(tmp_path / "w.duckdb")
    manager = (
        WarehouseIOManager(database=database)
        if io_manager == "aq"
        else DuckDBPandasIOManager(database=database)
    )
    columns = ["a"]

    @asset(metadata={"schema": "training"})
    def table() -> pd.DataFrame:
        return pd.DataFrame({name: [1.0, 2.0] for name in columns})

    assert materialize([table], resources={"io_manager": manager}).success
    columns.append("b")
    result = materialize([table], resources={"io_manager": manager}, raise_on_error=False)

    assert result.success == (io_manager == "aq")
    if result.success:
        with opened(database) as con:
            stored = con.execute("SELECT * FROM training.table").df()
        assert list(stored.columns) == ["a", "b"] and len(stored) == 2


def test_upstream_cannot_write_a_dynamic_sensor_dimension(tmp_path):
    @asset(partitions_def=READINGS, metadata={"schema": "ingest", "partition_expr": EXPR})
    def readings(context) -> pd.DataFrame:
        day, sensor = context.partition_key.split("|")
        return day_rows(day, int(sensor))

    instance = DagsterInstance.ephemeral()
    instance.add_dynamic_partitions("sensor", ["11"])
    result = materialize(
        [readings],
        partition_key="2025-01-02|11",
        instance=instance,
        resources={"io_manager": DuckDBPandasIOManager(database=str(tmp_path / "w.duckdb"))},
        raise_on_error=False,
    )

    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    assert "instance is not available to load partitions" in str(failure.event_specific_data)


def test_upstream_cannot_write_several_days_of_several_sensors_in_one_run(tmp_path):
    """An `aq backfill` run writes a rectangle of days x sensors: more than one key range."""
    sensors = StaticPartitionsDefinition(["11", "12"])
    rectangle = MultiPartitionsDefinition({"day": DAYS, "sensor": sensors})

    def readings_on(io_manager_key: str):
        @asset(
            name=f"readings_{io_manager_key}",
            partitions_def=rectangle,
            metadata={"schema": "ingest", "partition_expr": EXPR},
            io_manager_key=io_manager_key,
        )
        def readings(context) -> pd.DataFrame:
            return pd.concat(
                day_rows(key.keys_by_dimension["day"], int(key.keys_by_dimension["sensor"]))
                for key in context.partition_keys
            )

        return readings

    warehouse = DuckDBWarehouse(aq_home=str(tmp_path))
    resources = {
        **warehouse_resources(warehouse.aq_home),
        "upstream": DuckDBPandasIOManager(database=str(warehouse.path)),
    }
    tags = {
        "dagster/asset_partition_range_start": "2025-01-02|11",
        "dagster/asset_partition_range_end": "2025-01-03|12",
    }
    for key, succeeds in [("upstream", False), ("readings_io_manager", True)]:
        result = materialize(
            [readings_on(key)], resources=resources, tags=tags, raise_on_error=False
        )
        assert result.success == succeeds
    assert len(warehouse.read("ingest", "readings_readings_io_manager")) == 4 * 24


def test_the_shared_reads_take_the_target_locations_and_their_windows(warehouse):
    """readings_window is (newest target reading before `end` - hours, that reading]; every
    read keeps all parameters of locations that measure the target, and no other location."""
    start = pd.Timestamp("2025-01-01 00:00")
    times = pd.date_range(start, periods=10, freq="h")
    rows = (
        [(1, 10, "pm25", "µg/m³", t, float(i)) for i, t in enumerate(times)]
        + [(2, 10, "o3", "ppm", t, 0.01) for t in times]
        + [(3, 20, "o3", "ppm", t, 0.02) for t in times]
    )
    frame = pd.DataFrame(
        rows, columns=["sensor_id", "location_id", "parameter", "units", "datetime_utc", "value"]
    )
    warehouse.replace("ingest", "raw_readings", frame)

    end = start + pd.Timedelta(hours=8)  # the newest pm25 reading before it is at 07:00
    window = warehouse.readings_window("pm25", 3, end)

    assert warehouse.latest_reading("pm25") == times[-1]
    assert warehouse.latest_reading("pm25", before=end) == times[7]
    assert warehouse.latest_reading("no2") is None
    assert sorted(window["datetime_utc"].unique()) == list(times[5:8])  # 05:00, 06:00, 07:00
    assert set(window["sensor_id"]) == {1, 2}  # location 20 measures no pm25
    between = warehouse.readings_between("pm25", times[2], times[4])
    assert sorted(between["datetime_utc"].unique()) == list(times[2:4])
    assert warehouse.readings_window("no2", 3, end).empty
    assert warehouse.accuracy_of(1, start, end).empty  # no table yet


def test_the_shared_reads_leave_out_sensors_the_catalog_no_longer_offers(tmp_path, postgres_url):
    """A location taken out of AQ_LOCATIONS stays stored, but its sensors are inactive in the
    catalog: training, predictions and the snapshot (all through readings_between) follow
    the sensors in scope, on either warehouse. Without a catalog every sensor is read."""
    times = pd.date_range("2025-01-01", periods=4, freq="h")
    rows = [(1, 10, "pm25", t) for t in times] + [(2, 10, "o3", t) for t in times]
    rows += [(3, 20, "pm25", t) for t in times] + [(4, 20, "o3", t) for t in times]
    readings = pd.DataFrame(rows, columns=["sensor_id", "location_id", "parameter", "datetime_utc"])
    readings = readings.assign(units="µg/m³", value=5.0)
    catalog = pd.DataFrame({"sensor_id": [1, 2, 3, 4], "active": [True, True, False, False]})
    duck = DuckDBWarehouse(aq_home=str(tmp_path))
    postgres = PostgresWarehouse(aq_home=str(tmp_path), url=postgres_url)
    try:
        for warehouse in (duck, postgres):
            warehouse.replace("ingest", "raw_readings", readings)
            everything = warehouse.readings_between("pm25", times[0], times[-1] + times.freq)
            warehouse.replace("ingest", "sensor_catalog", catalog)
            in_scope = warehouse.readings_between("pm25", times[0], times[-1] + times.freq)

            assert set(everything["sensor_id"]) == {1, 2, 3, 4}, warehouse.location
            assert set(in_scope["sensor_id"]) == {1, 2}, warehouse.location
            assert len(warehouse.read("ingest", "raw_readings")) == len(readings)  # kept
    finally:
        with psycopg2.connect(postgres_url) as con, con.cursor() as cur:
            cur.execute("DROP SCHEMA IF EXISTS ingest CASCADE")
        con.close()


def test_both_backends_read_back_what_duckdb_does(tmp_path, postgres_url):
    """The stages read the same frames, dtypes included, whichever warehouse holds them."""
    frame = pd.DataFrame(
        {
            "sensor_id": [1, 2, 3],
            "datetime_utc": pd.to_datetime(["2025-01-02 00:00", "2025-01-02 01:00", None]),
            "value": [1.5, None, 2.0],
            "share": np.array([0.1, np.nan, 3.25], dtype=np.float32),
            "units": ["µg/m³", 'say "hi", twice\nplease', None],
            "flag": [True, False, True],
            "count": pd.array([1, None, 3], dtype="Int64"),
        }
    )
    duck = DuckDBWarehouse(aq_home=str(tmp_path))
    postgres = PostgresWarehouse(aq_home=str(tmp_path), url=postgres_url)
    try:
        read = {}
        for warehouse in (duck, postgres):
            warehouse.replace("training", "frame", frame)
            read[warehouse.location] = warehouse.read("training", "frame")
            read[warehouse.location + " empty"] = warehouse.query(
                "SELECT * FROM training.frame WHERE sensor_id > ?", [9]
            )
        pd.testing.assert_frame_equal(read[postgres.location], read[duck.location])
        assert read[duck.location]["share"].dtype == np.float32  # the training set's floats
        pd.testing.assert_frame_equal(
            read[postgres.location + " empty"], read[duck.location + " empty"]
        )
    finally:
        with psycopg2.connect(postgres_url) as con, con.cursor() as cur:
            cur.execute("DROP SCHEMA IF EXISTS training CASCADE")
        con.close()


def test_concurrent_replaces_of_one_partition_leave_one_writers_rows(tmp_path, postgres_url):
    """Another writer is mid-replace of a partition (its lock held, its rows not committed):
    a second replace of it waits, then deletes those rows. Without the lock its DELETE would
    not see them and both writers' rows would stay."""
    warehouse = PostgresWarehouse(aq_home=str(tmp_path), url=postgres_url)
    write(warehouse, day_rows("2025-01-02", 1), ["2025-01-02|1"])
    other = psycopg2.connect(postgres_url)
    try:
        with warehouse._session(write=True) as session:  # the other writer, as the seam locks
            session.lock("table ingest.readings")
            session.execute(
                "INSERT INTO ingest.readings SELECT sensor_id, datetime_utc, 3.0 "
                "FROM ingest.readings"
            )
            writer = threading.Thread(
                target=write,
                args=(warehouse, day_rows("2025-01-02", 1, value=7.0), ["2025-01-02|1"]),
            )
            writer.start()
            waiting_for_lock(other)
        writer.join(timeout=60)
        assert not writer.is_alive()
        rows = stored(warehouse)
        assert len(rows) == 24 and set(rows.value) == {7.0}
    finally:
        other.close()
        with psycopg2.connect(postgres_url) as con, con.cursor() as cur:
            cur.execute("DROP SCHEMA IF EXISTS ingest CASCADE")
        con.close()


def waiting_for_lock(con, timeout_s: float = 30.0) -> None:
    """Until another session of the database waits for an advisory lock."""
    deadline = time.monotonic() + timeout_s
    with con.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
            (waiting,) = cur.fetchone()
            con.rollback()  # a fresh snapshot each poll
            if waiting:
                return
            time.sleep(0.01)
    pytest.fail(f"No session waited for the warehouse lock within {timeout_s:.0f} s.")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("mysql://aq:secret@db/aq", r"AQ_WAREHOUSE_URL=mysql://aq:\*\*\*@db/aq is not usable"),
        ("postgresql://aq@db", r"is not usable: set AQ_WAREHOUSE_URL=postgresql://USER@HOST"),
    ],
    ids=["not-postgres", "no-database"],
)
def test_a_warehouse_url_aq_cannot_use_says_what_to_set(url, says):
    with pytest.raises(WarehouseError, match=says) as error:
        check_warehouse_url(url)
    assert "secret" not in str(error.value)
    with pytest.raises(WarehouseError, match=says):
        warehouse_resources("/tmp/unused", url)


def test_an_unreachable_postgresql_warehouse_names_itself_and_the_settings(tmp_path, postgres_url):
    missing = postgres_url.rsplit("/", 1)[0] + "/no_such_database"
    warehouse = PostgresWarehouse(aq_home=str(tmp_path), url=missing, password="hunter2")
    with pytest.raises(WarehouseError) as error:
        warehouse.table_exists("ingest", "raw_readings")
    message = str(error.value)
    assert "Cannot reach the PostgreSQL warehouse" in message and "no_such_database" in message
    assert "AQ_WAREHOUSE_URL" in message and "hunter2" not in message
