"""The DuckDB warehouse: one file under `AQ_HOME`, written one partition set at a time.

`Warehouse` opens connections (waiting out another process's lock, within a bound).
`WarehouseIOManager` stores asset outputs in `<schema>.<asset name>`: a partitioned write
deletes exactly the rows of the partitions being written and inserts the new rows in ONE
transaction, so a failed write leaves the old rows and a re-run never duplicates.

We do not use `DuckDBPandasIOManager`: in Dagster 1.13 it cannot resolve a dynamic partition
dimension (it lists partition keys without the instance), and it deletes then inserts without
a transaction around the pair.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
from dagster import (
    ConfigurableIOManager,
    ConfigurableResource,
    InputContext,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    OutputContext,
    PartitionsDefinition,
    TimeWindowPartitionsDefinition,
)

WAREHOUSE_FILE = "warehouse.duckdb"  # never named after a schema: DuckDB would find it ambiguous

_DUCKDB_TYPES = {"datetime64": "TIMESTAMP", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN"}


class WarehouseError(RuntimeError):
    """A write or read the warehouse refused; the message says which table and why."""


class Warehouse(ConfigurableResource):
    """The DuckDB file under `AQ_HOME` (default `.aq/`)."""

    aq_home: str = ".aq"
    lock_timeout_s: float = 120.0

    @property
    def path(self) -> Path:
        return Path(self.aq_home).expanduser().resolve() / WAREHOUSE_FILE

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection, retried while another process holds the file's lock."""
        if read_only and not self.path.exists():
            raise WarehouseError(
                f"No warehouse at {self.path}: materialize `sensor_catalog` and `raw_readings` "
                "first, or point AQ_HOME at an existing one."
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)  # another process writes; writes are short
                delay = min(delay * 2, 2.0)
        try:
            yield con
        finally:
            con.close()

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Rows of a read-only query, as a DataFrame."""
        with self.connect(read_only=True) as con:
            return con.execute(sql, params or []).df()

    def table_exists(self, schema: str, table: str) -> bool:
        if not self.path.exists():
            return False
        with self.connect(read_only=True) as con:
            found = con.execute(
                "SELECT count(*) FROM information_schema.tables "
                "WHERE table_schema = ? AND table_name = ?",
                [schema, table],
            ).fetchone()
        return bool(found and found[0])

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
        with self.connect() as con:
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
        with self.connect(read_only=True) as con:
            if partitions is None:
                return con.execute(f'SELECT * FROM "{schema}"."{table}"').df()
            con.register("aq_partitions", partitions)
            match = _partition_match("t", partition_columns or {})
            return con.execute(
                f'SELECT t.* FROM "{schema}"."{table}" t WHERE EXISTS '
                f"(SELECT 1 FROM aq_partitions k WHERE {match})"
            ).df()


def _column_ddl(frame: pd.DataFrame) -> str:
    """Column definitions from the frame's dtypes: TIMESTAMP, BIGINT, DOUBLE, BOOLEAN, VARCHAR."""

    def sql_type(dtype: Any) -> str:
        name = str(dtype).lower()
        return next(
            (sql for prefix, sql in _DUCKDB_TYPES.items() if name.startswith(prefix)), "VARCHAR"
        )

    return ", ".join(f'"{col}" {sql_type(dtype)}' for col, dtype in frame.dtypes.items())


def _insert_by_name(con: duckdb.DuckDBPyConnection, qualified: str, frame: pd.DataFrame) -> None:
    table_columns = {row[0] for row in con.execute(f"DESCRIBE {qualified}").fetchall()}
    unknown = [str(c) for c in frame.columns if c not in table_columns]
    if unknown:
        raise WarehouseError(
            f"{qualified} has no column(s) {unknown}; the asset's output changed shape. "
            "Drop the table (its partitions will need re-materializing) or add the columns."
        )
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


class WarehouseIOManager(ConfigurableIOManager):
    """Stores DataFrame outputs in the warehouse as `<metadata schema>.<asset name>`.

    Asset metadata: `schema` (required) and, for partitioned assets, `partition_expr`: the
    column each partition dimension selects (a dict by dimension name for multi-partitions).
    """

    warehouse: Warehouse

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        if not isinstance(obj, pd.DataFrame):
            raise WarehouseError(
                f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; "
                "the warehouse stores pandas DataFrames."
            )
        schema, table, metadata = _table_of(context.definition_metadata, context)
        if context.has_asset_partitions:
            keys = list(context.asset_partition_keys)
            rows, mapping = partition_rows(
                context.asset_partitions_def, keys, metadata.get("partition_expr", {})
            )
            self.warehouse.replace(schema, table, obj, rows, mapping)
        else:
            self.warehouse.replace(schema, table, obj)
        context.add_output_metadata({"table": f"{schema}.{table}", "rows_written": len(obj)})

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
