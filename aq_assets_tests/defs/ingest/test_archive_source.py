"""ArchiveSource against the real archive mirror in ../shared/data/openaq-archive.

Expected values are computed independently with plain pandas over the raw files, so a
test fails when the source reads a file differently from what is in it.
"""

from __future__ import annotations

import datetime as dt
import gzip
import shutil
from pathlib import Path
from xml.sax.saxutils import escape

import httpx
import pandas as pd
import pytest

from aq_assets.defs.ingest.sources import archive
from aq_assets.defs.ingest.sources.archive import ArchiveSource
from aq_assets.defs.ingest.sources.base import (
    CATALOG_COLUMNS,
    READING_COLUMNS,
    Sensor,
    SourceError,
    SourceUnreachable,
)
from aq_assets_tests.conftest import SHARED_DATA

MIRROR = SHARED_DATA / "openaq-archive"
BUCKET = "https://openaq-data-archive.s3.amazonaws.com"
HEADER = "location_id,sensors_id,location,datetime,lat,lon,parameter,units,value"

NEZA = 8000  # Mexico City, timestamps in UTC
TORONTO = 7570  # Toronto Downtown, local time at -04:00
NEZA_PM25 = Sensor(8000002, NEZA, "pm25", "µg/m³")
TORONTO_PM25 = Sensor(7570002, TORONTO, "pm25", "µg/m³")

pytestmark = pytest.mark.skipif(not MIRROR.is_dir(), reason=f"archive mirror not at {MIRROR}")


@pytest.fixture(autouse=True)
def _fresh_cache():
    # Parsed files are cached per process; tests that rewrite files must not see old parses.
    archive._load_file.cache_clear()
    yield
    archive._load_file.cache_clear()


def local_source(locations: str = f"{NEZA}", root: Path = MIRROR, **config) -> ArchiveSource:
    return ArchiveSource(root=str(root), locations=locations, **config)


def file_path(root: Path, location_id: int, day: dt.date) -> Path:
    return (
        root
        / f"records/csv.gz/locationid={location_id}/year={day:%Y}/month={day:%m}"
        / f"location-{location_id}-{day:%Y%m%d}.csv.gz"
    )


def raw_location(location_id: int) -> pd.DataFrame:
    """Every raw row of a location, read the plain way, with the local day of its file."""
    frames = []
    for path in sorted(MIRROR.glob(f"records/csv.gz/locationid={location_id}/*/*/*.csv.gz")):
        frame = pd.read_csv(path)
        frame["file_day"] = path.name.split("-")[-1].split(".")[0]
        frames.append(frame)
    raw = pd.concat(frames, ignore_index=True)
    raw["datetime_utc"] = pd.to_datetime(raw["datetime"], utc=True).dt.tz_localize(None)
    return raw


def copy_location(tmp_path: Path, location_id: int) -> Path:
    folder = f"records/csv.gz/locationid={location_id}"
    shutil.copytree(MIRROR / folder, tmp_path / folder)
    return tmp_path


