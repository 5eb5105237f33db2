"""Backfill 20 simulated sensors × 365 days from the CLI, against one run per partition.

    .venv/bin/python benchmarks/backfill_year.py [--sample 5] [--days 365]

Each figure is a whole process timed from outside, in a fresh AQ_HOME/DAGSTER_HOME:
`aq backfill --days N` (few large runs) versus a sample of `dagster asset materialize
--partition DAY|SENSOR` (one run per partition), extrapolated to all sensor-days. The two are
measured in the same invocation, so their ratio holds on a noisy shared machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

BIN = Path(sys.executable).parent


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--sample", type=int, default=5, help="single-partition runs to time")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="aq-bench-") as tmp:
        env = {
            **os.environ,
            "AQ_HOME": f"{tmp}/aq",
            "DAGSTER_HOME": f"{tmp}/dagster",
            "AQ_SOURCE": "simulated",
            "PYTHONWARNINGS": "ignore",
            "AQ_START_DATE": "2024-01-01",
        }
        env.pop("AQ_LOCATIONS", None)
        timed([str(BIN / "aq"), "discover"], env)
        backfill_s = timed([str(BIN / "aq"), "backfill", "--days", str(args.days)], env)
        with duckdb.connect(f"{tmp}/aq/warehouse.duckdb", read_only=True) as con:
            rows, sensor_days = con.execute(
                "SELECT count(*), count(DISTINCT (sensor_id, date_trunc('day', datetime_utc))) "
                "FROM ingest.raw_readings"
            ).fetchone()
            sensors = con.execute("SELECT count(*) FROM ingest.sensor_catalog").fetchone()[0]
            day, sensor = con.execute(
                "SELECT min(datetime_utc)::DATE, min(sensor_id) FROM ingest.raw_readings"
            ).fetchone()

        per_partition = [
            timed(
                [
                    str(BIN / "dagster"),
                    "asset",
                    "materialize",
                    "-m",
                    "aq_assets.definitions",
                    "--select",
                    "raw_readings",
                    "--partition",
                    f"{day}|{sensor}",
                ],
                env,
            )
            for _ in range(args.sample)
        ]
    partitions = sensors * args.days
    one_run = statistics.median(per_partition)
    extrapolated = one_run * partitions
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(
        f"sensors × days: {sensors} × {args.days} = {partitions} partitions; stored sensor-days with data {sensor_days}"
    )
    print(
        f"aq backfill --days {args.days}: {backfill_s:.1f} s wall, {rows:,} rows, {rows / backfill_s:,.0f} rows/s, "
        f"{partitions / backfill_s:,.0f} partitions/s"
    )
    print(
        f"one run per partition: median {one_run:.2f} s (min {min(per_partition):.2f}, max {max(per_partition):.2f}, "
        f"n={args.sample}) -> {extrapolated / 60:.0f} min extrapolated for {partitions} partitions"
    )
    print(f"ratio (one run per partition / aq backfill): {extrapolated / backfill_s:.0f}×")


if __name__ == "__main__":
    main()
