"""Features by the compiled loops (`build_features`, what training, batch predictions and the
service call) against the same features in whole-frame pandas (`aq_assets_tests/oracle.py`,
the implementation they replaced, kept as the tests' reference) and in DuckDB SQL.

    .venv/bin/python benchmarks/features_sql_vs_pandas.py [--days 365] [--repeats 3]

20 simulated sensors (5 locations × pm25, pm10, no2, o3) × 365 UTC days of 2025 are fetched
with `SimulatedSource.fetch_day`, cleaned with `clean_readings`, and written to table `hourly`
of a temporary DuckDB file. The features are then built for the pm25 sensors (the others are
their co-located covariates) in two ways, in this one process:

1. loops: `build_features(hourly, FeatureSpec().with_sensors(pm25 ids), timezones)` on the
   cleaned frame already in memory, timezones (location_id -> timezone) from the catalog.
2. pandas: `oracle.build_features` on the same arguments.
3. SQL: one DuckDB query over table `hourly` with window functions (`features_sql`), plus the
   `.df()` conversion to pandas, since the consumer (XGBoost training) reads pandas.

Each path runs once as a warm-up (the loops compile, or load numba's cache), then
`--repeats` times interleaved (loops, pandas, SQL, loops, ...)
so machine noise hits both alike; best and median are reported. DuckDB uses its default
thread count (every core), the loops and pandas one core, so SQL is also timed at `threads=1`.

Parity (exits 1 before timing if it fails): same row count, same columns in the same order
with the same dtypes, the same sensor_id, location_id and datetime_utc in every row, and every
other column equal within rtol = atol = 1e-9 with NaN in the same places. `EXCLUDED` lists
columns left out of the check, with the reason (empty: every column is checked).

The SQL handles fixed-offset timezones ("+05:30", "UTC"), which are what the simulated
catalog holds; an IANA zone name raises (DuckDB would need the ICU extension for it).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from aq_assets.defs.ingest.catalog import timezones_of
from aq_assets.defs.ingest.sources.base import Sensor
from aq_assets.defs.ingest.sources.simulated import SimulatedSource
from aq_assets.ml.cleaning import clean_readings
from aq_assets.ml.features import (
    DEFAULT_COVARIATES,
    NETWORK,
    PROFILE_DAYS,
    FeatureSpec,
    build_features,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from aq_assets_tests import oracle

FIRST_DAY = dt.date(2025, 1, 1)
RTOL = ATOL = 1e-9
# Columns left out of the parity check (and why). Empty: every column is checked.
EXCLUDED: dict[str, str] = {}
_OFFSET = re.compile(r"^([+-])(\d{2}):?(\d{2})$")


# ---- data ------------------------------------------------------------------------------


def simulated_hourly(days: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The catalog of the 20 default simulated sensors and their cleaned hourly readings over
    `days` UTC days from FIRST_DAY."""
    source = SimulatedSource()
    catalog = source.list_sensors()
    pieces = []
    for row in catalog.itertuples(index=False):
        sensor = Sensor(
            sensor_id=int(row.sensor_id),
            location_id=int(row.location_id),
            parameter=str(row.parameter),
            units=str(row.units),
            timezone=str(row.timezone),
        )
        for offset in range(days):
            pieces.append(source.fetch_day(sensor, FIRST_DAY + dt.timedelta(days=offset)).readings)
    readings = pd.concat(pieces, ignore_index=True)
    hourly, _ = clean_readings(readings)
    return catalog, hourly


def write_hourly(con: duckdb.DuckDBPyConnection, hourly: pd.DataFrame) -> None:
    con.register("hourly_frame", hourly)
    con.execute(
        "CREATE TABLE hourly AS SELECT sensor_id::BIGINT AS sensor_id, "
        "location_id::BIGINT AS location_id, parameter::VARCHAR AS parameter, "
        "datetime_utc::TIMESTAMP AS datetime_utc, value::DOUBLE AS value FROM hourly_frame"
    )
    con.unregister("hourly_frame")


# ---- the SQL path ----------------------------------------------------------------------


def offset_minutes(timezone: str) -> int:
    """Minutes east of UTC of a fixed-offset zone, as `features._local_times` reads it."""
    if not timezone or timezone in {"UTC", "+00:00", "Z"}:
        return 0
    match = _OFFSET.match(timezone)
    if match is None:
        raise ValueError(f"{timezone!r}: the SQL path handles fixed UTC offsets only")
    sign = 1 if match.group(1) == "+" else -1
    return sign * (int(match.group(2)) * 60 + int(match.group(3)))