def write_csv_gz(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


def read_lines(path: Path) -> list[str]:
    return gzip.decompress(path.read_bytes()).decode().splitlines()


def assert_reading_dtypes(frame: pd.DataFrame) -> None:
    assert list(frame.columns) == list(READING_COLUMNS)
    assert {name: str(dtype) for name, dtype in frame.dtypes.items()} == READING_COLUMNS


# ---- configuration ---------------------------------------------------------------------


@pytest.mark.parametrize("locations", ["", " , ", None])
def test_missing_locations_is_a_clear_error(locations):
    source = ArchiveSource(
        root=str(MIRROR), **({} if locations is None else {"locations": locations})
    )
    with pytest.raises(SourceError, match="AQ_LOCATIONS"):
        source.list_sensors()
    with pytest.raises(SourceError, match="AQ_LOCATIONS"):
        source.fetch_day(NEZA_PM25, dt.date(2021, 1, 5))


def test_non_numeric_location_is_named():
    with pytest.raises(SourceError, match="Toronto"):
        local_source("8000,Toronto").list_sensors()


def test_root_without_records_is_an_error_not_empty_data(tmp_path):
    with pytest.raises(SourceError, match="records/"):
        local_source(root=tmp_path).fetch_day(NEZA_PM25, dt.date(2021, 1, 5))


def test_unknown_locations_only_is_an_error():
    with pytest.raises(SourceError, match="no files"):
        local_source("999999999").list_sensors()


# ---- discovery -------------------------------------------------------------------------


def test_discovers_every_sensor_of_a_mexico_city_location():
    catalog = local_source(f"{NEZA}").list_sensors()
    raw = raw_location(NEZA)

    assert {name: str(dtype) for name, dtype in catalog.dtypes.items()} == CATALOG_COLUMNS
    expected = raw.groupby("sensors_id")[["parameter", "units"]].last().sort_index()
    assert catalog["sensor_id"].tolist() == expected.index.tolist()
    assert catalog["parameter"].tolist() == expected["parameter"].tolist()
    assert catalog["units"].tolist() == expected["units"].tolist()
    assert set(catalog["parameter"]) == {"pm25", "no2", "co", "so2", "o3"}
    assert dict(zip(catalog["parameter"], catalog["units"], strict=True))["pm25"] == "µg/m³"
    assert set(catalog["location_id"]) == {NEZA}
    assert set(catalog["location_name"]) == {"Nezahualcóyotl"}
    assert catalog["latitude"].round(4).eq(19.3939).all()
    assert catalog["longitude"].round(4).eq(-99.0283).all()
    assert set(catalog["timezone"]) == {"+00:00"}
    assert set(catalog["source"]) == {"archive"}
    first_file, last_file = raw["file_day"].min(), raw["file_day"].max()
    assert (
        catalog["first_seen_utc"] == raw.loc[raw.file_day == first_file].datetime_utc.min()
    ).all()
    assert (catalog["last_seen_utc"] == raw.loc[raw.file_day == last_file].datetime_utc.max()).all()


def test_local_discovery_finds_a_sensor_seen_only_mid_history(tmp_path):
    # 8000 has no pm25 in its first 17 files; drop it from the last file too.
    root = copy_location(tmp_path, NEZA)
    last = sorted(root.glob(f"records/csv.gz/locationid={NEZA}/*/*/*.gz"))[-1]
    write_csv_gz(last, [line for line in read_lines(last) if ",pm25," not in line])
    catalog = local_source(root=root).list_sensors()
    assert NEZA_PM25.sensor_id in set(catalog["sensor_id"])


def test_discovery_keeps_only_locations_with_the_parameter():
    # 8000 has no pm10; 10658 has pm10 and five other parameters.
    catalog = local_source("8000,10658", parameter="pm10").list_sensors()
    assert set(catalog["location_id"]) == {10658}
    assert set(catalog["parameter"]) == {"pm10", "pm25", "no2", "co", "so2", "o3"}


def test_discovery_of_toronto_and_a_sensor_without_coordinates():
    catalog = local_source(f"{TORONTO},3276359").list_sensors()
    toronto = catalog[catalog.location_id == TORONTO]
    assert set(toronto["timezone"]) == {"-04:00"}
    assert set(toronto["parameter"]) == {"pm25", "no2", "o3", "no", "nox"}
    assert toronto["first_seen_utc"].iloc[0] == pd.Timestamp("2025-09-01 01:00")
    low_cost = catalog[catalog.location_id == 3276359]
    assert low_cost["latitude"].isna().all() and low_cost["longitude"].isna().all()
    assert set(low_cost["location_name"]) == {"location-3276359"}
    assert {"pm25", "pm10", "um003", "temperature"} <= set(low_cost["parameter"])
    assert set(low_cost["units"]) >= {"µg/m³", "particles/cm³", "%", "c"}


# ---- readings --------------------------------------------------------------------------


def test_toronto_utc_day_joins_two_local_files_exactly():
    day = dt.date(2025, 9, 10)
    result = local_source(f"{TORONTO}").fetch_day(TORONTO_PM25, day)

    raw = raw_location(TORONTO)
    expected = raw[
        (raw.sensors_id == TORONTO_PM25.sensor_id)
        & (raw.datetime_utc >= pd.Timestamp(day))
        & (raw.datetime_utc < pd.Timestamp(day) + pd.Timedelta(days=1))
    ].sort_values("datetime_utc")
    # At -04:00 the UTC day is 20:00 on local 9 Sept to 20:00 on local 10 Sept.
    assert set(expected["file_day"]) == {"20250909", "20250910"}

    readings = result.readings
    assert_reading_dtypes(readings)
    assert result.rejected == []
    assert readings["datetime_utc"].tolist() == expected["datetime_utc"].tolist()
    assert readings["value"].tolist() == expected["value"].tolist()
    assert readings["datetime_utc"].min() >= pd.Timestamp(day)
    assert readings["datetime_utc"].max() < pd.Timestamp(day) + pd.Timedelta(days=1)
    assert set(readings["sensor_id"]) == {TORONTO_PM25.sensor_id}
    assert set(readings["location_id"]) == {TORONTO}
    assert set(readings["units"]) == {"µg/m³"} and set(readings["source"]) == {"archive"}


@pytest.mark.parametrize("day", [dt.date(2021, 1, d) for d in (4, 5, 6, 7)])
def test_mexico_city_pm25_rows_match_the_file(day):
    frame = pd.read_csv(file_path(MIRROR, NEZA, day))
    in_file = frame[frame.sensors_id == NEZA_PM25.sensor_id]

    readings = local_source().fetch_day(NEZA_PM25, day).readings

    assert len(readings) == len(in_file) > 0
    assert readings["value"].tolist() == in_file["value"].tolist()
    assert (readings["datetime_utc"].dt.date == day).all()


def test_all_sensors_of_a_month_match_a_plain_read():
    days = [dt.date(2021, 2, 1) + dt.timedelta(days=i) for i in range(28)]
    source = local_source()
    sensors = [
        Sensor(row.sensor_id, NEZA, row.parameter, row.units)
        for row in source.list_sensors().itertuples()
    ]
    got = pd.concat([source.fetch_day(sensor, day).readings for day in days for sensor in sensors])
    raw = raw_location(NEZA)
    february = raw[raw.datetime_utc.dt.strftime("%Y-%m") == "2021-02"]
    assert len(got) == len(february)
    assert got["value"].sum() == pytest.approx(february["value"].sum())


def test_each_file_is_parsed_once_for_all_sensors_and_days():
    source = local_source()
    sensors = [Sensor(NEZA * 1000 + code, NEZA, "x", "x") for code in (2, 7, 8, 9, 10)]
    for day in (dt.date(2021, 1, 5), dt.date(2021, 1, 6)):
        for sensor in sensors:
            source.fetch_day(sensor, day)
    # UTC files: each partition needs only its own file, two days -> two parses.
    info = archive._load_file.cache_info()
    assert info.misses == 2
    assert info.hits == 8


def test_missing_days_are_empty_not_errors():
    source = local_source("10804")
    sensor = Sensor(10804002, 10804, "pm25", "µg/m³")
    assert not file_path(MIRROR, 10804, dt.date(2021, 1, 21)).exists()
    for day in (dt.date(2021, 1, 21), dt.date(2019, 6, 1)):
        result = source.fetch_day(sensor, day)
        assert result.readings.empty
        assert result.rejected == []
        assert_reading_dtypes(result.readings)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"this is not gzip at all", "gzip"),
        (gzip.compress(HEADER.encode() + b"\n8000,1,x,2021")[:-9], "gzip"),
        (gzip.compress(b"\x00\xff\xfe garbage \x80\x81\n"), "columns|CSV"),
        (gzip.compress(b"location_id,sensors_id,value\n7570,7570002,3\n"), "lacks columns"),
    ],
    # Named, not shown: a gzip header holds the time it was made, and both test workers must
    # collect the same test ids.
    ids=["not-gzip", "truncated", "not-csv", "lacks-columns"],
)
def test_corrupt_file_fails_its_partition_only(tmp_path, content, reason):
    root = copy_location(tmp_path, TORONTO)
    bad_day, good_day = dt.date(2025, 9, 15), dt.date(2025, 9, 20)
    bad_file = file_path(root, TORONTO, bad_day)
    bad_file.write_bytes(content)
    source = local_source(f"{TORONTO}", root=root)

    with pytest.raises(SourceError, match=reason) as error:
        source.fetch_day(TORONTO_PM25, bad_day)
    assert str(bad_file) in str(error.value)

    expected = local_source(f"{TORONTO}").fetch_day(TORONTO_PM25, good_day).readings
    got = source.fetch_day(TORONTO_PM25, good_day).readings
    pd.testing.assert_frame_equal(got, expected)
    assert len(got) > 0
    # Discovery skips the corrupt file instead of losing the whole catalog.
    assert TORONTO_PM25.sensor_id in set(source.list_sensors()["sensor_id"])


