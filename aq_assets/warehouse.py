"""The warehouse: one seam, `Warehouse`, on DuckDB (the embedded default) or PostgreSQL.

`AQ_WAREHOUSE_URL` chooses, when the code location loads: unset, `DuckDBWarehouse`, one file
under `AQ_HOME`; `postgresql://...`, `PostgresWarehouse`, a database several machines write at
once. Both run the same SQL for the same reads and writes (`query`, `replace`, `read`), through
a small session per backend (`_Session`) that knows its placeholders, staging and locking.

`DuckDBWarehouse` is dagster-duckdb's `DuckDBResource` (its connection config and its backoff
while another process holds the file's lock), with read-only connections; its
`WarehouseIOManager` is dagster-duckdb-pandas' `DuckDBPandasIOManager` for the unpartitioned and
day-partitioned assets, with the slice's delete and the insert in ONE transaction, columns
matched by name and whole-table outputs replaced with their new columns.
`TableIOManager` stores any asset through `Warehouse.replace`: `raw_readings` (day x dynamic
sensor) on both backends, which the stock manager cannot (in Dagster 1.13 it lists a dynamic
dimension's keys without the instance, and a run over several days of several sensors is more
than the one key range its table slice holds; aq_assets_tests/test_warehouse.py shows both
failures), and every asset on PostgreSQL, for which Dagster ships no IO manager.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

import duckdb
import pandas as pd
from dagster import (
    ConfigurableIOManager,
    ConfigurableResource,
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

from aq_assets.settings import env_or_default, env_value

if TYPE_CHECKING:
    from psycopg2.extensions import cursor as PgCursor

WAREHOUSE_FILE = "warehouse.duckdb"  # never named after a schema: DuckDB would find it ambiguous
_DUCKDB_MAGIC = (8, b"DUCK")  # where every DuckDB file says what it is

# Type names both engines accept (FLOAT8 is DuckDB's DOUBLE and PostgreSQL's double precision,
# FLOAT4 their single precision); the first prefix of the dtype's name that matches.
_SQL_TYPES = {
    "datetime64": "TIMESTAMP",
    "int": "BIGINT",
    "float32": "FLOAT4",
    "float": "FLOAT8",
    "bool": "BOOLEAN",
}

_READING_COLUMNS = "sensor_id, location_id, parameter, units, datetime_utc, value"

WAREHOUSE_URL = "AQ_WAREHOUSE_URL"
WAREHOUSE_PASSWORD = "AQ_WAREHOUSE_PASSWORD"
_POSTGRES_SCHEMES = ("postgresql", "postgres")
_URL_HELP = (
    f"set {WAREHOUSE_URL}=postgresql://USER@HOST:PORT/DATABASE (the password in "
    f"{WAREHOUSE_PASSWORD}, or URL-encoded in the URL) for PostgreSQL, or unset it for the "
    "DuckDB file under AQ_HOME"
)


class WarehouseError(RuntimeError):
    """A write or read the warehouse refused; the message says which table and why."""


class _Session(Protocol):
    """One connection of a backend, inside a transaction when writing."""

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame: ...

    def stage(self, name: str, frame: pd.DataFrame) -> None:
        """Make `frame` readable as the relation `name` until the session ends."""

    def lock(self, key: str) -> None:
        """Hold `key` until the transaction ends: writers of one key go one at a time."""


class Warehouse(ConfigurableResource):
    """Where the pipeline's tables live: the reads the stages share, and atomic, idempotent
    replaces of whole tables or of partitions. `aq_home` (`AQ_HOME`) holds what is not a
    table (reports, the online features snapshot)."""

    aq_home: str = ".aq"

    @property
    def home(self) -> Path:
        return Path(self.aq_home).expanduser().resolve()

    @property
    def location(self) -> str:
        """Where the tables are, for messages (never a password)."""
        raise NotImplementedError

    @contextmanager
    def _session(self, write: bool) -> Iterator[_Session]:
        """A session; when `write`, one transaction committed at the end of the block and
        rolled back when it raises."""
        raise NotImplementedError
        yield

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Rows of a read-only query (`?` placeholders), as a DataFrame."""
        with self._session(write=False) as session:
            return session.fetch(sql, params or [])

    # -- the reads the stages share ------------------------------------------------------

    def readings_between(
        self, parameter: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame:
        """Raw readings of every parameter, at locations that measure `parameter`, in
        [start, end): what cleaning and features read (columns of `clean_readings`' input).
        Sensors the catalog marks inactive (no longer offered by the source, e.g. a location
        taken out of AQ_LOCATIONS) are left out: their readings stay stored, but training,
        predictions and the service's snapshot follow the sensors in scope."""
        inactive = (
            "AND sensor_id NOT IN (SELECT sensor_id FROM ingest.sensor_catalog WHERE NOT active)"
            if self.table_exists("ingest", "sensor_catalog")
            else ""
        )
        return self.query(
            f"""
            SELECT {_READING_COLUMNS} FROM ingest.raw_readings
            WHERE location_id IN (
                SELECT DISTINCT location_id FROM ingest.raw_readings WHERE parameter = ?
            ) {inactive} AND datetime_utc >= ? AND datetime_utc < ?
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
        tick = pd.Timedelta(
            microseconds=1
        )  # both engines' resolution: (a, b] is [a + tick, b + tick)
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
        with self._session(write=False) as session:
            return _exists(session, schema, table)

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
        them. Writers of one table go one at a time (PostgreSQL: a transaction lock), so two
        replacing the same partitions leave one writer's rows, never both.
        """
        qualified = f'"{schema}"."{table}"'
        with self._session(write=True) as session:
            session.lock(f"table {schema}.{table}")
            _create_schema(session, schema)
            session.stage("aq_frame", frame)
            if partitions is None:
                session.execute(f"DROP TABLE IF EXISTS {qualified}")
                session.execute(f"CREATE TABLE {qualified} ({_column_ddl(frame)})")
            else:
                session.execute(f"CREATE TABLE IF NOT EXISTS {qualified} ({_column_ddl(frame)})")
                session.stage("aq_partitions", partitions)
                match = _partition_match("t", partition_columns or {})
                outside = session.fetch(
                    f"SELECT count(*) AS n FROM aq_frame t WHERE NOT EXISTS "
                    f"(SELECT 1 FROM aq_partitions k WHERE {match})"
                )["n"].iloc[0]
                if outside:
                    raise WarehouseError(
                        f"{schema}.{table}: {outside} row(s) fall outside the "
                        f"{len(partitions)} partition(s) being written; nothing was changed."
                    )
                session.execute(f"DELETE FROM {qualified} t USING aq_partitions k WHERE {match}")
            _insert_by_name(session, schema, table, frame)

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
                f"Table {schema}.{table} does not exist in {self.location}: materialize "
                f"`{table}` first."
            )
        with self._session(write=False) as session:
            if partitions is None:
                return session.fetch(f'SELECT * FROM "{schema}"."{table}"')
            session.stage("aq_partitions", partitions)
            match = _partition_match("t", partition_columns or {})
            return session.fetch(
                f'SELECT t.* FROM "{schema}"."{table}" t WHERE EXISTS '
                f"(SELECT 1 FROM aq_partitions k WHERE {match})"
            )


class DuckDBWarehouse(Warehouse, DuckDBResource):
    """The DuckDB file `database` (default `warehouse.duckdb`) under `aq_home` (`AQ_HOME`):
    one writing process at a time (the file's lock; the `duckdb` pool keeps runs in line)."""

    database: str = Field(default=WAREHOUSE_FILE, description="The DuckDB file, under aq_home.")

    @property
    def path(self) -> Path:
        return self.home / self.database

    @property
    def location(self) -> str:
        return str(self.path)

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

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A writing connection inside one transaction: committed at the end of the block,
        rolled back when it raises."""
        with self.get_connection() as con:
            con.begin()
            try:
                yield con
            except BaseException:
                con.rollback()
                raise
            con.commit()

    @contextmanager
    def _session(self, write: bool) -> Iterator[_Session]:
        if write:
            with self.transaction() as con:
                yield _DuckDBSession(con)
        else:
            with self.get_connection(read_only=True) as con:
                yield _DuckDBSession(con)

    def table_exists(self, schema: str, table: str) -> bool:
        return self.path.exists() and super().table_exists(schema, table)


class _DuckDBSession:
    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.con.execute(sql, list(params))

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        return self.con.execute(sql, list(params)).df()

    def stage(self, name: str, frame: pd.DataFrame) -> None:
        self.con.register(name, frame)

    def lock(self, key: str) -> None:
        """Nothing to do: the file's lock admits one writing process."""


class PostgresWarehouse(Warehouse):
    """A PostgreSQL database (`url`, `AQ_WAREHOUSE_URL`) that runs on several machines write
    at once: each replace is one transaction holding its table's advisory lock, rows arrive by
    `COPY`. psycopg2 (dagster-postgres brings it) is imported only when connecting."""

    url: str = Field(description="postgresql://USER@HOST:PORT/DATABASE (AQ_WAREHOUSE_URL).")
    password: str = Field(
        default="", description="The role's password, if not in the URL (AQ_WAREHOUSE_PASSWORD)."
    )

    @property
    def location(self) -> str:
        return _redacted(self.url)

    @contextmanager
    def _session(self, write: bool) -> Iterator[_Session]:
        con = self._connect()
        try:
            with con.cursor() as cur:
                yield _PostgresSession(cur)
            if write:
                con.commit()
        finally:
            con.close()  # without a commit: rolled back

    def _connect(self) -> Any:
        import psycopg2

        check_warehouse_url(self.url)
        extra = {"password": self.password} if self.password else {}
        try:
            return psycopg2.connect(self.url, connect_timeout=10, application_name="aq", **extra)
        except psycopg2.OperationalError as exc:
            reason = " ".join(str(exc).split())
            raise WarehouseError(
                f"Cannot reach the PostgreSQL warehouse {self.location}: {reason}. Check "
                f"{WAREHOUSE_URL} and {WAREHOUSE_PASSWORD}, and that the database exists "
                "(deploy/postgres/init-databases.sh creates it under docker-compose)."
            ) from exc


# PostgreSQL type oids of what the warehouse stores, read back as DuckDB returns them.
_PG_INTEGER, _PG_FLOAT, _PG_BOOLEAN = {20, 21, 23}, {701, 1700}, {16}
_PG_FLOAT4 = 700
_PG_TIMESTAMP, _PG_TIMESTAMPTZ = 1114, 1184


class _PostgresSession:
    def __init__(self, cur: PgCursor) -> None:
        self.cur = cur

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        # aq's SQL uses `?` only as placeholders; psycopg2 formats with `%`.
        self.cur.execute(sql.replace("%", "%%").replace("?", "%s"), list(params))

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> pd.DataFrame:
        self.execute(sql, params)
        description = self.cur.description or []
        frame = pd.DataFrame.from_records(self.cur.fetchall(), columns=range(len(description)))
        for position, column in enumerate(description):
            frame[position] = _as_duckdb_returns(frame[position], column.type_code)
        frame.columns = pd.Index([column.name for column in description])
        return frame

    def stage(self, name: str, frame: pd.DataFrame) -> None:
        """A temporary table, dropped at commit, filled by COPY."""
        frame = frame.assign(
            **{
                str(column): values.dt.tz_convert("UTC").dt.tz_localize(None)
                for column, values in frame.items()
                if isinstance(values.dtype, pd.DatetimeTZDtype)
            }
        )
        self.execute(f'CREATE TEMPORARY TABLE "{name}" ({_column_ddl(frame)}) ON COMMIT DROP')
        if frame.empty:
            return
        text = io.StringIO()
        frame.to_csv(text, index=False, header=False, quoting=csv.QUOTE_MINIMAL)
        text.seek(0)
        columns = ", ".join(f'"{column}"' for column in frame.columns)
        self.cur.copy_expert(f'COPY "{name}" ({columns}) FROM STDIN WITH (FORMAT csv)', text)

    def lock(self, key: str) -> None:
        self.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", [f"aq {key}"])


def _as_duckdb_returns(values: pd.Series, type_code: int) -> pd.Series:
    """A column of psycopg2 values with the dtype DuckDB's `.df()` gives the same column."""
    complete = bool(values.notna().all())
    if type_code in _PG_INTEGER:
        return values.astype("int64" if complete else "Int64")
    if type_code in _PG_FLOAT:
        return values.astype("float64")
    if type_code == _PG_FLOAT4:
        return values.astype("float32")
    if type_code in _PG_BOOLEAN:
        return values.astype(bool if complete else "boolean")
    if type_code == _PG_TIMESTAMP:
        return pd.to_datetime(values).astype("datetime64[us]")
    if type_code == _PG_TIMESTAMPTZ:
        return pd.to_datetime(values, utc=True).dt.tz_localize(None).astype("datetime64[us]")
    return values


def check_warehouse_url(url: str) -> str:
    """The backend a warehouse URL names, `duckdb` (empty) or `postgres`; a clear error for
    anything else."""
    if not url:
        return "duckdb"
    parts = urlsplit(url)
    if parts.scheme not in _POSTGRES_SCHEMES or not parts.path.strip("/"):
        raise WarehouseError(f"{WAREHOUSE_URL}={_redacted(url)} is not usable: {_URL_HELP}.")
    return "postgres"


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _sql_type(dtype: Any) -> str:
    """TIMESTAMP, BIGINT, FLOAT4, FLOAT8, BOOLEAN or VARCHAR for a pandas dtype."""
    name = str(dtype).lower()
    return next((sql for prefix, sql in _SQL_TYPES.items() if name.startswith(prefix)), "VARCHAR")


def _column_ddl(frame: pd.DataFrame) -> str:
    """Column definitions from the frame's dtypes."""
    return ", ".join(f'"{col}" {_sql_type(dtype)}' for col, dtype in frame.dtypes.items())


def _create_schema(session: _Session, schema: str) -> None:
    """CREATE SCHEMA IF NOT EXISTS, which two PostgreSQL transactions can race (both insert it):
    the first to find it missing creates it under a lock the second waits for."""
    found = session.fetch(
        "SELECT count(*) AS n FROM information_schema.schemata WHERE schema_name = ?", [schema]
    )["n"].iloc[0]
    if not found:
        session.lock(f"schema {schema}")
        session.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')


def _insert_by_name(session: _Session, schema: str, table: str, frame: pd.DataFrame) -> None:
    """Insert the staged `aq_frame` by column name, each value cast to its column's type.
    Columns the table lacks are added (NULL in the rows already there): an asset that gains an
    output column keeps its stored partitions."""
    qualified = f'"{schema}"."{table}"'
    types = dict(
        session.fetch(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name = ?",
            [schema, table],
        ).itertuples(index=False)
    )
    for column, dtype in frame.dtypes.items():
        if column not in types:
            types[column] = _sql_type(dtype)
            session.execute(f'ALTER TABLE {qualified} ADD COLUMN "{column}" {types[column]}')
    if frame.columns.empty:
        return
    names = ", ".join(f'"{column}"' for column in frame.columns)
    values = ", ".join(f'CAST(f."{column}" AS {types[column]})' for column in frame.columns)
    session.execute(f"INSERT INTO {qualified} ({names}) SELECT {values} FROM aq_frame f")


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
    """DataFrame outputs as `<metadata schema>.<asset name>` in the DuckDB warehouse, through
    dagster-duckdb-pandas: the unpartitioned and day-partitioned assets. Asset metadata:
    `schema` and, when partitioned, `partition_expr`. Configured like `DuckDBWarehouse`."""

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
        warehouse = DuckDBWarehouse(
            aq_home=config["aq_home"],
            database=config["database"],
            connection_config=config["connection_config"],
        )
        with warehouse.transaction() as con:
            yield con

    @staticmethod
    def delete_table_slice(
        context: OutputContext, table_slice: TableSlice, connection: duckdb.DuckDBPyConnection
    ) -> None:
        qualified = f'"{table_slice.schema}"."{table_slice.table}"'
        if not table_slice.partition_dimensions:
            connection.execute(f"DROP TABLE IF EXISTS {qualified}")
        elif _exists(_DuckDBSession(connection), table_slice.schema, table_slice.table):
            # Upstream swallows the missing-table error, which would abort the transaction.
            DuckDbClient.delete_table_slice(context, table_slice, connection)


class _WarehouseTypeHandler(DuckDBPandasTypeHandler):
    """Upstream inserts columns by position and creates no table for an empty output; here
    columns go by name, a new column is added, and an empty output still makes its (empty)
    table, so readers find it."""

    def handle_output(
        self,
        context: OutputContext,
        table_slice: TableSlice,
        obj: pd.DataFrame,
        connection: duckdb.DuckDBPyConnection,
    ) -> None:
        _require_frame(context, obj)
        qualified = f'"{table_slice.schema}"."{table_slice.table}"'
        connection.complete()  # DuckDB 2 registers nothing while upstream's DELETE result is open
        session = _DuckDBSession(connection)
        session.stage("aq_frame", obj)
        session.execute(f"CREATE TABLE IF NOT EXISTS {qualified} ({_column_ddl(obj)})")
        _insert_by_name(session, table_slice.schema, table_slice.table, obj)
        context.add_output_metadata(_output_metadata(table_slice.schema, table_slice.table, obj))

    def load_input(
        self, context: InputContext, table_slice: TableSlice, connection: duckdb.DuckDBPyConnection
    ) -> pd.DataFrame:
        if not _exists(_DuckDBSession(connection), table_slice.schema, table_slice.table):
            raise WarehouseError(
                f"Table {table_slice.schema}.{table_slice.table} does not exist: materialize "
                f"`{table_slice.table}` first."
            )
        return super().load_input(context, table_slice, connection)


def _exists(session: _Session, schema: str, table: str) -> bool:
    found = session.fetch(
        "SELECT count(*) AS n FROM information_schema.tables "
        "WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    )["n"].iloc[0]
    return bool(found)


def _require_frame(context: OutputContext, obj: Any) -> None:
    if not isinstance(obj, pd.DataFrame):
        raise WarehouseError(
            f"{context.asset_key.to_user_string()} returned {type(obj).__name__}; "
            "the warehouse stores pandas DataFrames."
        )


def _output_metadata(schema: str, table: str, frame: pd.DataFrame) -> dict[str, Any]:
    return {
        "table": f"{schema}.{table}",
        "dataframe_columns": MetadataValue.table_schema(
            TableSchema(
                columns=[
                    TableColumn(name=str(name), type=str(dtype))
                    for name, dtype in frame.dtypes.items()
                ]
            )
        ),
    }


class TableIOManager(ConfigurableIOManager):
    """DataFrame outputs as `<metadata schema>.<asset name>` of any `Warehouse`, through
    `Warehouse.replace`: a whole table, or any rectangle of partitions (days x a dynamic sensor
    dimension included) in one transaction. Asset metadata: `schema` and, when partitioned,
    `partition_expr`, a column per dimension."""

    warehouse: Warehouse

    def handle_output(self, context: OutputContext, obj: pd.DataFrame) -> None:
        _require_frame(context, obj)
        schema, table, metadata = _table_of(context.definition_metadata, context)
        if context.has_asset_partitions:
            self.warehouse.replace_partitions(
                schema,
                table,
                obj,
                context.asset_partitions_def,
                list(context.asset_partition_keys),
                metadata.get("partition_expr", {}),
            )
        else:
            self.warehouse.replace(schema, table, obj)
        context.add_output_metadata(_output_metadata(schema, table, obj))

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


def _value(setting: str | EnvVar) -> str:
    return (setting.get_value() or "") if isinstance(setting, EnvVar) else setting


def warehouse_resources(
    aq_home: str | EnvVar, url: str | EnvVar = "", password: str | EnvVar = ""
) -> dict[str, Any]:
    """The warehouse `url` names (empty: the DuckDB file under `aq_home`) and the IO managers
    that write into it, by the keys the assets use."""
    if check_warehouse_url(_value(url)) == "duckdb":
        duck = DuckDBWarehouse(aq_home=aq_home)
        return {
            "warehouse": duck,
            "io_manager": WarehouseIOManager(aq_home=aq_home),
            "readings_io_manager": TableIOManager(warehouse=duck),
        }
    postgres = PostgresWarehouse(aq_home=aq_home, url=url, password=password)
    tables = TableIOManager(warehouse=postgres)
    return {"warehouse": postgres, "io_manager": tables, "readings_io_manager": tables}


def configured_warehouse_resources(aq_home: str | EnvVar) -> dict[str, Any]:
    """`warehouse_resources` as the environment configures them (AQ_WAREHOUSE_URL,
    AQ_WAREHOUSE_PASSWORD)."""
    return warehouse_resources(
        aq_home,
        env_or_default("AQ_WAREHOUSE_URL", ""),
        env_or_default("AQ_WAREHOUSE_PASSWORD", ""),
    )


# Read when the code location loads, like the asset definitions that use them: the DuckDB file
# admits one writing process, so its writers share the `duckdb` pool (one slot, dagster.yaml);
# PostgreSQL's writers need no pool and run side by side, as many as the runs allowed at once.
WAREHOUSE_KIND = check_warehouse_url(env_value("AQ_WAREHOUSE_URL", ""))
WRITERS_POOL = "duckdb" if WAREHOUSE_KIND == "duckdb" else None