def _values(rows: list[tuple[int, str]], alias: str) -> str:
    """A VALUES list usable as a table `alias(columns)`; one never-matching row when empty."""
    body = ", ".join(f"({a}, {b})" for a, b in rows) or "(NULL, NULL)"
    return f"(VALUES {body}) AS {alias}"


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def profiles(spec: FeatureSpec) -> dict[str, tuple[str, int]]:
    """The same-hour profiles among the spec's features, by name: (frame start in days before
    the hour, min_periods) of build_features' `shift(1).rolling(days)` means, and of its
    `shift(1).expanding(min_periods=3)` mean ("all") when the spec has that one."""
    known = {f"{days}d": (str(days), max(1, days // 4)) for days in PROFILE_DAYS}
    known["all"] = ("UNBOUNDED", 3)
    columns = set(spec.feature_columns)
    return {
        name: frame
        for name, frame in known.items()
        if any(f"same_hour_{name}_h{h}" in columns for h in spec.horizons)
    }


def features_sql(spec: FeatureSpec, timezones: dict[int, str]) -> str:
    """One DuckDB query over table `hourly` giving `build_features(hourly, spec, timezones)`:
    the same rows in the same order, the same columns. Every feature is a window over the
    sensor's complete hourly grid, extended by max(horizons) hours past its last reading
    (as in pandas) so the same-hour profiles can be read at t+h."""
    extra = max(spec.horizons)
    by_sensor = "PARTITION BY sensor_id ORDER BY datetime_utc"

    def frame(preceding: int, last: str = "CURRENT ROW") -> str:
        return f"({by_sensor} ROWS BETWEEN {preceding} PRECEDING AND {last})"

    def rolling(agg: str, w: int, min_periods: int) -> str:
        """pandas rolling(w, min_periods): NULL unless enough non-null values in the window."""
        return (
            f"CASE WHEN count(y) OVER {frame(w - 1)} >= {min_periods} "
            f"THEN {agg}(y) OVER {frame(w - 1)} END"
        )

    level = f"last_value(y IGNORE NULLS) OVER {frame(spec.max_fill_hours)}"
    last_seen = (
        "last_value(CASE WHEN y IS NOT NULL THEN datetime_utc END IGNORE NULLS) "
        f"OVER {frame(spec.max_fill_hours)}"
    )
    window_columns = [
        f"{level} AS level",
        f"(epoch(datetime_utc) - epoch({last_seen})) / 3600 AS hours_since_reading",
        *(f"lag(y, {k}) OVER ({by_sensor}) AS lag_{k}" for k in spec.lags),
    ]
    for w in spec.windows:
        window_columns.append(f"{rolling('avg', w, max(1, w // 3))} AS mean_{w}")
        window_columns.append(f"{rolling('stddev_samp', w, max(1, w // 3))} AS std_{w}")
    window_columns.append(f"{rolling('max', 24, 8)} AS max_24")
    window_columns += [
        f"{level} - lag(y, {k}) OVER ({by_sensor}) AS change_{k}" for k in (1, 3, 24)
    ]
    # The profile at hour t: mean of y at t-24k (the same UTC hour on earlier days of the
    # complete grid) for k = 1..days, or over all earlier days; read below at t+h.
    for name, (preceding, min_periods) in profiles(spec).items():
        same_hour = (
            "(PARTITION BY sensor_id, hour(datetime_utc) ORDER BY datetime_utc "
            f"ROWS BETWEEN {preceding} PRECEDING AND 1 PRECEDING)"
        )
        window_columns.append(
            f"CASE WHEN count(y) OVER {same_hour} >= {min_periods} "
            f"THEN avg(y) OVER {same_hour} END AS profile_{name}"
        )
    window_columns += [
        f'last_value("{p}" IGNORE NULLS) OVER {frame(2)} AS "{p}_now"' for p in spec.covariates
    ]
    window_columns += [f"lead(y, {h}) OVER ({by_sensor}) AS target_h{h}" for h in spec.horizons]

    profile_columns = [
        f"lead(profile_{name}, {h}) OVER ({by_sensor}) AS same_hour_{name}_h{h}"
        for name in profiles(spec)
        for h in spec.horizons
        if h <= 24
    ]
    covariate_changes = [
        f'"{p}_now" - lag("{p}_now", 3) OVER ({by_sensor}) AS "{p}_change_3"'
        for p in spec.covariates
    ]
    pivot = [f'avg(value) FILTER (WHERE parameter = {_quote(p)}) AS "{p}"' for p in spec.covariates]
    covariate_list = ", ".join(_quote(p) for p in spec.covariates) or "NULL"
    offsets = _values(
        [(int(loc), str(offset_minutes(tz))) for loc, tz in timezones.items()],
        "o(location_id, offset_minutes)",
    )
    codes = _values(
        [(int(s), f"{float(i)}::DOUBLE") for i, s in enumerate(spec.sensors)],
        "c(sensor_id, code)",
    )
    calendar = [
        "sin(2 * pi() * local_hour / 24) AS hour_sin",
        "cos(2 * pi() * local_hour / 24) AS hour_cos",
        "(isodow(local_time) - 1)::DOUBLE AS day_of_week",
        "CASE WHEN isodow(local_time) >= 6 THEN 1.0 ELSE 0.0 END::DOUBLE AS is_weekend",
        "sin(2 * pi() * dayofyear(local_time) / 365.25) AS doy_sin",
        "cos(2 * pi() * dayofyear(local_time) / 365.25) AS doy_cos",
    ]
    output = ["sensor_id", "location_id", "datetime_utc", "y", *spec.feature_columns]
    output += spec.target_columns
    select_output = ", ".join(f'"{c}"' for c in output)
    newline = ",\n        "
    return f"""
    WITH target AS (
        SELECT sensor_id, location_id, datetime_utc, value AS y
        FROM hourly WHERE parameter = {_quote(spec.parameter)}
    ),
    spans AS (  -- one location per sensor, so min() is build_features' first()
        SELECT sensor_id, min(location_id) AS location_id, max(datetime_utc) AS end_utc,
               generate_series(min(datetime_utc), max(datetime_utc) + INTERVAL {extra} HOUR,
                               INTERVAL 1 HOUR) AS hours
        FROM target GROUP BY sensor_id
    ),
    grid AS (
        SELECT sensor_id, location_id, unnest(hours) AS datetime_utc, end_utc FROM spans
    ),
    covariates AS (
        SELECT location_id, datetime_utc,
        {newline.join(pivot)}
        FROM hourly WHERE parameter IN ({covariate_list})
        GROUP BY location_id, datetime_utc
    ),
    base AS (
        SELECT g.sensor_id, g.location_id, g.datetime_utc, g.datetime_utc > g.end_utc AS extension,
               t.y, {", ".join(f'c."{p}"' for p in spec.covariates) or "NULL AS _none"}
        FROM grid g
        LEFT JOIN target t USING (sensor_id, datetime_utc)
        LEFT JOIN covariates c ON c.location_id = g.location_id
                              AND c.datetime_utc = g.datetime_utc
    ),
    windowed AS (
        SELECT sensor_id, location_id, datetime_utc, extension, y,
        {newline.join(window_columns)}
        FROM base
    ),
    second AS (
        SELECT w.*,
        {newline.join(profile_columns + covariate_changes)},
        w.datetime_utc + to_minutes(coalesce(o.offset_minutes, 0)) AS local_time,
        hour(local_time) + minute(local_time) / 60 AS local_hour,
        {newline.join(calendar)},
        c.code AS sensor_code
        FROM windowed w
        LEFT JOIN {offsets} USING (location_id)
        LEFT JOIN {codes} USING (sensor_id)
    )
    SELECT {select_output}
    FROM second WHERE NOT extension
    ORDER BY sensor_id, datetime_utc
    """


def sql_features(con: duckdb.DuckDBPyConnection, query: str) -> pd.DataFrame:
    frame = con.sql(query).df()
    # DuckDB hands TIMESTAMP over as datetime64[us]; build_features gives datetime64[ns].
    frame["datetime_utc"] = frame["datetime_utc"].astype("datetime64[ns]")
    return frame


# ---- parity and timing -----------------------------------------------------------------


def compare(expected: pd.DataFrame, actual: pd.DataFrame) -> list[str]:
    """Lines describing every difference between the two frames; empty when they agree."""
    problems: list[str] = []
    if list(expected.columns) != list(actual.columns):
        return [f"columns differ: {list(expected.columns)} vs {list(actual.columns)}"]
    if len(expected) != len(actual):
        return [f"row counts differ: {len(expected)} vs {len(actual)}"]
    for column in expected.columns:
        if column in EXCLUDED:
            continue
        left, right = expected[column], actual[column]
        if left.dtype != right.dtype:
            problems.append(f"{column}: dtype {left.dtype} vs {right.dtype}")
        if column in {"sensor_id", "location_id", "datetime_utc"}:
            if not np.array_equal(left.to_numpy(), right.to_numpy()):
                problems.append(f"{column}: values differ")
            continue
        a = left.to_numpy(dtype=np.float64, na_value=np.nan)
        b = right.to_numpy(dtype=np.float64, na_value=np.nan)
        close = np.isclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True)
        if not close.all():
            both = ~np.isnan(a) & ~np.isnan(b)
            worst = float(np.max(np.abs(a - b)[both])) if both.any() else 0.0
            nan_mismatch = int((np.isnan(a) != np.isnan(b)).sum())
            problems.append(
                f"{column}: {int((~close).sum())} rows differ "
                f"({nan_mismatch} NaN mismatches, max |diff| {worst:.3g})"
            )
    return problems


def timings(runs: dict[str, Callable[[], pd.DataFrame]], repeats: int) -> dict[str, list[float]]:
    """Seconds per call of each function: one warm-up, then `repeats` interleaved calls."""
    for run in runs.values():
        run()
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    start = time.perf_counter()
    catalog, hourly = simulated_hourly(args.days)
    prepare_s = time.perf_counter() - start
    timezones = timezones_of(catalog)
    # The SQL variant predates the network (the other sensors' series): compared without it.
    spec = FeatureSpec(covariates=tuple(c for c in DEFAULT_COVARIATES if c != NETWORK))
    target_ids = sorted(hourly.loc[hourly["parameter"] == spec.parameter, "sensor_id"].unique())
    spec = spec.with_sensors(target_ids)
    query = features_sql(spec, timezones)

    print(
        f"machine: {os.cpu_count()} cores ({platform.machine()}), python "
        f"{platform.python_version()}, pandas {pd.__version__}, duckdb {duckdb.__version__}, "
        f"numpy {np.__version__}"
    )
    print(
        f"input: {catalog['sensor_id'].nunique()} sensors × {args.days} days from {FIRST_DAY}, "
        f"{len(hourly)} cleaned hourly rows (generated + cleaned in {prepare_s:.1f} s)"
    )
    with tempfile.TemporaryDirectory(prefix="aq-bench-") as tmp:
        con = duckdb.connect(f"{tmp}/features.duckdb")
        write_hourly(con, hourly)
        threads = con.sql("SELECT current_setting('threads')").fetchall()[0][0]

        expected = build_features(hourly, spec, timezones)
        actual = sql_features(con, query)
        print(
            f"output: {len(expected)} feature rows × {len(expected.columns)} columns "
            f"for {len(target_ids)} {spec.parameter} sensors"
        )
        problems = compare(expected, actual)
        if problems:
            print("parity: FAILED")
            for line in problems:
                print(f"  {line}")
            raise SystemExit(1)
        checked = [c for c in expected.columns if c not in EXCLUDED]
        print(
            f"parity: OK, {len(checked)}/{len(expected.columns)} columns equal on all "
            f"{len(expected)} rows (same order and dtypes; floats rtol=atol={RTOL:g}, "
            "NaN in the same places)"
        )
        for column, reason in EXCLUDED.items():
            print(f"  excluded {column}: {reason}")

        def loops_run() -> pd.DataFrame:
            return build_features(hourly, spec, timezones)

        def pandas_run() -> pd.DataFrame:
            return oracle.build_features(hourly, spec, timezones)

        def sql_run() -> pd.DataFrame:
            return sql_features(con, query)

        def sql_one_thread() -> pd.DataFrame:
            con.execute("SET threads = 1")
            try:
                return sql_features(con, query)
            finally:
                con.execute(f"SET threads = {threads}")

        seconds = timings(
            {
                "loops": loops_run,
                "pandas": pandas_run,
                "sql": sql_run,
                "sql_1thread": sql_one_thread,
            },
            args.repeats,
        )
        con.close()

    best = {name: min(values) for name, values in seconds.items()}
    median = {name: statistics.median(values) for name, values in seconds.items()}
    labels = {
        "loops": "build_features, compiled loops (1 core)",
        "pandas": "whole-frame pandas reference (1 core)",
        "sql": f"DuckDB SQL + .df() ({threads} threads)",
        "sql_1thread": "DuckDB SQL + .df() (1 thread)",
    }
    print(f"timing: warm-up, then {args.repeats} interleaved runs each")
    for name, label in labels.items():
        runs = ", ".join(f"{s:.3f}" for s in seconds[name])
        print(f"  {label:<36} best {best[name]:.3f} s  median {median[name]:.3f} s  ({runs})")
    for name in ("pandas", "sql", "sql_1thread"):
        print(
            f"time ratio {labels[name]} / loops: {best[name] / best['loops']:.2f}x (best), "
            f"{median[name] / median['loops']:.2f}x (median)  (> 1: the loops are faster)"
        )
    fastest = min(best, key=best.__getitem__)
    print(f"fastest (best): {labels[fastest]}")


if __name__ == "__main__":
    main()