@pytest.mark.parametrize(
    "content",
    [gzip.compress(b""), gzip.compress(HEADER.encode() + b"\n")],
    ids=["empty", "header-only"],
)
def test_an_empty_or_header_only_file_is_no_data_for_its_own_day_only(tmp_path, content):
    """Its day keeps what the previous local day's file holds of it (Toronto is UTC-4), and
    a corrupt file on the other side, read only because this one gives no offset, fails its
    own day, not this one."""
    root = copy_location(tmp_path, TORONTO)
    day = dt.date(2025, 9, 15)
    file_path(root, TORONTO, day).write_bytes(content)
    file_path(root, TORONTO, day + dt.timedelta(days=1)).write_bytes(b"this is not gzip at all")

    got = local_source(f"{TORONTO}", root=root).fetch_day(TORONTO_PM25, day).readings

    full = local_source(f"{TORONTO}").fetch_day(TORONTO_PM25, day).readings
    assert 0 < len(got) < len(full)
    assert set(got["datetime_utc"]) == set(full["datetime_utc"][full["datetime_utc"].dt.hour < 4])


def test_a_line_with_an_extra_field_is_a_rejected_row_not_a_spoiled_file(tmp_path):
    root = copy_location(tmp_path, NEZA)
    day = dt.date(2021, 1, 5)
    path = file_path(root, NEZA, day)
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    at = next(i for i, line in enumerate(lines) if line.split(",")[1] == str(NEZA_PM25.sensor_id))
    lines[at] += ",an extra field"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))

    got = local_source(f"{NEZA}", root=root).fetch_day(NEZA_PM25, day)

    full = local_source(f"{NEZA}").fetch_day(NEZA_PM25, day)
    assert len(got.readings) == len(full.readings) - 1
    (rejected,) = [line for line in got.rejected if "an extra field" in line]
    assert f"line {at + 1}:" in rejected and "10 fields, the header has 9" in rejected


