"""Readings from the OpenAQ API v3 (https://docs.openaq.org), over `httpx`.

Discovery reads `/v3/locations` (by id, around a point, in a box or in a country) and keeps
the locations that measure the configured parameter, with all their sensors. A day of one
sensor comes from `/v3/sensors/{id}/hours` (OpenAQ's hourly aggregates) or from
`/v3/sensors/{id}/measurements` averaged here to UTC hours.

Every request passes a rate limiter shared by all processes on the machine that use the
same key (a small JSON file under `fcntl.flock`), honours the `x-ratelimit-*` headers, waits
out 429s, retries 5xx, 408 and network errors with backoff, and gives up with a clear
`SourceError` once `max_wait_s` is spent (the retries' budget is the run's; three network
errors in a row mean unreachable). Other refusals (401, 403, 404, 410, 422) raise
at once with the cause and the fix.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import json
import math
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
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

API_KEY_URL = "https://explore.openaq.org/register"
PAGE_LIMIT = 1000  # the API's maximum page size
BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0
MINUTE_S = 60.0
# Network errors in a row (no HTTP answer at all) after which OpenAQ counts as unreachable:
# the run then fails at once instead of every sensor-day retrying for max_wait_s.
UNREACHABLE_AFTER = 3
HOUR_S = 3600.0

# OpenAQ parameter ids by name, only where the list is complete (one id per unit the API
# uses). Other parameters are filtered client-side only, so no location is lost.
PARAMETER_IDS: dict[str, tuple[int, ...]] = {
    "pm10": (1,),
    "pm25": (2,),
    "pm1": (19,),
    "o3": (3, 10),
    "co": (4, 8),
    "no2": (5, 7),
    "so2": (6, 9),
}

# The variables each area field is meant to be fed from, for error messages.
AREA_VARIABLES = "AQ_LOCATIONS, AQ_COORDINATES (with AQ_RADIUS_M), AQ_BBOX or AQ_COUNTRY"


# ---------------------------------------------------------------------------------------
# The shared rate limiter
# ---------------------------------------------------------------------------------------


class SharedRateLimiter:
    """Sliding-window request limits shared by every process that uses the same file.

    The file holds `{"requests": [epoch seconds, ...], "not_before": epoch seconds}`: the
    start times of the requests of the last hour, and a time before which nobody may call
    (set from `x-ratelimit-remaining: 0` or a 429). Each read-modify-write holds an
    exclusive `fcntl.flock`, so concurrent runs never both take the last free slot.
    Timestamps are wall-clock seconds because they are compared across processes.
    """

    def __init__(self, path: Path, per_minute: int, per_hour: int) -> None:
        self.path = path
        self.per_minute = per_minute
        self.per_hour = per_hour

    def try_acquire(self, now: float) -> float:
        """Take a slot and return 0, or take nothing and return the seconds to wait."""
        with self._locked() as state:
            requests = sorted(t for t in state["requests"] if now - t < HOUR_S)
            state["requests"] = requests
            waits = [state["not_before"] - now]
            in_minute = [t for t in requests if now - t < MINUTE_S]
            if len(in_minute) >= self.per_minute:
                waits.append(in_minute[-self.per_minute] + MINUTE_S - now)
            if len(requests) >= self.per_hour:
                waits.append(requests[-self.per_hour] + HOUR_S - now)
            wait = max(waits)
            if wait > 0:
                return wait
            requests.append(now)
            return 0.0

    def block_until(self, until: float) -> None:
        """Make every user of the file wait until `until` (epoch seconds)."""
        with self._locked() as state:
            state["not_before"] = max(state["not_before"], until)

    def _locked(self) -> _LockedState:
        return _LockedState(self.path)


class _LockedState:
    """Context manager: the limiter file's content under an exclusive lock, saved on exit."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.state: dict[str, Any] = {}
        self._fd = -1

    def __enter__(self) -> dict[str, Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        raw = b""
        while chunk := os.read(self._fd, 65536):
            raw += chunk
        self.state = _parse_state(raw)
        return self.state

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                data = json.dumps(self.state).encode()
                os.lseek(self._fd, 0, os.SEEK_SET)
                os.ftruncate(self._fd, 0)
                os.write(self._fd, data)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)


