"""Readings from the OpenAQ public S3 archive, from a local mirror or over HTTPS.

The archive keeps one gzip CSV per location and LOCAL day:
`records/csv.gz/locationid=N/year=YYYY/month=MM/location-N-YYYYMMDD.csv.gz`, columns
`location_id,sensors_id,location,datetime,lat,lon,parameter,units,value`, with `datetime` in
ISO 8601 with the local UTC offset. A UTC-day partition therefore reads the file named for
that day plus the neighbour on the side of the offset (see `ArchiveSource._files_for_utc_day`).

Parsed files are cached per process (`_load_file`), so the 5-8 sensors of one location and
adjacent days of a backfill parse each file once.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import re
import time
import warnings
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
from dagster import get_dagster_logger
from pydantic import PrivateAttr

from aq_assets.defs.ingest.sources.base import (
    CATALOG_COLUMNS,
    READING_COLUMNS,
    DayReadings,
    ReadingsSource,
    Sensor,
    SourceError,
    SourceUnreachable,
    typed_frame,
    utc_day_bounds,
)

ARCHIVE_URL = "https://openaq-data-archive.s3.amazonaws.com"
ARCHIVE_COLUMNS = (
    "location_id",
    "sensors_id",
    "location",
    "datetime",
    "lat",
    "lon",
    "parameter",
    "units",
    "value",
)

# Seconds to wait before each retry of a timed-out or 5xx request; read at call time so tests
# can patch it.
_RETRY_DELAYS: tuple[float, ...] = (1.0, 3.0, 9.0)
_HTTP_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_FILE_NAME = re.compile(r"location-(\d+)-(\d{8})\.csv\.gz$")
# Text columns kept per parsed file: parameter/units for readings, the rest for discovery.
_KEPT_COLUMNS = ("parameter", "units", "location", "lat", "lon", "datetime")


class ArchiveSource(ReadingsSource):
    """Hourly readings from the OpenAQ S3 archive (`AQ_SOURCE=archive`).

    `root` is a local directory that contains `records/` (a mirror, e.g.
    `../shared/data/openaq-archive`) or the HTTPS base URL of the public bucket. No
    credentials are used. `locations` lists the OpenAQ location ids to read
    (`AQ_LOCATIONS`), because the archive has no search by area or parameter.
    """

    root: str
    locations: str = ""

    # Injected httpx transport (tests pass `httpx.MockTransport`); None means the network.
    _transport: httpx.BaseTransport | None = PrivateAttr(default=None)

    @property
    def name(self) -> str:
        return "archive"

    # ---- the contract ------------------------------------------------------------------

    def list_sensors(self) -> pd.DataFrame:
        """All sensors of the configured locations that measure `parameter`.

        Local root: every file of the location is read (about 1 ms a file), so a sensor that
        reported on only a few days is still found. HTTPS root: the location's files are
        listed (S3 ListObjectsV2) and only the first file, and the first and last file of the
        latest month, are read; a sensor that reported only in between is missed.
        first_seen_utc/last_seen_utc are per location: the earliest reading of its first file
        and the latest reading of its last file.
        """
        log = get_dagster_logger()
        location_ids = self._location_ids()
        self._check_root()
        frames, with_files = [], []
        for location_id in location_ids:
            days = self._list_days(location_id)
            if not days:
                log.warning(f"archive: no files for location {location_id} under {self.root}")
                continue
            with_files.append(location_id)
            files = self._discovery_files(location_id, days)
            if not files:
                log.warning(f"archive: no readable rows for location {location_id}; skipped")
                continue
            catalog = _location_catalog(location_id, files, self.parameter)
            if catalog is None:
                log.info(f"archive: location {location_id} has no {self.parameter!r}; skipped")
                continue
            frames.append(catalog)
        if not with_files:
            raise SourceError(
                f"The archive at {self.root} has no files for any of AQ_LOCATIONS="
                f"{self.locations!r}; check the location ids and the archive root."
            )
        return typed_frame(pd.concat(frames) if frames else {}, CATALOG_COLUMNS)

    def fetch_day(self, sensor: Sensor, day: dt.date) -> DayReadings:
        self._location_ids()
        self._check_root()
        if isinstance(day, dt.datetime):
            day = day.date()
        start, end = (np.datetime64(bound, "ns") for bound in utc_day_bounds(day))
        picks: list[tuple[_ArchiveFile, np.ndarray]] = []
        rejected: list[str] = []
        for file in self._files_for_utc_day(sensor.location_id, day):
            at = file.columns["datetime_utc"]
            keep = (file.columns["sensor_id"] == sensor.sensor_id) & (at >= start) & (at < end)
            picks.append((file, np.flatnonzero(keep)))
            rejected.extend(
                bad.text
                for bad in file.bad_rows
                if bad.utc_day == day
                and (
                    bad.sensor_id == sensor.sensor_id
                    or (bad.sensor_id is None and bad.parameter == sensor.parameter)
                )
            )

        def pick(column: str) -> np.ndarray:
            return np.concatenate([file.columns[column][idx] for file, idx in picks])

        if not picks:
            return DayReadings(typed_frame({}, READING_COLUMNS), rejected)
        # Repeated hours are kept as the source gave them: the raw layer is a faithful copy,
        # and de-duplication is a cleaning decision made downstream. The stable sort keeps
        # repeats in file order.
        order = np.argsort(pick("datetime_utc"), kind="stable")
        size = len(order)
        # Built with the final dtypes directly: typed_frame's astype costs more than the read.
        readings = pd.DataFrame(
            {
                "sensor_id": np.full(size, sensor.sensor_id, dtype="int64"),
                "location_id": np.full(size, sensor.location_id, dtype="int64"),
                "parameter": pd.array(pick("parameter")[order], dtype="string"),
                "units": pd.array(pick("units")[order], dtype="string"),
                "datetime_utc": pick("datetime_utc")[order],
                "value": pick("value")[order],
                "source": pd.array(np.full(size, self.name, dtype=object), dtype="string"),
            }
        )
        return DayReadings(readings, rejected)

    # ---- configuration -----------------------------------------------------------------

    def _location_ids(self) -> list[int]:
        tokens = [token.strip() for token in (self.locations or "").split(",") if token.strip()]
        if not tokens:
            raise SourceError(
                "The archive source needs AQ_LOCATIONS: comma-separated OpenAQ location ids, "
                "e.g. AQ_LOCATIONS=8000,10534. The archive cannot be searched by area."
            )
        bad = [token for token in tokens if not token.isdigit()]
        if bad:
            raise SourceError(f"AQ_LOCATIONS has {bad} which are not OpenAQ location ids.")
        return list(dict.fromkeys(int(token) for token in tokens))

    @property
    def _is_http(self) -> bool:
        return self.root.startswith(("https://", "http://"))

    @property
    def _base(self) -> str:
        return self.root.rstrip("/")

    def _check_root(self) -> None:
        # A wrong local root would otherwise read as "every file missing" (silent empty data).
        if not self._is_http and not (Path(self.root).expanduser() / "records").is_dir():
            raise SourceError(
                f"Archive root {self.root!r} has no records/ folder; point it at a mirror of "
                f"the archive or at {ARCHIVE_URL}."
            )

    # ---- files -------------------------------------------------------------------------

    def _file(self, location_id: int, day: dt.date, cached: bool = True) -> _ArchiveFile | None:
        """The parsed file of one location and local day; None when it does not exist."""
        key = _file_key(location_id, day)
        load = _load_file if cached else _load_file.__wrapped__
        if self._is_http:
            uri, stamp = f"{self._base}/{key}", None
        else:
            path = Path(self.root).expanduser() / key
            try:
                stat = path.stat()
            except FileNotFoundError:
                return None
            # mtime and size in the cache key: a replaced file is parsed again.
            uri, stamp = str(path), (stat.st_mtime_ns, stat.st_size)
        try:
            return load(uri, stamp, self._transport, day)
        except _MissingFile:
            return None

    def _files_for_utc_day(self, location_id: int, day: dt.date) -> list[_ArchiveFile]:
        """The local-day files that can hold readings of UTC `day`.

        The file named for `day` is always read. Its UTC offsets say which neighbour
        overlaps: a negative offset (UTC-4) pushes the evening of local day-1 into UTC `day`,
        a positive one pulls the morning of local day+1 into it, +00:00 needs neither. With
        no own file (or no readable offset in it) both neighbours are read, and one that
        cannot be read is skipped: it fails its own day, not this one. Limit: a UTC offset
        that changes sign exactly at local midnight between two files is not seen.
        """
        own = self._file(location_id, day)
        offsets = own.offsets if own is not None else frozenset()
        guessing = not offsets

        def neighbour(other: dt.date) -> _ArchiveFile | None:
            try:
                return self._file(location_id, other)
            except SourceError as exc:
                if not guessing:
                    raise
                get_dagster_logger().warning(f"UTC day {day} does without {exc}")
                return None

        files = [
            neighbour(day - dt.timedelta(days=1)) if guessing or min(offsets) < 0 else None,
            own,
            neighbour(day + dt.timedelta(days=1)) if guessing or max(offsets) > 0 else None,
        ]
        return [file for file in files if file is not None]

    def _list_days(self, location_id: int) -> list[dt.date]:
        """Local days that have a file for the location, sorted."""
        prefix = f"records/csv.gz/locationid={location_id}/"
        if self._is_http:
            keys = _http_list(self._base, prefix, self._transport)
        else:
            folder = Path(self.root).expanduser() / prefix
            keys = [path.name for path in folder.glob(f"year=*/month=*/location-{location_id}-*")]
        days = set()
        for key in keys:
            match = _FILE_NAME.search(key)
            if match and int(match.group(1)) == location_id:
                days.add(dt.datetime.strptime(match.group(2), "%Y%m%d").date())
        return sorted(days)

    def _discovery_files(self, location_id: int, days: list[dt.date]) -> list[_ArchiveFile]:
        """Parsed files read to discover sensors, in day order; corrupt ones are skipped
        with a warning (the partition that needs them fails with the reason)."""
        if self._is_http:
            latest_month = [day for day in days if day.replace(day=1) == days[-1].replace(day=1)]
            sample = sorted({days[0], latest_month[0], days[-1]})
        else:
            sample = days
        files = []
        for day in sample:
            try:
                # Locally every file is read once: bypass the cache so a catalog scan does
                # not evict the files a backfill is using.
                file = self._file(location_id, day, cached=self._is_http)
            except SourceError as exc:
                get_dagster_logger().warning(f"archive: skipped in sensor discovery: {exc}")
                continue
            if file is not None and len(file.columns["sensor_id"]):
                files.append(file)
        return files


# ---- parsing ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _BadRow:
    sensor_id: int | None  # None when sensors_id itself could not be read
    parameter: str
    utc_day: dt.date  # UTC day of the row, or the file's day when the datetime is unreadable
    text: str


@dataclass(frozen=True, eq=False)
class _ArchiveFile:
    name: str
    day: dt.date
    # Good rows as equal-length numpy arrays: sensor_id (int64), datetime_utc (naive UTC
    # datetime64[ns]), value (float64), and the strings in _KEPT_COLUMNS.
    columns: dict[str, np.ndarray]
    bad_rows: tuple[_BadRow, ...]
    offsets: frozenset[int]  # UTC offsets (minutes) of the readable datetimes


class _MissingFile(Exception):
    """Raised inside the cache so that a missing file is not cached (it may appear later)."""


def _file_key(location_id: int, day: dt.date) -> str:
    return (
        f"records/csv.gz/locationid={location_id}/year={day:%Y}/month={day:%m}/"
        f"location-{location_id}-{day:%Y%m%d}.csv.gz"
    )


@lru_cache(maxsize=64)
def _load_file(
    uri: str, stamp: object, transport: httpx.BaseTransport | None, day: dt.date
) -> _ArchiveFile:
    """Read and parse one archive file (path or URL). `stamp` only keys the cache."""
    if uri.startswith(("https://", "http://")):
        data = _http_get(uri, transport)
        if data is None:
            raise _MissingFile(uri)
    else:
        try:
            data = Path(uri).read_bytes()
        except FileNotFoundError as exc:
            raise _MissingFile(uri) from exc
    return _parse_archive_file(data, uri, day)


def _parse_archive_file(data: bytes, uri: str, day: dt.date) -> _ArchiveFile:
    """Parse the gzip CSV bytes of one archive file.

    A file that cannot be read as a whole raises `SourceError` naming it; a row whose
    sensors_id, datetime or value cannot be read becomes a `_BadRow`. Values are kept as
    given, including negatives and -999 placeholders (checks downstream flag them).
    """
    name = uri.rsplit("/", 1)[-1]
    try:
        text = gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(f"Archive file {uri} is not a readable gzip file: {exc}") from exc
    if not text.strip():  # an empty file: no readings that day, as a header-only one
        text = ",".join(ARCHIVE_COLUMNS).encode()
    try:
        # Everything as text: a malformed cell must reject its row, not the whole file, and
        # so must a line with too many fields (pandas skips it with a warning we keep).
        with warnings.catch_warnings(record=True) as skipped:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            frame = pd.read_csv(
                io.BytesIO(text),
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                encoding="utf-8",
                on_bad_lines="warn",
            )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise SourceError(f"Archive file {uri} is not a readable CSV: {exc}") from exc
    header = [str(column) for column in frame.columns]
    missing = [column for column in ARCHIVE_COLUMNS if column not in header]
    if missing:
        raise SourceError(
            f"Archive file {uri} lacks columns {missing}; found {header[:12]}, "
            f"expected {','.join(ARCHIVE_COLUMNS)}."
        )
    misshapen = tuple(
        _misshapen_row(text, header, name, day, int(line))
        for warning in skipped
        for line in re.findall(r"Skipping line (\d+)", str(warning.message))
    )
    # Plain numpy from here on: per-file frames are small and pandas' per-call overhead
    # would cost more than the parsing itself.
    cells = frame.to_numpy(dtype=object)
    column = {title: cells[:, header.index(title)] for title in ARCHIVE_COLUMNS}

    # A file repeats ~24 timestamps over all its sensors: parse each distinct string once.
    codes, uniques = pd.factorize(column["datetime"])
    parsed = [_parse_datetime(text) for text in uniques]
    unique_ok = np.array([item is not None for item in parsed], dtype=bool)
    unique_utc = np.array(
        [item[0] if item is not None else np.datetime64("NaT") for item in parsed],
        dtype="datetime64[ns]",
    )
    datetime_utc = unique_utc[codes]
    datetime_ok = unique_ok[codes]
    value = _to_float(column["value"])
    value_ok = np.isfinite(value)
    sensor = _to_float(column["sensors_id"])
    sensor_ok = np.isfinite(sensor) & (sensor % 1 == 0)
    good = datetime_ok & value_ok & sensor_ok

    kept = {title: column[title] for title in _KEPT_COLUMNS}
    kept["sensor_id"] = np.where(sensor_ok, sensor, -1).astype("int64")
    kept["datetime_utc"] = datetime_utc
    kept["value"] = value
    bad_rows: tuple[_BadRow, ...] = ()
    if not good.all():
        bad_rows = tuple(
            _bad_row(
                dict(zip(header, cells[i], strict=True)),
                row=int(i) + 1,
                name=name,
                sensor_ok=bool(sensor_ok[i]),
                datetime_ok=bool(datetime_ok[i]),
                value_ok=bool(value_ok[i]),
                utc_day=pd.Timestamp(datetime_utc[i]).date() if datetime_ok[i] else day,
            )
            for i in np.flatnonzero(~good)
        )
        kept = {key: array[good] for key, array in kept.items()}
    offsets = frozenset(item[1] for item in parsed if item is not None)
    return _ArchiveFile(name, day, kept, bad_rows + misshapen, offsets)


def _misshapen_row(text: bytes, header: list[str], name: str, day: dt.date, line: int) -> _BadRow:
    """A line with more or fewer fields than the header: rejected, attributed to its sensor
    when the sensors_id field still reads as one."""
    raw = text.splitlines()[line - 1].decode("utf-8", errors="replace")
    fields = raw.split(",")

    def field(title: str) -> str:
        at = header.index(title) if title in header else len(fields)
        return fields[at] if at < len(fields) else ""

    sensor = field("sensors_id")
    return _BadRow(
        sensor_id=int(sensor) if sensor.isdigit() else None,
        parameter=field("parameter"),
        utc_day=day,
        text=f"{name} line {line}: {raw} -- {len(fields)} fields, the header has {len(header)}",
    )


def _bad_row(
    record: dict[str, str],
    *,
    row: int,
    name: str,
    sensor_ok: bool,
    datetime_ok: bool,
    value_ok: bool,
    utc_day: dt.date,
) -> _BadRow:
    """One malformed row: the line as read and why it was rejected."""
    reasons = []
    if not sensor_ok:
        reasons.append(f"sensors_id {record['sensors_id']!r} is not an integer")
    if not datetime_ok:
        reasons.append(f"datetime {record['datetime']!r} is not ISO 8601 with a UTC offset")
    if not value_ok:
        value = record["value"]
        reasons.append(
            "value is empty" if not value.strip() else f"value {value!r} is not a number"
        )
    return _BadRow(
        sensor_id=int(float(record["sensors_id"])) if sensor_ok else None,
        parameter=record["parameter"],
        utc_day=utc_day,
        # Rows count data lines: the header is row 0.
        text=f"{name} row {row}: {','.join(record.values())} -- {'; '.join(reasons)}",
    )


def _to_float(cells: np.ndarray) -> np.ndarray:
    """Floats of a column of text cells, NaN where a cell is not a number."""
    try:
        return cells.astype("float64")  # fast path: every cell is a number
    except ValueError:
        return np.asarray(pd.to_numeric(cells, errors="coerce"), dtype="float64")


def _parse_datetime(text: str) -> tuple[dt.datetime, int] | None:
    """(naive UTC datetime, UTC offset in minutes) of an ISO 8601 string with an offset;
    None when it is unreadable or has no offset (its UTC time would be a guess)."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return None
    offset = moment.utcoffset()
    if offset is None:
        return None
    return (moment - offset).replace(tzinfo=None), int(offset.total_seconds() // 60)


def _offset_label(text: str) -> str:
    """The UTC offset of an ISO 8601 datetime string as +HH:MM (Z is +00:00)."""
    parsed = _parse_datetime(text)
    minutes = parsed[1] if parsed is not None else 0
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _location_catalog(
    location_id: int, files: list[_ArchiveFile], parameter: str
) -> pd.DataFrame | None:
    """Catalog rows for one location (None when it does not measure `parameter`)."""
    rows = pd.concat([pd.DataFrame(file.columns) for file in files], ignore_index=True)
    if not (rows["parameter"] == parameter).any():
        return None
    # What a sensor is now (name, units, coordinates, offset) is read from its latest row.
    latest = (
        rows.sort_values("datetime_utc", kind="stable")
        .groupby("sensor_id", sort=True)
        .tail(1)
        .sort_values("sensor_id")
    )
    return pd.DataFrame(
        {
            "sensor_id": latest["sensor_id"],
            "location_id": location_id,
            "location_name": latest["location"],
            "parameter": latest["parameter"],
            "units": latest["units"],
            "latitude": pd.to_numeric(latest["lat"], errors="coerce"),
            "longitude": pd.to_numeric(latest["lon"], errors="coerce"),
            "timezone": latest["datetime"].map(_offset_label),
            "first_seen_utc": files[0].columns["datetime_utc"].min(),
            "last_seen_utc": files[-1].columns["datetime_utc"].max(),
            "source": "archive",
        }
    )


# ---- HTTP ------------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _http_client(transport: httpx.BaseTransport | None) -> httpx.Client:
    # One client per transport: it keeps connections (and the TLS context) across files.
    return httpx.Client(transport=transport, timeout=_HTTP_TIMEOUT, follow_redirects=True)


def _http_request(
    url: str, transport: httpx.BaseTransport | None, params: dict | None = None
) -> tuple[int, bytes]:
    """Status and raw body of a GET, retrying timeouts, network errors, 429 and 5xx."""
    client = _http_client(transport)
    delays = _RETRY_DELAYS
    problem = ""
    since: dt.datetime | None = None  # the first network error of the current streak
    for attempt in range(len(delays) + 1):
        try:
            with client.stream("GET", url, params=params) as response:
                # Raw bytes: the .csv.gz stays gzip even if S3 labels it Content-Encoding.
                # (A response built from bytes, as mocks are, arrives already read.)
                consumed = response.is_stream_consumed
                body = response.content if consumed else b"".join(response.iter_raw())
        except httpx.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc or 'no detail'}"
            since = since or dt.datetime.now(dt.UTC)
        else:
            if response.status_code < 500 and response.status_code != 429:
                return response.status_code, body
            problem = f"HTTP {response.status_code}"
            since = None
        if attempt < len(delays):
            time.sleep(delays[attempt])
    if since is not None:
        raise SourceUnreachable(
            f"The OpenAQ archive is unreachable at {url} since {since:%Y-%m-%d %H:%M:%S} UTC "
            f"({problem}, {len(delays) + 1} tries). Stored data is untouched; check the "
            "network or AQ_ARCHIVE_ROOT, then re-run."
        )
    raise SourceError(
        f"GET {url} failed {len(delays) + 1} times ({problem}); the archive may be down "
        "or unreachable, retry the run later."
    )