def test_malformed_rows_are_rejected_with_a_reason_and_sentinels_are_kept(tmp_path):
    root = copy_location(tmp_path, NEZA)
    day = dt.date(2021, 1, 5)
    path = file_path(root, NEZA, day)
    lines = read_lines(path)
    pm25 = [i for i, line in enumerate(lines) if ",pm25," in line]
    first, second, third, fourth = pm25[:4]

    def with_value(line: str, value: str) -> str:
        return line.rsplit(",", 1)[0] + "," + value

    lines[first] = with_value(lines[first], "abc")
    lines[second] = with_value(lines[second], "-999")
    lines[third] = lines[third].replace("2021-01-05T", "2021-13-05T")
    lines[fourth] = with_value(lines[fourth], "")
    lines.append(lines[pm25[5]])  # a repeated hour
    write_csv_gz(path, lines)

    result = local_source(root=root).fetch_day(NEZA_PM25, day)

    assert len(result.rejected) == 3
    assert all(path.name in line for line in result.rejected)
    abc, bad_datetime, empty = result.rejected
    assert f"row {first}:" in abc and ",abc" in abc and "'abc' is not a number" in abc
    assert "2021-13-05" in bad_datetime and "not ISO 8601" in bad_datetime
    assert "value is empty" in empty
    readings = result.readings
    original = pd.read_csv(file_path(MIRROR, NEZA, day))
    assert len(readings) == (original.sensors_id == NEZA_PM25.sensor_id).sum() - 3 + 1
    assert -999.0 in readings["value"].tolist()
    assert readings["datetime_utc"].duplicated().sum() == 1
    assert readings["datetime_utc"].is_monotonic_increasing
    # Rejections belong to the sensor whose row it was.
    assert (
        local_source(root=root).fetch_day(Sensor(8000007, NEZA, "no2", "ppm"), day).rejected == []
    )