def _parse_state(raw: bytes) -> dict[str, Any]:
    # A missing or damaged file (a crash mid-write) starts the windows afresh.
    try:
        loaded = json.loads(raw) if raw.strip() else {}
        requests = [float(t) for t in loaded.get("requests", [])]
        not_before = float(loaded.get("not_before", 0.0))
    except (ValueError, TypeError, AttributeError):
        requests, not_before = [], 0.0
    return {"requests": requests, "not_before": not_before}


# ---------------------------------------------------------------------------------------
# The source
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Hooks:
    """What tests and replays swap: the HTTP transport, the clock, sleeping and jitter."""

    transport: httpx.BaseTransport | None = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    jitter: Callable[[], float] = random.random


class OpenAQSource(ReadingsSource):
    """Readings from the OpenAQ API v3: sensors of an area and their hourly values.

    Config (and the environment variable each is meant to be fed from):
    - `api_key` (`OPENAQ_API_KEY`): sent as `X-API-Key`; get one at
      https://explore.openaq.org/register.
    - `base_url` (`OPENAQ_BASE_URL`): the API root, default `https://api.openaq.org`; point
      it at a proxy or a local replay of the API.
    - The area, exactly one of:
      `locations` (`AQ_LOCATIONS`): comma-separated OpenAQ location ids, e.g. `2178,8118`;
      `coordinates` (`AQ_COORDINATES`): `lat,lon` of a centre, with `radius_m`
      (`AQ_RADIUS_M`, metres, default 12000);
      `bbox` (`AQ_BBOX`): `west,south,east,north` in degrees;
      `country` (`AQ_COUNTRY`): an ISO 3166-1 alpha-2 code such as `US`.
    - `parameter` (`AQ_PARAMETER`): keep locations that measure it (default `pm25`).
    - `measurements` (`OPENAQ_MEASUREMENTS`): `hourly` reads OpenAQ's hourly aggregates
      (`/v3/sensors/{id}/hours`); `raw` reads `/v3/sensors/{id}/measurements` and averages
      them to UTC hours here.
    - `max_wait_s` (`OPENAQ_MAX_WAIT_S`): the time one run may spend retrying failures (5xx,
      timeouts; then the rest of the run fails at once), and one request waiting for rate
      limits.
    - `requests_per_minute`, `requests_per_hour`: the key's limits (60 and 2,000).
    - `state_dir` (`OPENAQ_STATE_DIR`): where the shared rate-limit file lives; default
      `$AQ_HOME/openaq`, else the system temp directory. Every process using the same key
      must see the same directory (in containers, a shared volume).
    - `timeout_s`: the timeout of one HTTP request.
    """

    api_key: str = ""
    base_url: str = "https://api.openaq.org"
    locations: str = ""
    coordinates: str = ""
    radius_m: int = 12000
    bbox: str = ""
    country: str = ""
    measurements: str = "hourly"
    max_wait_s: float = 300.0
    requests_per_minute: int = 60
    requests_per_hour: int = 2000
    state_dir: str = ""
    timeout_s: float = 30.0

    _hooks: _Hooks = PrivateAttr(default_factory=_Hooks)
    # Seconds this run has slept retrying failures (5xx, timeouts), over all its requests:
    # the budget `max_wait_s` is the run's, so a failing API cannot hold a backfill for hours.
    _retried_s: float = PrivateAttr(default=0.0)

    @property
    def name(self) -> str:
        return "openaq"

    def with_hooks(
        self,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] | None = None,
        jitter: Callable[[], float] | None = None,
    ) -> OpenAQSource:
        """Talk through `transport` and wait through `clock`/`sleep` (tests and replays).

        `jitter` returns a number in [0, 1) that scales each backoff. Returns `self`.
        """
        current = self._hooks
        self._hooks = _Hooks(
            transport=transport if transport is not None else current.transport,
            clock=clock or current.clock,
            sleep=sleep or current.sleep,
            jitter=jitter or current.jitter,
        )
        return self

    def _with_updated_values(self, values: Any) -> Any:
        # Dagster rebuilds a resource from its config at run start; keep the hooks on the copy.
        out = cast(OpenAQSource, super()._with_updated_values(values))
        out._hooks = self._hooks
        return out

    # --- the contract ------------------------------------------------------------------

    def list_sensors(self) -> pd.DataFrame:
        area = self._area()
        with self._client() as client:
            if "locations" in area:
                found = [self._location(client, location_id) for location_id in area["locations"]]
            else:
                params = {**area, **self._parameter_filter()}
                found = list(self._pages(client, "/v3/locations", params, subject="locations"))
        return self._catalog(found)

    def fetch_day(self, sensor: Sensor, day: dt.date) -> DayReadings:
        hourly = self._mode() == "hourly"
        path = f"/v3/sensors/{sensor.sensor_id}/" + ("hours" if hourly else "measurements")
        params = {
            "datetime_from": f"{day.isoformat()}T00:00:00Z",
            "datetime_to": f"{(day + dt.timedelta(days=1)).isoformat()}T00:00:00Z",
        }
        self._require_key()
        with self._client() as client:
            rows = list(self._pages(client, path, params, subject=f"sensor {sensor.sensor_id}"))
        return _readings(rows, sensor, day, hourly=hourly)

    # --- configuration -----------------------------------------------------------------

    def _require_key(self) -> None:
        if not self.api_key.strip():
            raise SourceError(
                "OpenAQ needs an API key and none is set: set OPENAQ_API_KEY to your key "
                f"(free, from {API_KEY_URL}). No request was made."
            )

    def _mode(self) -> str:
        mode = self.measurements.strip().lower()
        if mode not in ("hourly", "raw"):
            raise SourceError(
                f"measurements={self.measurements!r} is not a mode of the OpenAQ source: "
                "set OPENAQ_MEASUREMENTS to 'hourly' (OpenAQ's hourly aggregates) or 'raw' "
                "(raw measurements averaged to hours)."
            )
        return mode

    def _area(self) -> dict[str, Any]:
        """The discovery query, validated before any request."""
        self._require_key()
        given = {
            name: value.strip()
            for name, value in (
                ("locations", self.locations),
                ("coordinates", self.coordinates),
                ("bbox", self.bbox),
                ("country", self.country),
            )
            if value.strip()
        }
        if not given:
            raise SourceError(
                "The OpenAQ source has no area to look in: set one of " + AREA_VARIABLES + "."
            )
        if len(given) > 1:
            raise SourceError(
                f"The OpenAQ source got more than one area ({', '.join(sorted(given))}): "
                f"set only one of {AREA_VARIABLES}."
            )
        name, value = next(iter(given.items()))
        if name == "locations":
            try:
                ids = [int(part) for part in value.split(",") if part.strip()]
            except ValueError:
                raise SourceError(
                    f"AQ_LOCATIONS={value!r} is not a comma-separated list of OpenAQ "
                    "location ids (e.g. '2178,8118')."
                ) from None
            return {"locations": list(dict.fromkeys(ids))}
        if name == "coordinates":
            lat, lon = _floats(value, 2, "AQ_COORDINATES", "'latitude,longitude'")
            if not (-90 <= lat <= 90 and -180 <= lon <= 180):
                raise SourceError(
                    f"AQ_COORDINATES={value!r} is out of range: give 'latitude,longitude' "
                    "with latitude first."
                )
            if self.radius_m <= 0:
                raise SourceError(f"AQ_RADIUS_M={self.radius_m} must be a positive number.")
            return {"coordinates": f"{lat},{lon}", "radius": self.radius_m}
        if name == "bbox":
            west, south, east, north = _floats(value, 4, "AQ_BBOX", "'west,south,east,north'")
            if not (west < east and south < north):
                raise SourceError(
                    f"AQ_BBOX={value!r} is not 'west,south,east,north' (west < east, "
                    "south < north, in degrees)."
                )
            return {"bbox": f"{west},{south},{east},{north}"}
        if len(value) != 2 or not value.isalpha():
            raise SourceError(
                f"AQ_COUNTRY={value!r} is not an ISO 3166-1 alpha-2 code such as 'US'."
            )
        return {"iso": value.upper()}

    def _parameter_filter(self) -> dict[str, str]:
        ids = PARAMETER_IDS.get(self.parameter)
        return {"parameters_id": ",".join(map(str, ids))} if ids else {}

    def _api_root(self) -> str:
        root = self.base_url.strip().rstrip("/")
        root = root.removesuffix("/v3")  # the paths carry the version
        if not root.startswith(("http://", "https://")):
            raise SourceError(
                f"OPENAQ_BASE_URL={self.base_url!r} is not an http(s) URL; the default is "
                "https://api.openaq.org."
            )
        return root

    def _limiter(self) -> SharedRateLimiter:
        if self.state_dir:
            folder = Path(self.state_dir)
        elif os.environ.get("AQ_HOME"):
            folder = Path(os.environ["AQ_HOME"]) / "openaq"
        else:
            folder = Path(tempfile.gettempdir()) / f"aq-openaq-{os.getuid()}"
        # Limits are per key, so each key has its own file; the name never shows the key.
        digest = hashlib.sha256(self.api_key.strip().encode()).hexdigest()[:16]
        return SharedRateLimiter(
            folder / f"ratelimit-{digest}.json", self.requests_per_minute, self.requests_per_hour
        )

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self._api_root(),
            headers={"X-API-Key": self.api_key.strip(), "Accept": "application/json"},
            timeout=self.timeout_s,
            transport=self._hooks.transport,
        )

    # --- requests ------------------------------------------------------------------------

    def _location(self, client: httpx.Client, location_id: int) -> dict[str, Any]:
        body = self._get(
            client, f"/v3/locations/{location_id}", {}, subject=f"location {location_id}"
        )
        # The API wraps one location in a page; a bare resource is accepted too.
        results = body.get("results") if "results" in body else [body]
        if not isinstance(results, list) or not results or not isinstance(results[0], dict):
            raise SourceError(
                f"OpenAQ answered GET /v3/locations/{location_id} without the location "
                f"(body starts {json.dumps(body)[:200]}). Check AQ_LOCATIONS and OPENAQ_BASE_URL."
            )
        return results[0]

    def _pages(
        self, client: httpx.Client, path: str, params: dict[str, Any], *, subject: str
    ) -> Iterator[dict[str, Any]]:
        """Every result of a paged endpoint, page by page until a short or empty page.

        `meta.found` may be a number or a string like ">1000", so it only ever stops the
        paging early when it is a number that has been reached.
        """
        page, total = 1, 0
        previous_first: Any = None
        while True:
            body = self._get(
                client, path, {**params, "limit": PAGE_LIMIT, "page": page}, subject=subject
            )
            results = body.get("results")
            if not isinstance(results, list):
                raise SourceError(
                    f"OpenAQ answered GET {path} page {page} without a 'results' list "
                    f"(body starts {json.dumps(body)[:200]}). Check OPENAQ_BASE_URL points at "
                    "the OpenAQ API v3."
                )
            if not results:
                return
            if page > 1 and results[0] == previous_first:
                raise SourceError(
                    f"OpenAQ returned the same page twice for GET {path} (page={page}); "
                    "the server or proxy at OPENAQ_BASE_URL ignores the 'page' parameter."
                )
            previous_first = results[0]
            yield from (row for row in results if isinstance(row, dict))
            total += len(results)
            meta = _mapping(body.get("meta"))
            page_size = min(_as_int(meta.get("limit")) or PAGE_LIMIT, PAGE_LIMIT)
            found = _as_int(meta.get("found"))  # None for ">1000"
            if len(results) < page_size or (found is not None and total >= found):
                return
            page += 1

    def _get(
        self, client: httpx.Client, path: str, params: dict[str, Any], *, subject: str
    ) -> dict[str, Any]:
        """One GET with rate limiting, waits and retries, within `max_wait_s`."""
        hooks = self._hooks
        limiter = self._limiter()
        endpoint = f"GET {path}"
        started = hooks.clock()
        failures = 0
        unanswered_since: float | None = None  # the first network error of the current streak
        unanswered = 0
        last = "none yet"

        def retry_after(seconds: float, why: str) -> None:
            if self._retried_s + seconds > self.max_wait_s:
                raise SourceUnreachable(
                    f"OpenAQ keeps failing: this run has spent {self._retried_s:.0f} s retrying "
                    f"(the next wait, {seconds:.0f} s for {why}, would pass max_wait_s="
                    f"{self.max_wait_s:g}); last answer to {endpoint}: {last}. Stored data is "
                    "untouched; try again later or raise OPENAQ_MAX_WAIT_S."
                )
            self._retried_s += seconds
            wait(seconds, why)

        def wait(seconds: float, why: str) -> None:
            spent = hooks.clock() - started
            if spent + seconds > self.max_wait_s:
                raise SourceError(
                    f"OpenAQ {endpoint}: gave up after {spent:.0f} s of waiting and retrying "
                    f"(the next wait, {seconds:.0f} s for {why}, would pass max_wait_s="
                    f"{self.max_wait_s:g}); last answer: {last}. Try again later, raise "
                    "OPENAQ_MAX_WAIT_S, or run fewer OpenAQ ingests at once."
                )
            hooks.sleep(seconds)

        while True:
            while (pause := limiter.try_acquire(hooks.clock())) > 0:
                wait(pause, "the shared rate limit")
            try:
                response = client.get(path, params=params)
            except httpx.TransportError as exc:  # timeouts, refused and dropped connections
                last = f"{type(exc).__name__}: {exc}"
                unanswered += 1
                unanswered_since = unanswered_since or hooks.clock()
                if unanswered >= UNREACHABLE_AFTER:
                    since = dt.datetime.fromtimestamp(unanswered_since, dt.UTC)
                    raise SourceUnreachable(
                        f"OpenAQ unreachable at {self._api_root()} since {since:%Y-%m-%d %H:%M:%S}"
                        f" UTC ({unanswered} tries of {endpoint}, last: {last}). Stored data "
                        "is untouched; check the network or OPENAQ_BASE_URL, then re-run."
                    ) from exc
                retry_after(_backoff(failures, hooks.jitter()), "a network error")
                failures += 1
                continue
            unanswered, unanswered_since = 0, None
            status = response.status_code
            self._note_rate_headers(response, limiter)
            if status == 200:
                return _json_body(response, endpoint)
            last = f"HTTP {status} {_said(response)}"
            if status == 429:
                reset = _as_float(response.headers.get("x-ratelimit-reset"))
                # At least a second, so a "reset: 0" at a window's edge cannot spin.
                pause_s = MINUTE_S if reset is None else max(reset, 1.0)
                limiter.block_until(hooks.clock() + pause_s)
                continue  # the limiter now makes us wait as the API asked
            if status == 408 or status >= 500:
                retry_after(_backoff(failures, hooks.jitter()), f"HTTP {status}")
                failures += 1
                continue
            raise self._refusal(response, path, subject)

    def _note_rate_headers(self, response: httpx.Response, limiter: SharedRateLimiter) -> None:
        remaining = _as_int(response.headers.get("x-ratelimit-remaining"))
        reset = _as_float(response.headers.get("x-ratelimit-reset"))
        if remaining == 0 and reset is not None and response.status_code != 429:
            limiter.block_until(self._hooks.clock() + reset)

    def _refusal(self, response: httpx.Response, path: str, subject: str) -> SourceError:
        """The error for an answer that retrying cannot fix: cause, then fix."""
        status = response.status_code
        said = _said(response)
        where = f"GET {path}"
        if status == 401:
            return SourceError(
                f"OpenAQ refused the API key on {where} (401: {said}). Set OPENAQ_API_KEY to "
                f"a valid key (get one at {API_KEY_URL}); it is sent as the X-API-Key header."
            )
        if status == 403:
            return SourceError(
                f"OpenAQ forbade {where} (403: {said}): this API key violated OpenAQ's "
                f"rate-limit policy ({self.requests_per_minute}/min, "
                f"{self.requests_per_hour:,}/h). Wait before ingesting again, run fewer "
                "OpenAQ ingests at once, and contact dev@openaq.org if the key stays blocked."
            )
        if status == 404:
            if subject.startswith("location "):
                fix = "remove it from AQ_LOCATIONS or pick an id on https://explore.openaq.org"
            elif subject.startswith("sensor "):
                fix = (
                    "the sensor may have been retired or moved; re-materialize sensor_catalog "
                    "to refresh the sensor list"
                )
            else:
                fix = "check OPENAQ_BASE_URL points at the OpenAQ API v3"
            return SourceError(f"OpenAQ has no {subject} ({where}, 404: {said}): {fix}.")
        if status == 410:
            return SourceError(
                f"OpenAQ says {self._api_root()}{path} is retired (410: {said}). aq speaks "
                "API v3: set OPENAQ_BASE_URL to the v3 API root (default "
                "https://api.openaq.org), not a v1 or v2 address."
            )
        if status == 422:
            return SourceError(
                f"OpenAQ rejected the query of {where} (422): {_invalid_params(response)}. "
                "Fix that parameter in the source's config (AQ_COORDINATES, AQ_RADIUS_M, "
                "AQ_BBOX, AQ_COUNTRY, AQ_LOCATIONS) or report a bug in aq if it is not one."
            )
        return SourceError(
            f"OpenAQ answered {where} with HTTP {status} ({said}); not retried. Check "
            "OPENAQ_BASE_URL and the source's config."
        )

    # --- parsing -------------------------------------------------------------------------

    def _catalog(self, locations: list[dict[str, Any]]) -> pd.DataFrame:
        log = get_dagster_logger()
        rows: dict[str, list[Any]] = {name: [] for name in CATALOG_COLUMNS}
        seen: set[int] = set()
        for location in locations:
            location_id = _as_int(location.get("id"))
            sensors = [s for s in location.get("sensors") or [] if isinstance(s, dict)]
            if location_id is None or location_id in seen:
                continue
            seen.add(location_id)
            if not any(_parameter(s).get("name") == self.parameter for s in sensors):
                # Asked for by id, a location without the parameter is likely a config slip.
                note = log.warning if self.locations.strip() else log.info
                note(f"OpenAQ location {location_id} has no {self.parameter} sensor; skipped")
                continue
            coords = _mapping(location.get("coordinates"))
            first = _utc(_utc_text(location.get("datetimeFirst")))
            last = _utc(_utc_text(location.get("datetimeLast")))
            for sensor in sensors:
                sensor_id = _as_int(sensor.get("id"))
                if sensor_id is None:
                    continue
                parameter = _parameter(sensor)
                rows["sensor_id"].append(sensor_id)
                rows["location_id"].append(location_id)
                rows["location_name"].append(location.get("name"))
                rows["parameter"].append(parameter.get("name"))
                rows["units"].append(parameter.get("units"))
                rows["latitude"].append(_as_float(coords.get("latitude")))
                rows["longitude"].append(_as_float(coords.get("longitude")))
                rows["timezone"].append(location.get("timezone") or "UTC")
                rows["first_seen_utc"].append(first)
                rows["last_seen_utc"].append(last)
                rows["source"].append(self.name)
        for column in ("latitude", "longitude"):
            rows[column] = [math.nan if v is None else v for v in rows[column]]
        for column in ("first_seen_utc", "last_seen_utc"):
            rows[column] = [pd.NaT if v is None else v for v in rows[column]]
        frame = typed_frame(rows, CATALOG_COLUMNS)
        return frame.sort_values(["location_id", "sensor_id"], ignore_index=True)


