"""The archive source end to end: discovery and a 30-day backfill of the Mexico City pm25
sensors through Dagster, checked against the files themselves."""

import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from aq_assets_tests.conftest import SHARED_DATA

MIRROR = SHARED_DATA / "openaq-archive"
MEXICO_CITY = [8000, 10534, 10658, 10699, 10722, 10748, 10762, 10802, 10804, 10860]
FIRST, LAST = "2021-01-01", "2021-01-30"


def aq(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [str(Path(sys.executable).with_name("aq")), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def expected_rows_from_files() -> pd.DataFrame:
    """pm25 rows per sensor whose UTC time falls in FIRST..LAST, read straight from the files
    (Mexico City files carry +00:00, so local-day files are UTC days plus neighbours)."""
    frames = []
    for location in MEXICO_CITY:
        for day in pd.date_range(
            pd.Timestamp(FIRST) - pd.Timedelta(days=1), pd.Timestamp(LAST) + pd.Timedelta(days=1)
        ):
            path = (
                MIRROR
                / f"records/csv.gz/locationid={location}/year={day:%Y}/month={day:%m}/location-{location}-{day:%Y%m%d}.csv.gz"
            )
            if path.exists():
                frames.append(pd.read_csv(path))
    rows = pd.concat(frames)
    rows["utc"] = pd.to_datetime(rows["datetime"], utc=True).dt.tz_localize(None)
    rows = rows[
        (rows.parameter == "pm25")
        & (rows.utc >= FIRST)
        & (rows.utc < pd.Timestamp(LAST) + pd.Timedelta(days=1))
    ]
    rows = rows[pd.to_numeric(rows["value"], errors="coerce").notna()]
    return rows.groupby("sensors_id").size()


@pytest.mark.slow(minutes=1.5)
def test_a_month_of_mexico_city_pm25_matches_the_files(tmp_path):
    env = {
        **os.environ,
        "AQ_SOURCE": "archive",
        "AQ_ARCHIVE_ROOT": str(MIRROR),
        "AQ_LOCATIONS": ",".join(map(str, MEXICO_CITY)),
        "AQ_START_DATE": "2020-12-01",
        "AQ_PARAMETER": "pm25",
        "AQ_HOME": str(tmp_path / "aq"),
        "DAGSTER_HOME": str(tmp_path / "dagster"),
        "PYTHONWARNINGS": "ignore",
    }
    aq("discover", env=env)
    warehouse = tmp_path / "aq" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        pm25 = [
            r[0]
            for r in con.execute(
                "SELECT sensor_id FROM ingest.sensor_catalog WHERE parameter = 'pm25' ORDER BY 1"
            ).fetchall()
        ]
        parameters = {
            r[0]
            for r in con.execute("SELECT DISTINCT parameter FROM ingest.sensor_catalog").fetchall()
        }
    expected = expected_rows_from_files()
    assert pm25 == sorted(expected.index)  # every location with pm25 in the files, no other
    assert {"pm25", "pm10", "o3", "no2"} <= parameters  # co-located sensors are discovered too

    out = aq(
        "backfill", "--start", FIRST, "--end", LAST, "--sensors", ",".join(map(str, pm25)), env=env
    )
    assert f"{30 * len(pm25)}/{30 * len(pm25)} sensor-days" in out
    out_again = aq(
        "backfill",
        "--start",
        "2021-01-10",
        "--end",
        "2021-01-12",
        "--sensors",
        str(pm25[0]),
        env=env,
    )
    assert "3/3 sensor-days" in out_again  # re-ingesting replaces, never duplicates

    with duckdb.connect(str(warehouse), read_only=True) as con:
        stored = con.execute(
            "SELECT sensor_id, count(*) FROM ingest.raw_readings GROUP BY 1 ORDER BY 1"
        ).fetchall()
        bounds = con.execute(
            "SELECT min(datetime_utc), max(datetime_utc), any_value(units) FROM ingest.raw_readings"
        ).fetchone()
    assert dict(stored) == expected.to_dict()
    assert bounds[0] >= pd.Timestamp(FIRST) and bounds[1] < pd.Timestamp(LAST) + pd.Timedelta(
        days=1
    )
    assert bounds[2] == "µg/m³"