def test_each_malformed_row_is_reported_by_exactly_one_partition(tmp_path):
    # Toronto files are local days at -04:00, so each UTC partition reads two files.
    root = copy_location(tmp_path, TORONTO)
    path = file_path(root, TORONTO, dt.date(2025, 9, 10))
    lines = read_lines(path)
    late = next(i for i, line in enumerate(lines) if "T22:00:00-04:00" in line and ",pm25," in line)
    early = next(
        i for i, line in enumerate(lines) if "T10:00:00-04:00" in line and ",pm25," in line
    )
    lines[late] = lines[late].rsplit(",", 1)[0] + ",n/a"  # 02:00 UTC on 11 Sept
    lines[early] = lines[early].replace("2025-09-10T10:00:00-04:00", "yesterday")
    write_csv_gz(path, lines)
    source = local_source(f"{TORONTO}", root=root)

    rejected = {
        day: source.fetch_day(TORONTO_PM25, dt.date(2025, 9, day)).rejected for day in (9, 10, 11)
    }

    assert rejected[9] == []
    assert len(rejected[10]) == 1 and "'yesterday'" in rejected[10][0]
    assert len(rejected[11]) == 1 and "'n/a' is not a number" in rejected[11][0]


def test_a_rewritten_file_is_read_again(tmp_path):
    root = copy_location(tmp_path, NEZA)
    day = dt.date(2021, 1, 5)
    source = local_source(root=root)
    before = source.fetch_day(NEZA_PM25, day).readings
    path = file_path(root, NEZA, day)
    write_csv_gz(path, [line for line in read_lines(path) if ",pm25," not in line][:-1])
    assert len(before) > 0
    assert source.fetch_day(NEZA_PM25, day).readings.empty


def test_positive_offset_reads_the_next_local_file(tmp_path):
    # No real file here has a positive offset: Asia/Kolkata (+05:30) in a tiny archive.
    loc, sid = 42, 42002

    def row(local: str, value: float) -> str:
        return f"{loc},{sid},Delhi,{local}+05:30,28.6,77.2,pm25,µg/m³,{value}"

    write_csv_gz(
        file_path(tmp_path, loc, dt.date(2024, 3, 1)),
        [HEADER, row("2024-03-01T04:00:00", 1), row("2024-03-01T06:00:00", 2)],
    )
    write_csv_gz(
        file_path(tmp_path, loc, dt.date(2024, 3, 2)),
        [HEADER, row("2024-03-02T05:00:00", 3), row("2024-03-02T05:30:00", 4)],
    )
    source = local_source(str(loc), root=tmp_path)
    readings = source.fetch_day(Sensor(sid, loc, "pm25", "µg/m³"), dt.date(2024, 3, 1)).readings
    # 06:00+05:30 is 00:30 UTC on 1 March; 05:00+05:30 on 2 March is 23:30 UTC on 1 March.
    assert readings["value"].tolist() == [2.0, 3.0]
    assert readings["datetime_utc"].tolist() == [
        pd.Timestamp("2024-03-01 00:30"),
        pd.Timestamp("2024-03-01 23:30"),
    ]
    assert source.list_sensors()["timezone"].tolist() == ["+05:30"]


# ---- HTTPS -----------------------------------------------------------------------------