def _readings(
    rows: list[dict[str, Any]], sensor: Sensor, day: dt.date, *, hourly: bool
) -> DayReadings:
    """Rows of `/hours` or `/measurements` as READING_COLUMNS for `day`, plus rejects."""
    start, end = utc_day_bounds(day)
    kept: list[tuple[pd.Timestamp, float, str]] = []
    rejected: list[str] = []
    for row in rows:
        period = _mapping(row.get("period"))
        begins = _utc(_utc_text(period.get("datetimeFrom")))
        if begins is None:
            ends = _utc(_utc_text(period.get("datetimeTo")))
            # Known by its end alone, a period belongs to the hour just before that instant.
            begins = None if ends is None else (ends - pd.Timedelta(seconds=1)).floor("h")
        if begins is None:
            rejected.append(
                f"sensor {sensor.sensor_id}: row without period.datetimeFrom.utc or "
                f"period.datetimeTo.utc: {json.dumps(row, default=str)[:200]}"
            )
            continue
        what = f"sensor {sensor.sensor_id} at {begins.isoformat()}Z"
        hour = begins if hourly else begins.floor("h")
        if not start <= hour < end:
            continue  # another day's partition
        value = row.get("value")
        if value is None:
            rejected.append(f"{what}: value is null")
            continue
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            rejected.append(f"{what}: value {value!r} is not a finite number")
            continue
        units = _parameter(row).get("units") or sensor.units
        kept.append((hour, float(value), str(units)))

    frame = pd.DataFrame(kept, columns=["datetime_utc", "value", "units"])
    if not hourly and not frame.empty:
        frame = frame.groupby(["datetime_utc", "units"], as_index=False)["value"].mean()
    frame = frame.sort_values("datetime_utc", kind="stable", ignore_index=True)
    frame["sensor_id"] = sensor.sensor_id
    frame["location_id"] = sensor.location_id
    frame["parameter"] = sensor.parameter
    frame["source"] = "openaq"
    return DayReadings(readings=typed_frame(frame, READING_COLUMNS), rejected=rejected)


