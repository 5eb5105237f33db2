"""Ingest the whole shared OpenAQ archive mirror, against a plain `pandas.read_csv` loop.

    .venv/bin/python benchmarks/archive_ingest.py [--mirror ../shared/data/openaq-archive]

Three figures over every location and day of the mirror, measured in one invocation so their
ratios hold on a noisy shared machine. Each is a whole process timed from outside
(interpreter start and imports included):

1. floor: `pandas.read_csv(path)` over every file; the speed ingestion should approach.
2. source: `ArchiveSource.list_sensors()` (parameter pm25, all locations), then
   `collect_readings` over every (sensor, UTC day) of each location's range. Processes 1 and 2
   also time their work alone (without start-up and imports), printed as "work".
3. dagster: `aq discover`, then one `aq backfill` per region (Mexico City, Toronto, 3276359)
   in a fresh AQ_HOME/DAGSTER_HOME; rows counted in DuckDB.

A location's UTC days run from the earliest reading of its first file to the latest reading
of its last file (file names give the local days; Toronto's -04:00 offsets shift them).
Check (raises if it fails): stored pm25 rows of location 8000 in January 2021 equal a direct
pandas count from the files. The report also says whether (2) and (3) stored as many rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import duckdb
import pandas as pd

BIN = Path(sys.executable).parent
MIRROR = Path(__file__).resolve().parents[2] / "shared" / "data" / "openaq-archive"
START_DATE = "2020-12-01"
REGIONS: dict[str, tuple[int, ...]] = {
    "Mexico City": (8000, 10534, 10658, 10699, 10722, 10748, 10762, 10802, 10804, 10860),
    "Toronto": (7570, 1274949, 1274950, 1275803, 1612333, 3442588, 3911519),
    "3276359": (3276359,),
}
CHECK_LOCATION, CHECK_MONTH = 8000, (dt.date(2021, 1, 1), dt.date(2021, 2, 1))


# ---- the mirror ------------------------------------------------------------------------


def archive_files(mirror: Path) -> dict[int, list[Path]]:
    """Every file of the mirror by location id, in day order (the layout sorts by day)."""
    files: dict[int, list[Path]] = {}
    for path in sorted(mirror.glob("records/csv.gz/locationid=*/year=*/month=*/*.csv.gz")):
        files.setdefault(int(path.name.split("-")[1]), []).append(path)
    return files


def utc_times(path: Path) -> pd.Series:
    return pd.to_datetime(pd.read_csv(path)["datetime"], utc=True, format="ISO8601")


def utc_day_ranges(files: dict[int, list[Path]]) -> dict[int, tuple[dt.date, dt.date]]:
    """First and last UTC day with readings, per location."""
    return {
        location: (utc_times(paths[0]).min().date(), utc_times(paths[-1]).max().date())
        for location, paths in files.items()
    }


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def expected_check_rows(files: dict[int, list[Path]]) -> int:
    """pm25 readings of CHECK_LOCATION in CHECK_MONTH (UTC), counted from the files."""
    start, end = (pd.Timestamp(day, tz="UTC") for day in CHECK_MONTH)
    total = 0
    for path in files[CHECK_LOCATION]:
        frame = pd.read_csv(path)
        at = pd.to_datetime(frame["datetime"], utc=True, format="ISO8601")
        keep = (frame["parameter"] == "pm25") & frame["value"].notna() & (at >= start) & (at < end)
        total += int(keep.sum())
    return total


# ---- processes --------------------------------------------------------------------------


def timed(command: list[str], env: dict[str, str]) -> tuple[float, str, str]:
    """Wall seconds, stdout and stderr of a process; a failure stops the benchmark."""
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return elapsed, done.stdout, done.stderr


# ---- figures 1 and 2: run in a child process (`--stage`), results as JSON on stdout ----


def floor_stage(mirror: Path) -> dict[str, float]:
    paths = [path for paths in archive_files(mirror).values() for path in paths]
    started = time.perf_counter()
    rows = sum(len(pd.read_csv(path)) for path in paths)
    return {"files": len(paths), "rows": rows, "work_s": time.perf_counter() - started}


def source_stage(mirror: Path) -> dict[str, float]:
    # Imported here: the parent process and the floor never load Dagster.
    from aq_assets.defs.ingest.catalog import sensors_by_id
    from aq_assets.defs.ingest.readings import collect_readings
    from aq_assets.defs.ingest.sources.archive import ArchiveSource

    ranges = utc_day_ranges(archive_files(mirror))
    started = time.perf_counter()
    source = ArchiveSource(root=str(mirror), locations=",".join(map(str, ranges)), parameter="pm25")
    catalog = source.list_sensors()
    discovered = time.perf_counter()
    sensors = sensors_by_id(catalog, [int(s) for s in catalog["sensor_id"]])
    # Day-major within a location, as Dagster orders a run's partitions: each file is parsed
    # once while the location's sensors read it.
    sensor_days = [
        (sensor, day)
        for location, (first, last) in ranges.items()
        for day in days(first, last)
        for sensor in sensors.values()
        if sensor.location_id == location
    ]
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    collected = collect_readings(source, sensor_days, now)
    finished = time.perf_counter()
    return {
        "sensors": len(sensors),
        "sensor_days": len(sensor_days),
        "rows": len(collected.readings),
        "rejected": len(collected.rejected),
        "outside": len(collected.outside_partition),
        "failures": len(collected.failures),
        "discover_s": discovered - started,
        "collect_s": finished - discovered,
    }


STAGES = {"floor": floor_stage, "source": source_stage}


def timed_stage(stage: str, mirror: Path) -> tuple[float, dict[str, float]]:
    """Wall seconds of a child process running `stage`, and what it reported."""
    command = [sys.executable, __file__, "--stage", stage, "--mirror", str(mirror)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    wall, stdout, _ = timed(command, env)
    return wall, json.loads(stdout.splitlines()[-1])


# ---- figure 3: the aq CLI ----------------------------------------------------------------


def dagster_stage(mirror: Path, ranges: dict[int, tuple[dt.date, dt.date]], tmp: str) -> dict:
    """`aq discover`, then one `aq backfill` per region; walls, runs, sensor-days, DuckDB rows."""
    env = {
        **os.environ,
        "AQ_SOURCE": "archive",
        "AQ_ARCHIVE_ROOT": str(mirror),
        "AQ_LOCATIONS": ",".join(map(str, ranges)),
        "AQ_PARAMETER": "pm25",
        "AQ_START_DATE": START_DATE,
        "AQ_HOME": f"{tmp}/aq",
        "DAGSTER_HOME": f"{tmp}/dagster",
        "PYTHONWARNINGS": "ignore",
    }
    warehouse = f"{tmp}/aq/warehouse.duckdb"
    discover_s, _, _ = timed([str(BIN / "aq"), "discover"], env)
    with duckdb.connect(warehouse, read_only=True) as con:
        catalog = con.execute("SELECT location_id, sensor_id FROM ingest.sensor_catalog").df()
    regions = []
    for name, locations in REGIONS.items():
        sensors = catalog.loc[catalog["location_id"].isin(locations), "sensor_id"].tolist()
        first = min(ranges[location][0] for location in locations)
        last = max(ranges[location][1] for location in locations)
        command = [str(BIN / "aq"), "backfill", "--start", str(first), "--end", str(last)]
        wall, _, progress = timed([*command, "--sensors", ",".join(map(str, sensors))], env)
        runs = re.findall(r"run \d+/(\d+)", progress)  # aq's progress lines
        regions.append(
            {
                "name": name,
                "days": f"{first}..{last}",
                "sensors": len(sensors),
                "sensor_days": len(sensors) * len(days(first, last)),
                "runs": int(runs[-1]),
                "wall_s": wall,
            }
        )
    with duckdb.connect(warehouse, read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM ingest.raw_readings").fetchone()[0]
        check_rows = con.execute(
            "SELECT count(*) FROM ingest.raw_readings WHERE sensor_id IN (SELECT sensor_id "
            "FROM ingest.sensor_catalog WHERE location_id = ? AND parameter = 'pm25') "
            "AND datetime_utc >= ? AND datetime_utc < ?",
            [CHECK_LOCATION, *CHECK_MONTH],
        ).fetchone()[0]
    return {"discover_s": discover_s, "regions": regions, "rows": rows, "check_rows": check_rows}


# ---- report ------------------------------------------------------------------------------


def rate(rows: float, seconds: float) -> str:
    return f"{rows / seconds:,.0f} rows/s"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mirror", type=Path, default=MIRROR)
    parser.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    mirror = args.mirror.resolve()
    if args.stage:
        print(json.dumps(STAGES[args.stage](mirror)))
        return

    files = archive_files(mirror)
    unlisted = set(files) - {location for ids in REGIONS.values() for location in ids}
    if unlisted:
        raise SystemExit(f"locations {sorted(unlisted)} are in no region; add them to REGIONS")
    ranges = utc_day_ranges(files)
    expected = expected_check_rows(files)

    floor_wall, floor = timed_stage("floor", mirror)
    source_wall, source = timed_stage("source", mirror)
    with tempfile.TemporaryDirectory(prefix="aq-bench-") as tmp:
        started = time.perf_counter()
        aq = dagster_stage(mirror, ranges, tmp)
        aq_wall = time.perf_counter() - started

    if aq["check_rows"] != expected:
        raise SystemExit(
            f"check failed: {aq['check_rows']} pm25 rows of location {CHECK_LOCATION} stored "
            f"for {CHECK_MONTH[0]:%Y-%m}, the files have {expected}"
        )
    file_rows = floor["rows"]
    backfill_s = sum(region["wall_s"] for region in aq["regions"])
    sensor_days = sum(region["sensor_days"] for region in aq["regions"])
    runs = sum(region["runs"] for region in aq["regions"])
    source_ms = 1000 * source["collect_s"] / source["sensor_days"]
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, pandas {version('pandas')}, dagster {version('dagster')}"
    )
    print(
        f"mirror: {mirror}, {len(files)} locations, {floor['files']:,} files, "
        f"{file_rows:,} file rows; times are whole processes, 'work' excludes start-up"
    )
    print(
        f"1 floor  read_csv loop: {floor_wall:.2f} s ({rate(file_rows, floor_wall)}); "
        f"work {floor['work_s']:.2f} s ({rate(file_rows, floor['work_s'])})"
    )
    print(
        f"2 source list_sensors + collect_readings: {source['sensors']} sensors, "
        f"{source['sensor_days']:,} sensor-days, {source['rows']:,} rows stored of "
        f"{file_rows:,} read (rejected {source['rejected']}, outside day "
        f"{source['outside']}, failed sensor-days {source['failures']})"
    )
    print(
        f"  {source_wall:.2f} s ({rate(file_rows, source_wall)} read, "
        f"{rate(source['rows'], source_wall)} stored); work: list_sensors "
        f"{source['discover_s']:.2f} s + collect_readings {source['collect_s']:.2f} s "
        f"({rate(file_rows, source['collect_s'])} read, {source_ms:.2f} ms/sensor-day)"
    )
    print(
        f"3 dagster aq discover + {len(aq['regions'])} backfills: {aq_wall:.1f} s "
        f"({rate(aq['rows'], aq_wall)} stored), {aq['rows']:,} rows in DuckDB; "
        f"discover {aq['discover_s']:.1f} s"
    )
    for region in aq["regions"]:
        print(
            f"  {region['name']}: {region['days']} × {region['sensors']} sensors = "
            f"{region['sensor_days']:,} sensor-days in {region['runs']} runs, "
            f"{region['wall_s']:.1f} s ({1000 * region['wall_s'] / region['sensor_days']:.1f} "
            "ms/sensor-day)"
        )
    print(
        f"  backfills: {sensor_days:,} sensor-days in {runs} runs, {backfill_s:.1f} s, "
        f"{1000 * backfill_s / sensor_days:.1f} ms/sensor-day, of which the source's work is "
        f"~{source_ms:.2f} ms"
    )
    print(
        f"ratios (time / floor time, same files): source {source_wall / floor_wall:.1f}× "
        f"(work: collect_readings {source['collect_s'] / floor['work_s']:.1f}×, "
        f"list_sensors + collect {(source['discover_s'] + source['collect_s']) / floor['work_s']:.1f}×); "
        f"dagster {aq_wall / floor_wall:.0f}×"
    )
    print(
        f"checks: location {CHECK_LOCATION} pm25 {CHECK_MONTH[0]:%Y-%m} stored "
        f"{aq['check_rows']:,} = files {expected:,}; rows stored source {source['rows']:,} "
        f"{'=' if source['rows'] == aq['rows'] else '!= (MISMATCH)'} dagster {aq['rows']:,}"
    )


if __name__ == "__main__":
    main()