def mirror_transport(
    root: Path = MIRROR, page_size: int = 100, objects: list[str] | None = None
) -> httpx.MockTransport:
    """Serves the local mirror the way S3 does: objects, 404 NoSuchKey, ListObjectsV2 pages.
    Object paths requested are appended to `objects`."""

    def handle(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        params = request.url.params
        if params.get("list-type") == "2":
            prefix = params["prefix"]
            keys = sorted(p.relative_to(root).as_posix() for p in root.glob(f"{prefix}**/*.gz"))
            start = int(params.get("continuation-token", "0"))
            page = keys[start : start + page_size]
            more = start + page_size < len(keys)
            body = "".join(f"<Contents><Key>{escape(key)}</Key></Contents>" for key in page)
            token = f"<NextContinuationToken>{start + page_size}</NextContinuationToken>"
            return httpx.Response(
                200,
                content=(
                    '<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
                    f"<IsTruncated>{str(more).lower()}</IsTruncated>{body}"
                    f"{token if more else ''}</ListBucketResult>"
                ).encode(),
            )
        path = root / request.url.path.lstrip("/")
        if objects is not None:
            objects.append(path.name)
        if path.is_file():
            return httpx.Response(200, content=path.read_bytes())
        return httpx.Response(404, content=b"<Error><Code>NoSuchKey</Code></Error>")

    return httpx.MockTransport(handle)


def https_source(locations: str, transport: httpx.BaseTransport, **config) -> ArchiveSource:
    source = ArchiveSource(root=BUCKET + "/", locations=locations, **config)
    source._transport = transport
    return source


@pytest.mark.parametrize(
    ("sensor", "day"),
    [
        (TORONTO_PM25, dt.date(2025, 9, 10)),
        (TORONTO_PM25, dt.date(2025, 9, 1)),  # first UTC day: local 31 Aug + 1 Sept
        (NEZA_PM25, dt.date(2021, 1, 5)),
        (NEZA_PM25, dt.date(2019, 6, 1)),  # no such file: 404
    ],
)
def test_https_root_gives_the_same_frame_as_the_local_root(sensor, day):
    locations = f"{sensor.location_id}"
    expected = local_source(locations).fetch_day(sensor, day)
    archive._load_file.cache_clear()
    got = https_source(locations, mirror_transport()).fetch_day(sensor, day)
    pd.testing.assert_frame_equal(got.readings, expected.readings)
    assert got.rejected == expected.rejected


def test_https_discovery_lists_then_reads_three_files_and_matches_local():
    # 3276359 has 310 files: listing takes four pages of 100 keys.
    locations = f"{TORONTO},3276359"
    expected = local_source(locations).list_sensors()
    objects: list[str] = []
    got = https_source(locations, mirror_transport(objects=objects)).list_sensors()
    pd.testing.assert_frame_equal(got, expected)
    # Three files per location: the first, and the first and last of the latest month.
    assert sorted(objects) == [
        "location-3276359-20241231.csv.gz",
        "location-3276359-20251201.csv.gz",
        "location-3276359-20251218.csv.gz",
        "location-7570-20250831.csv.gz",
        "location-7570-20251001.csv.gz",
        "location-7570-20251003.csv.gz",
    ]


def test_https_retries_server_errors_then_succeeds(monkeypatch):
    monkeypatch.setattr(archive, "_RETRY_DELAYS", (0.0, 0.0, 0.0))
    mirror = mirror_transport()
    calls = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        if len(calls) <= 2:
            return httpx.Response(503)
        return mirror.handle_request(request)

    day = dt.date(2021, 1, 5)
    got = https_source(f"{NEZA}", httpx.MockTransport(flaky)).fetch_day(NEZA_PM25, day)
    assert len(calls) == 3
    expected = local_source().fetch_day(NEZA_PM25, day).readings
    pd.testing.assert_frame_equal(got.readings, expected)


def test_https_gives_up_after_retries_with_a_clear_error(monkeypatch):
    monkeypatch.setattr(archive, "_RETRY_DELAYS", (0.0, 0.0))
    calls = []

    def timeout(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    source = https_source(f"{NEZA}", httpx.MockTransport(timeout))
    with pytest.raises(
        SourceUnreachable, match=r"unreachable at .* since .*\(ReadTimeout"
    ) as error:
        source.fetch_day(NEZA_PM25, dt.date(2021, 1, 5))
    assert "location-8000-20210105.csv.gz" in str(error.value)
    assert len(calls) == 3


def test_https_5xx_after_retries_is_an_error_not_unreachable(monkeypatch):
    monkeypatch.setattr(archive, "_RETRY_DELAYS", (0.0, 0.0))
    source = https_source(f"{NEZA}", httpx.MockTransport(lambda r: httpx.Response(503)))

    with pytest.raises(SourceError, match=r"failed 3 times \(HTTP 503") as error:
        source.fetch_day(NEZA_PM25, dt.date(2021, 1, 5))
    assert not isinstance(error.value, SourceUnreachable)


def test_https_forbidden_is_missing_data_and_other_4xx_is_an_error():
    forbidden = https_source(f"{NEZA}", httpx.MockTransport(lambda r: httpx.Response(403)))
    assert forbidden.fetch_day(NEZA_PM25, dt.date(2021, 1, 5)).readings.empty
    bad = https_source(f"{NEZA}", httpx.MockTransport(lambda r: httpx.Response(400)))
    with pytest.raises(SourceError, match="HTTP 400"):
        bad.fetch_day(NEZA_PM25, dt.date(2021, 1, 5))


def test_https_missing_bucket_is_an_error_not_empty_data():
    body = b"<Error><Code>NoSuchBucket</Code></Error>"
    source = https_source(
        f"{NEZA}", httpx.MockTransport(lambda r: httpx.Response(404, content=body))
    )
    with pytest.raises(SourceError, match="no such bucket"):
        source.fetch_day(NEZA_PM25, dt.date(2021, 1, 5))


def test_humidity_under_its_other_openaq_name_is_stored_and_used_as_relative_humidity(tmp_path):
    """Some networks report relative humidity as OpenAQ's `humidity` (parameter 134): the
    catalog and the stored readings name it `relativehumidity`, and the forecaster reads it
    as that covariate, with the values the file holds."""
    from aq_assets.defs.ingest.catalog import merge_catalog, sensors_by_id
    from aq_assets.defs.ingest.readings import collect_readings
    from aq_assets.ml.cleaning import clean_readings
    from aq_assets.ml.features import FeatureSpec, build_features

    low_cost = 1612333  # Toronto, an AirGradient sensor with relativehumidity
    renamed = tmp_path / "renamed"
    copy_location(renamed, low_cost)
    day = dt.date(2025, 9, 10)
    for path in (renamed / f"records/csv.gz/locationid={low_cost}").rglob("*.csv.gz"):
        lines = read_lines(path)
        write_csv_gz(path, [line.replace(",relativehumidity,", ",humidity,") for line in lines])
    assert ",humidity," in "\n".join(read_lines(file_path(renamed, low_cost, day)))

    now = pd.Timestamp("2025-10-05")

    def stored(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        source = local_source(f"{low_cost}", root=root)
        catalog = merge_catalog(None, source.list_sensors(), now)
        sensors = sensors_by_id(catalog, list(catalog["sensor_id"])).values()
        return catalog, collect_readings(source, [(s, day) for s in sensors], now).readings

    catalog, readings = stored(renamed)
    original_catalog, original = stored(copy_location(tmp_path / "original", low_cost))

    assert "humidity" not in set(catalog["parameter"]) | set(readings["parameter"])
    assert sorted(catalog["parameter"]) == sorted(original_catalog["parameter"])
    pd.testing.assert_frame_equal(readings, original)
    hourly, _ = clean_readings(readings)
    pm25 = sorted(hourly.loc[hourly["parameter"] == "pm25", "sensor_id"].unique())
    frame = build_features(hourly, FeatureSpec(parameter="pm25").with_sensors(pm25))
    rh = hourly[hourly["parameter"] == "relativehumidity"].set_index("datetime_utc")["value"]
    assert frame["relativehumidity_now"].notna().sum() >= 20
    shown = frame.set_index("datetime_utc")["relativehumidity_now"].dropna()
    assert shown.tolist() == pytest.approx(rh.loc[shown.index].tolist())