# --- small helpers ----------------------------------------------------------------------


def _backoff(failures: int, jitter: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**failures))."""
    return min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2**failures) * jitter


def _floats(value: str, count: int, variable: str, shape: str) -> list[float]:
    try:
        numbers = [float(part) for part in value.split(",")]
    except ValueError:
        numbers = []
    if len(numbers) != count or not all(math.isfinite(n) for n in numbers):
        raise SourceError(f"{variable}={value!r} is not {shape} in decimal degrees.")
    return numbers


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _mapping(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (odd or null fields)."""
    return value if isinstance(value, dict) else {}


def _parameter(item: dict[str, Any]) -> dict[str, Any]:
    return _mapping(item.get("parameter"))


def _utc_text(value: Any) -> Any:
    """`{"utc": ..., "local": ...}` or a bare timestamp string -> the UTC string."""
    return value.get("utc") if isinstance(value, dict) else value


def _utc(text: Any) -> pd.Timestamp | None:
    """An ISO timestamp as tz-naive UTC, or None when absent or unreadable."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        return None
    if stamp is pd.NaT:
        return None
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.tz_localize(None)


def _json_body(response: httpx.Response, endpoint: str) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise SourceError(
            f"OpenAQ answered {endpoint} with 200 but not a JSON object (starts "
            f"{response.text[:120]!r}). Check OPENAQ_BASE_URL points at the OpenAQ API v3, "
            "not a web page or a proxy's login."
        )
    return body


def _said(response: httpx.Response) -> str:
    """What an error body says: its `message` or `detail` (text or a list), else the text."""
    try:
        body = response.json()
    except ValueError:
        return repr(response.text[:200]) if response.text else "empty body"
    if isinstance(body, dict):
        for key in ("message", "detail"):
            said = body.get(key)
            if isinstance(said, str):
                return repr(said)
            if isinstance(said, list):
                return _invalid_params(response)
    return repr(json.dumps(body)[:200])


def _invalid_params(response: httpx.Response) -> str:
    """422 details as `query.limit='abc': Input should be ...`, one per invalid input."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str):
        return repr(detail)
    if not isinstance(detail, list) or not detail:
        return repr(response.text[:200])
    parts = []
    for item in detail:
        if not isinstance(item, dict):
            parts.append(repr(item))
            continue
        loc = ".".join(str(p) for p in item.get("loc") or []) or "?"
        given = f"={item['input']!r}" if "input" in item else ""
        parts.append(f"{loc}{given}: {item.get('msg', 'invalid')}")
    return "; ".join(parts)