def _http_get(url: str, transport: httpx.BaseTransport | None) -> bytes | None:
    """The object's bytes, or None when the archive has no such object (404/403)."""
    status, body = _http_request(url, transport)
    if status == 200:
        return body
    if b"<Code>NoSuchBucket</Code>" in body:
        raise SourceError(f"GET {url}: no such bucket; check the archive root URL.")
    if status in (403, 404):
        return None
    raise SourceError(f"GET {url} answered HTTP {status}: {body[:200]!r}")


def _http_list(base: str, prefix: str, transport: httpx.BaseTransport | None) -> list[str]:
    """Keys under `prefix` (S3 ListObjectsV2, anonymous, all pages)."""
    keys: list[str] = []
    params = {"list-type": "2", "prefix": prefix}
    while True:
        status, body = _http_request(f"{base}/", transport, params)
        if status != 200:
            raise SourceError(
                f"Listing {base}/?prefix={prefix} answered HTTP {status}: sensor discovery "
                f"needs an archive that allows anonymous listing. {body[:200]!r}"
            )
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise SourceError(f"Listing {base}/?prefix={prefix} is not S3 XML: {exc}") from exc
        keys.extend(node.text or "" for node in root.iter(f"{_S3_NS}Key"))
        token = root.findtext(f"{_S3_NS}NextContinuationToken")
        if root.findtext(f"{_S3_NS}IsTruncated") != "true" or not token:
            return keys
        params = {**params, "continuation-token": token}
