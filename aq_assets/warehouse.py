"""The DuckDB warehouse: one file under `AQ_HOME`, written one partition set at a time.

`Warehouse` is dagster-duckdb's `DuckDBResource` (its connection config and its backoff while
another process holds the file's lock), with read-only connections and table helpers.
`WarehouseIOManager` is dagster-duckdb-pandas' `DuckDBPandasIOManager` for the unpartitioned
and day-partitioned assets, with the slice's delete and the insert in ONE transaction, columns
matched by name and whole-table outputs replaced with their new columns.
`ReadingsIOManager` stores `raw_readings` (day x dynamic sensor), which the stock manager
cannot: in Dagster 1.13 it lists a dynamic dimension's keys without the instance, and a run
over several days of several sensors is more than the one key range its table slice holds
(aq_assets_tests/test_warehouse.py shows both failures).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from dagster import (
    ConfigurableIOManager,
    EnvVar,
    InputContext,
    MetadataValue,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    OutputContext,
    PartitionsDefinition,
    TableColumn,
    TableSchema,
    TimeWindowPartitionsDefinition,
)
from dagster._core.storage.db_io_manager import DbIOManager, DbTypeHandler, TableSlice
from dagster_duckdb import DuckDBResource
from dagster_duckdb.io_manager import DuckDbClient
from dagster_duckdb_pandas import DuckDBPandasIOManager, DuckDBPandasTypeHandler
from pydantic import Field

WAREHOUSE_FILE = "warehouse.duckdb"  # never named after a schema: DuckDB would find it ambiguous
_DUCKDB_MAGIC = (8, b"DUCK")  # where every DuckDB file says what it is

_DUCKDB_TYPES = {"datetime64": "TIMESTAMP", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN"}


_READING_COLUMNS = "sensor_id, location_id, parameter, units, datetime_utc, value"


class WarehouseError(RuntimeError):
    """A write or read the warehouse refused; the message says which table and why."""


class Warehouse(DuckDBResource):
    """The DuckDB file `database` (default `warehouse.duckdb`) under `aq_home` (`AQ_HOME`)."""

    aq_home: str = ".aq"
    database: str = Field(default=WAREHOUSE_FILE, description="The DuckDB file, under aq_home.")

    @property
    def path(self) -> Path:
        return Path(self.aq_home).expanduser().resolve() / self.database

    @contextmanager
    def get_connection(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """DuckDBResource's connection to the file under `aq_home` (its `connection_config`,
        its backoff while another process holds the lock), closed even when the block raises."""
        if read_only and not self.path.exists():
            raise WarehouseError(
                f"No warehouse at {self.path}: materialize `sensor_catalog` and `raw_readings` "
                "first, or point AQ_HOME at an existing one."
            )
        _prepare(self.path)
        config = dict(self.connection_config)
        if read_only:
            config["access_mode"] = "READ_ONLY"
        with DuckDBResource(
            database=str(self.path), connection_config=config
        ).get_connection() as con:
            try:
                yield con
            finally:
                con.close()  # upstream closes only after a block that did not raise

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Rows of a read-only query, as a DataFrame."""
        with self.get_connection(read_only=True) as con:
            return con.execute(sql, params or []).df()

    # -- the reads the stages share ------------------------------------------------------

    def readings_between(
        self, parameter: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        """Raw readings of every parameter, at locations that measure `parameter`, in
        [start, end): what cleaning and features read (columns of `clean_readings`' input)."""
        return self.query(
            f"""
            SELECT {_READING_COLUMNS} FROM ingest.raw_readings
            WHERE location_id IN (
                SELECT DISTINCT location_id FROM ingest.raw_readings WHERE parameter = ?
            ) AND datetime_utc >= ? AND datetime_utc < ?
            """,
            [parameter, start.to_pydatetime(), end.to_pydatetime()],
        )

    def latest_reading(
        self, parameter: str, before: pd.Timestamp | None = None
    ) -> pd.Timestamp | None:
        """The time of the newest `parameter` reading (before `before`, if given); None if
        there is none."""
        sql = "SELECT max(datetime_utc) AS last FROM ingest.raw_readings WHERE parameter = ?"
        params: list[Any] = [parameter]
        if before is not None:
            sql += " AND datetime_utc < ?"
            params.append(before.to_pydatetime())
        last = self.query(sql, params)["last"].iloc[0]
        return None if pd.isna(last) else pd.Timestamp(last)

    def readings_window(self, parameter: str, hours: int, end: pd.Timestamp) -> pd.DataFrame:
        """`readings_between` over the last `hours` up to the newest `parameter` reading before
        `end` (that reading included); empty if there is none."""
        last = self.latest_reading(parameter, before=end)
        if last is None:
            return self.readings_between(parameter, end, end)
        tick = pd.Timedelta(microseconds=1)  # DuckDB's resolution: (a, b] is [a + tick, b + tick)
        return self.readings_between(
            parameter, last - pd.Timedelta(hours=hours) + tick, last + tick
        )

    def accuracy_of(
        self, model_version: int, first_day: pd.Timestamp, end_day: pd.Timestamp
    ) -> pd.DataFrame:
        """`monitoring.forecast_accuracy` rows of a model version for days in
        [first_day, end_day); empty before the table exists."""
        if not self.table_exists("monitoring", "forecast_accuracy"):
            return pd.DataFrame()
        return self.query(
            "SELECT * FROM monitoring.forecast_accuracy WHERE model_version = ? "
            "AND day >= ? AND day < ?",
            [model_version, first_day.to_pydatetime(), end_day.to_pydatetime()],
        )

    def table_exists(self, schema: str, table: str) -> bool:
        if not self.path.exists():
            return False
        with self.get_connection(read_only=True) as con:
            return _exists(con, schema, table)

    def replace(
        self,
        schema: str,
        table: str,
        frame: pd.DataFrame,
        partitions: pd.DataFrame | None = None,
        partition_columns: Mapping[str, str] | None = None,
    ) -> None:
        """Replace rows of `schema.table` with `frame`, atomically.

        Without `partitions` the whole table is replaced. With them, `partitions` has one row
        per partition being written and `partition_columns` maps each of its columns to the
        table column it selects: a time dimension as `<column>__start`/`<column>__end`
        (half-open), any other dimension as the column itself, compared as text. Rows of
        `frame` outside those partitions are refused, since a later re-run could not delete
        them.
        """
        qualified = f'"{schema}"."{table}"'
        with self.get_connection() as con:
            con.register("aq_frame", frame)
            try:
                con.begin()
                con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                if partitions is None:
                    con.execute(f"DROP TABLE IF EXISTS {qualified}")
                    con.execute(f"CREATE TABLE {qualified} ({_column_ddl(frame)})")
                else:
                    con.execute(f"CREATE TABLE IF NOT EXISTS {qualified} ({_column_ddl(frame)})")
                    con.register("aq_partitions", partitions)
                    match = _partition_match("t", partition_columns or {})
                    outside = con.execute(
                        f"SELECT count(*) FROM aq_frame t WHERE NOT EXISTS "
                        f"(SELECT 1 FROM aq_partitions k WHERE {match})"
                    ).fetchone()
                    if outside and outside[0]:
                        raise WarehouseError(
                            f"{schema}.{table}: {outside[0]} row(s) fall outside the "
                            f"{len(partitions)} partition(s) being written; nothing was changed."
                        )
                    con.execute(f"DELETE FROM {qualified} t USING aq_partitions k WHERE {match}")
                _insert_by_name(con, qualified, frame)
                con.commit()
            except Exception:
                con.rollback()
                raise

    def replace_partitions(
        self,
        schema: str,
        table: str,
        frame: pd.DataFrame,
        partitions_def: PartitionsDefinition,
        keys: list[str],
        partition_expr: str | Mapping[str, str],
    ) -> None:
        """`replace` for the partition keys of a partitions definition, each dimension
        selecting the column `partition_expr` names (see `partition_rows`)."""
        rows, mapping = partition_rows(partitions_def, keys, partition_expr)
        self.replace(schema, table, frame, rows, mapping)

    def read(
        self,
        schema: str,
        table: str,
        partitions: pd.DataFrame | None = None,
        partition_columns: Mapping[str, str] | None = None,
    ) -> pd.DataFrame:
        """Rows of `schema.table`, optionally only those of `partitions` (as in `replace`)."""
        if not self.table_exists(schema, table):
            raise WarehouseError(
                f"Table {schema}.{table} does not exist in {self.path}: materialize `{table}` first."
            )
        with self.get_connection(read_only=True) as con:
            if partitions is None:
                return con.execute(f'SELECT * FROM "{schema}"."{table}"').df()
            con.register("aq_partitions", partitions)
            match = _partition_match("t", partition_columns or {})
            return con.execute(
                f'SELECT t.* FROM "{schema}"."{table}" t WHERE EXISTS '
                f"(SELECT 1 FROM aq_partitions k WHERE {match})"
            ).df()


def _sql_type(dtype: Any) -> str:
    """TIMESTAMP, BIGINT, DOUBLE, BOOLEAN or VARCHAR for a pandas dtype."""
    name = str(dtype).lower()
    return next(
        (sql for prefix, sql in _DUCKDB_TYPES.items() if name.startswith(prefix)), "VARCHAR"
    )


def _column_ddl(frame: pd.DataFrame) -> str:
    """Column definitions from the frame's dtypes."""
    return ", ".join(f'"{col}" {_sql_type(dtype)}' for col, dtype in frame.dtypes.items())


def _insert_by_name(con: duckdb.DuckDBPyConnection, qualified: str, frame: pd.DataFrame) -> None:
    """Insert by column name. Columns the table lacks are added (NULL in the rows already
    there): an asset that gains an output column keeps its stored partitions."""
    table_columns = {row[0] for row in con.execute(f"DESCRIBE {qualified}").fetchall()}
    for column, dtype in frame.dtypes.items():
        if column not in table_columns:
            con.execute(f'ALTER TABLE {qualified} ADD COLUMN "{column}" {_sql_type(dtype)}')
    con.execute(f"INSERT INTO {qualified} BY NAME SELECT * FROM aq_frame")


def _partition_match(alias: str, partition_columns: Mapping[str, str]) -> str:
    clauses = []
    for key_column, table_column in partition_columns.items():
        if key_column.endswith("__start"):
            clauses.append(f'{alias}."{table_column}" >= k."{key_column}"')
        elif key_column.endswith("__end"):
            clauses.append(f'{alias}."{table_column}" < k."{key_column}"')
        else:
            clauses.append(f'CAST({alias}."{table_column}" AS VARCHAR) = k."{key_column}"')
    if not clauses:
        raise WarehouseError("A partitioned write needs at least one partition column.")
    return " AND ".join(clauses)


def partition_rows(
    partitions_def: PartitionsDefinition,
    keys: list[str],
    partition_expr: str | Mapping[str, str],
) -> tuple[pd.DataFrame, dict[str, str]]:
    """One row per partition key, with the bounds or values each dimension selects, and the
    mapping from those columns to table columns (see `Warehouse.replace`)."""
    dimensions: dict[str, PartitionsDefinition]
    if isinstance(partitions_def, MultiPartitionsDefinition):
        dimensions = {d.name: d.partitions_def for d in partitions_def.partitions_defs}
        exprs = dict(partition_expr) if isinstance(partition_expr, Mapping) else {}
    else:
        dimensions = {"": partitions_def}
        exprs = {"": partition_expr} if isinstance(partition_expr, str) else {}
    missing = [name or "partition" for name in dimensions if name not in exprs]
    if missing:
        raise WarehouseError(
            f"Asset metadata `partition_expr` names no column for dimension(s) {missing}."
        )

    columns: dict[str, list[Any]] = {}
    mapping: dict[str, str] = {}
    for name, dim_def in dimensions.items():
        column = exprs[name]
        values = [
            key.keys_by_dimension[name] if isinstance(key, MultiPartitionKey) else key
            for key in (_as_key(partitions_def, k) for k in keys)
        ]
        if isinstance(dim_def, TimeWindowPartitionsDefinition):
            windows = [dim_def.time_window_for_partition_key(v) for v in values]
            columns[f"{column}__start"] = [_naive_utc(w.start) for w in windows]
            columns[f"{column}__end"] = [_naive_utc(w.end) for w in windows]
            mapping[f"{column}__start"] = column
            mapping[f"{column}__end"] = column
        else:
            columns[column] = [str(v) for v in values]
            mapping[column] = column
    return pd.DataFrame(columns), mapping


def _as_key(partitions_def: PartitionsDefinition, key: str) -> str | MultiPartitionKey:
    if isinstance(partitions_def, MultiPartitionsDefinition) and not isinstance(
        key, MultiPartitionKey
    ):
        return partitions_def.get_partition_key_from_str(key)
    return key


def _naive_utc(ts: Any) -> pd.Timestamp:
    stamp = pd.Timestamp(ts)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo else stamp


def _prepare(path: Path) -> None:
    """Make the file's folder, and fail at once on a file that is not DuckDB's: upstream's
    backoff retries any failed open for ~100 s, as if the file were locked."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.stat().st_size < 12:
        return
    offset, magic = _DUCKDB_MAGIC
    with path.open("rb") as file:
        file.seek(offset)
        if file.read(len(magic)) != magic:
            raise WarehouseError(
                f"{path} is not a DuckDB database (damaged, or another file at that path). "
                "Move it away and re-run the ingest, or point AQ_HOME elsewhere."
            )


class WarehouseIOManager(DuckDBPandasIOManager):
    """DataFrame outputs as `<metadata schema>.<asset name>` in the warehouse, through
    dagster-duckdb-pandas: the unpartitioned and day-partitioned assets. Asset metadata:
    `schema` and, when partitioned, `partition_expr`. Configured like `Warehouse`."""

    aq_home: str = ".aq"
    database: str = Field(default=WAREHOUSE_FILE, description="The DuckDB file, under aq_home.")

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [_WarehouseTypeHandler()]

    def create_io_manager(self, context: Any) -> DbIOManager:
        return DbIOManager(
            db_client=_TransactionalDuckDbClient(),
            database=self.database,
            schema=self.schema_,
            type_handlers=self.type_handlers(),
            default_load_type=self.default_load_type(),
            io_manager_name="DuckDBIOManager",
        )


class _TransactionalDuckDbClient(DuckDbClient):
    """Upstream deletes the slice and inserts the output as two commits, so a failed insert
    loses the old rows: here they are one transaction. A whole-table output is dropped and
    created again, so its columns may change (the training set's follow the sensors)."""

    @staticmethod
    @contextmanager
    def connect(context: Any, table_slice: TableSlice) -> Iterator[duckdb.DuckDBPyConnection]:
        config = context.resource_config
        warehouse = Warehouse(
            aq_home=config["aq_home"],
            database=config["database"],
            connection_config=config["connection_config"],
        )
        with warehouse.get_connection() as con:
            con.begin()
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            con.commit()

    @staticmethod
    def delete_table_slice(
        context: OutputContext, table_slice: TableSlice, connection: duckdb.DuckDBPyConnection
    ) -> None:
        qualified = f'"{table_slice.schema}"."{table_slice.table}"'
        if not table_slice.partition_dimensions:
            connection.execute(f"DROP TABLE IF EXISTS {qualified}")
        elif _exists(connection, table_slice.schema, table_slice.table):
            # Upstream swallows the missing-table error, which would abort the transaction.
            DuckDbClient.delete_table_slice(context, table_slice, connection)


class _WarehouseTypeHandler(DuckDBPandasTypeHandler):
    """Upstream inserts columns by position and creates no table for an empty output; here
    columns go by name, a new column is a clear error, and an empty output still makes its
    (empty) table, so readers find it."""

    def handle_output(
        self,
        context: OutputContext,
        table_slice: TableSlice,
        obj: pd.DataFrame,
        connection: duckdb.DuckDBPyConnection,
    ) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise WarehouseError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; "
                "the warehouse stores pandas DataFrames."
            )
        qualified = f'"{table_slice.schema}"."{table_slice.table}"'
        connection.complete()  # DuckDB 2 registers nothing while upstream's DELETE result is open
        connection.register("aq_frame", obj)
        connection.execute(f"CREATE TABLE IF NOT EXISTS {qualified} ({_column_ddl(obj)})")
        _insert_by_name(connection, qualified, obj)
        context.add_output_metadata(
            {
                "table": f"{table_slice.schema}.{table_slice.table}",
                "dataframe_columns": MetadataValue.table_schema(
                    TableSchema(
                        columns=[
                            TableColumn(name=str(name), type=str(dtype))
                            for name, dtype in obj.dtypes.items()
                        ]
                    )
                ),
            }
        )

    def load_input(
        self, context: InputContext, table_slice: TableSlice, connection: duckdb.DuckDBPyConnection
    ) -> pd.DataFrame:
        if not _exists(connection, table_slice.schema, table_slice.table):
            raise WarehouseError(
                f"Table {table_slice.schema}.{table_slice.table} does not exist: materialize "
                f"`{table_slice.table}` first."
            )
        return super().load_input(context, table_slice, connection)


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchone()
    return bool(found and found[0])


class ReadingsIOManager(ConfigurableIOManager):
    """`raw_readings`: any rectangle of days x sensors (a dynamic dimension) replaced in one
    transaction, through `Warehouse.replace`. Asset metadata: `schema` and `partition_expr`,
    a column per dimension."""

    warehouse: Warehouse

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise WarehouseError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; "
                "the warehouse stores pandas DataFrames."
            )
        schema, table, metadata = _table_of(context.definition_metadata, context)
        self.warehouse.replace_partitions(
            schema,
            table,
            obj,
            context.asset_partitions_def,
            list(context.asset_partition_keys),
            metadata.get("partition_expr", {}),
        )
        context.add_output_metadata({"table": f"{schema}.{table}"})

    def load_input(self, context: InputContext) -> pd.DataFrame:
        upstream = context.upstream_output
        if upstream is None:
            raise WarehouseError("The warehouse only loads asset inputs.")
        schema, table, metadata = _table_of(upstream.definition_metadata, upstream)
        if context.has_asset_partitions:
            rows, mapping = partition_rows(
                context.asset_partitions_def,
                list(context.asset_partition_keys),
                metadata.get("partition_expr", {}),
            )
            return self.warehouse.read(schema, table, rows, mapping)
        return self.warehouse.read(schema, table)


def _table_of(
    metadata: Mapping[str, Any] | None, context: OutputContext
) -> tuple[str, str, Mapping[str, Any]]:
    metadata = metadata or {}
    schema = metadata.get("schema")
    if not schema:
        raise WarehouseError(
            f"{context.asset_key.to_user_string()} has no `schema` in its metadata; "
            "the warehouse needs it to name the table."
        )
    return str(schema), context.asset_key.path[-1], metadata


def warehouse_resources(aq_home: str | EnvVar) -> dict[str, Any]:
    """The warehouse under `aq_home` and the IO managers that write into it, by the keys the
    assets use."""
    warehouse = Warehouse(aq_home=aq_home)
    return {
        "warehouse": warehouse,
        "io_manager": WarehouseIOManager(aq_home=aq_home),
        "readings_io_manager": ReadingsIOManager(warehouse=warehouse),
    }
