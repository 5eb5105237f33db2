"""The OpenAQ v3 source, replaying the real API responses in `../shared/data/openaq-v3`.

No network and no real sleeping: requests go to an `httpx.MockTransport`, and the clock and
sleep are fakes whose recorded waits the tests assert on.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from dagster import asset, materialize

from aq_assets.defs.ingest.readings import collect_readings
from aq_assets.defs.ingest.sources.base import (
    CATALOG_COLUMNS,
    READING_COLUMNS,
    Sensor,
    SourceError,
    SourceUnreachable,
)
from aq_assets.defs.ingest.sources.openaq import OpenAQSource, SharedRateLimiter
from aq_assets_tests.conftest import SHARED_DATA

DATA = SHARED_DATA / "openaq-v3"
DAY = dt.date(2023, 10, 16)  # the day of the real hourly measurements
PM25 = Sensor(sensor_id=3920, location_id=2178, parameter="pm25", units="µg/m³")


def load(name: str) -> Any:
    path = DATA / name
    assert path.is_file(), f"real OpenAQ responses are expected at {DATA}"
    return json.loads(path.read_text(encoding="utf-8"))


ERRORS = load("errors.json")


class FakeTime:
    """A clock that only moves when something sleeps (or a test moves it)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class Replay:
    """A fake OpenAQ: answers each request with `answer(request)` and records it."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.answer = answer
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.answer(request)

    def params(self, index: int = 0) -> dict[str, str]:
        return dict(self.requests[index].url.params)

    def paths(self) -> list[str]:
        return [r.url.path for r in self.requests]


def in_order(*responses: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    """Answer with the given responses one after the other, then repeat the last."""
    queue = list(responses)

    def answer(_: httpx.Request) -> httpx.Response:
        return queue.pop(0) if len(queue) > 1 else queue[0]

    return answer


def ok(body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(200, json=body, headers=headers)


def error(key: str) -> httpx.Response:
    case = ERRORS[key]
    return httpx.Response(case["status"], json=case["body"], headers=case.get("headers"))


def page(results: list[dict], found: Any, page_no: int = 1) -> dict:
    meta = {"name": "openaq-api", "website": "/", "page": page_no, "limit": 1000, "found": found}
    return {"meta": meta, "results": results}


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def make_source(tmp_path: Path, fake_time: FakeTime):
    def make(replay: Replay, **config: Any) -> OpenAQSource:
        config.setdefault("api_key", "test-key")
        config.setdefault("state_dir", str(tmp_path / "limits"))
        return OpenAQSource(**config).with_hooks(
            transport=httpx.MockTransport(replay),
            clock=fake_time.clock,
            sleep=fake_time.sleep,
            jitter=lambda: 1.0,
        )

    return make


def test_name_is_openaq() -> None:
    assert OpenAQSource(api_key="k", locations="1").name == "openaq"


# --- discovery --------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["responses/locations.json", "resources/location.json"])
def test_discovery_by_location_id_reads_every_sensor_of_the_location(make_source, body) -> None:
    replay = Replay(lambda _: ok(load(body)))
    catalog = make_source(replay, locations="2178").list_sensors()

    assert replay.paths() == ["/v3/locations/2178"]
    assert replay.requests[0].headers["X-API-Key"] == "test-key"
    assert catalog.dtypes.astype(str).to_dict() == CATALOG_COLUMNS
    assert sorted(catalog["sensor_id"]) == [3916, 3917, 3918, 3919, 3920, 25227, 4272103, 4272226]
    assert set(catalog["parameter"]) == {"so2", "co", "no", "nox", "o3", "pm25", "no2", "pm10"}
    pm25 = catalog.set_index("sensor_id").loc[3920]
    assert pm25["location_id"] == 2178
    assert pm25["location_name"] == "Del Norte"
    assert pm25["units"] == "µg/m³"
    assert pm25["latitude"] == pytest.approx(35.1353)
    assert pm25["longitude"] == pytest.approx(-106.584702)
    assert pm25["timezone"] == "America/Denver"
    assert pm25["first_seen_utc"] == pd.Timestamp("2016-03-06 19:00:00")
    assert pm25["last_seen_utc"] == pd.Timestamp("2023-10-13 14:00:00")
    assert (catalog["source"] == "openaq").all()


def test_discovery_by_several_ids_asks_once_per_id(make_source) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        location = load("resources/location.json")
        location_id = int(request.url.path.rsplit("/", 1)[1])
        location["id"] = location_id
        for sensor in location["sensors"]:
            sensor["id"] += location_id * 10_000_000
        return ok(page([location], 1))

    replay = Replay(answer)
    catalog = make_source(replay, locations="2178, 8118,2178").list_sensors()

    assert replay.paths() == ["/v3/locations/2178", "/v3/locations/8118"]
    assert catalog.groupby("location_id").size().to_dict() == {2178: 8, 8118: 8}


def test_discovery_by_coordinates_sends_point_radius_and_parameter(make_source) -> None:
    replay = Replay(lambda _: ok(load("responses/locations.json")))
    catalog = make_source(replay, coordinates="35.1353, -106.5847", radius_m=5000).list_sensors()

    assert replay.paths() == ["/v3/locations"]
    assert replay.params() == {
        "coordinates": "35.1353,-106.5847",
        "radius": "5000",
        "parameters_id": "2",
        "limit": "1000",
        "page": "1",
    }
    assert len(catalog) == 8


def test_discovery_by_bbox_sends_the_box(make_source) -> None:
    replay = Replay(lambda _: ok(load("responses/locations.json")))
    make_source(replay, bbox="-106.7,35.0,-106.5,35.2", parameter="o3").list_sensors()

    assert replay.params() == {
        "bbox": "-106.7,35.0,-106.5,35.2",
        "parameters_id": "3,10",  # o3 in µg/m³ and in ppm
        "limit": "1000",
        "page": "1",
    }


def test_discovery_by_country_sends_iso(make_source) -> None:
    replay = Replay(lambda _: ok(load("responses/locations.json")))
    make_source(replay, country="us", parameter="nox").list_sensors()

    # nox has no complete id list here, so it is filtered client-side only
    assert replay.params() == {"iso": "US", "limit": "1000", "page": "1"}


def test_discovery_keeps_only_locations_with_the_parameter(make_source) -> None:
    with_pm25 = load("responses/locations_variation.json")["results"][0]  # locality null
    without_pm25 = copy.deepcopy(with_pm25)
    without_pm25.update(id=9999, name="No PM", coordinates=None, datetimeFirst=None)
    without_pm25["sensors"] = [
        {**s, "id": s["id"] + 1} for s in without_pm25["sensors"] if s["parameter"]["id"] != 2
    ]
    pm25_no_coords = copy.deepcopy(with_pm25)
    pm25_no_coords.update(id=7777, name=None, coordinates=None, timezone=None)
    pm25_no_coords["sensors"] = [{**s, "id": s["id"] + 7} for s in pm25_no_coords["sensors"]]
    replay = Replay(lambda _: ok(page([with_pm25, without_pm25, pm25_no_coords], 3)))

    catalog = make_source(replay, bbox="-107,35,-106,36").list_sensors()

    assert sorted(set(catalog["location_id"])) == [2178, 7777]
    no_coords = catalog[catalog["location_id"] == 7777]
    assert len(no_coords) == 8
    assert no_coords["latitude"].isna().all() and no_coords["longitude"].isna().all()
    assert (no_coords["timezone"] == "UTC").all()
    assert no_coords["location_name"].isna().all()


def test_discovery_with_no_matching_location_is_an_empty_catalog(make_source) -> None:
    replay = Replay(lambda _: ok(load("responses/locations.json")))
    catalog = make_source(replay, country="US", parameter="bc").list_sensors()

    assert catalog.empty
    assert list(catalog.columns) == list(CATALOG_COLUMNS)


# --- paging -----------------------------------------------------------------------------


def located(index: int) -> dict:
    """The real Del Norte location under another id, with sensor ids of its own."""
    location = load("resources/location.json")
    location["id"] = 100_000 + index
    for n, sensor in enumerate(location["sensors"]):
        sensor["id"] = (100_000 + index) * 10 + n
    return location


def test_paging_follows_pages_until_a_short_one_when_found_is_a_string(make_source) -> None:
    pages = {
        1: page([located(i) for i in range(1000)], ">1000", 1),
        2: page([located(i) for i in range(1000, 2000)], ">1000", 2),
        3: page([located(i) for i in range(2000, 2005)], ">1000", 3),
    }
    replay = Replay(lambda r: ok(pages[int(r.url.params["page"])]))

    catalog = make_source(replay, country="US").list_sensors()

    assert [r.url.params["page"] for r in replay.requests] == ["1", "2", "3"]
    assert {r.url.params["limit"] for r in replay.requests} == {"1000"}
    assert catalog["location_id"].nunique() == 2005
    assert len(catalog) == 2005 * 8
    assert catalog["sensor_id"].is_unique


def test_paging_stops_when_a_numeric_found_is_reached(make_source) -> None:
    replay = Replay(lambda _: ok(page([located(i) for i in range(1000)], 1000)))
    catalog = make_source(replay, country="US").list_sensors()

    assert len(replay.requests) == 1
    assert catalog["location_id"].nunique() == 1000


def test_paging_stops_on_an_empty_page(make_source) -> None:
    pages = {1: page([located(i) for i in range(1000)], ">1000"), 2: page([], ">1000", 2)}
    replay = Replay(lambda r: ok(pages[int(r.url.params["page"])]))

    catalog = make_source(replay, country="US").list_sensors()

    assert len(replay.requests) == 2
    assert catalog["location_id"].nunique() == 1000


def test_paging_refuses_a_server_that_ignores_page(make_source) -> None:
    replay = Replay(lambda _: ok(page([located(i) for i in range(1000)], ">1000")))
    with pytest.raises(SourceError, match="ignores the 'page' parameter"):
        make_source(replay, country="US").list_sensors()
    assert len(replay.requests) == 2


# --- fetch_day --------------------------------------------------------------------------


def test_fetch_day_reads_the_real_hourly_measurements(make_source) -> None:
    replay = Replay(lambda _: ok(load("responses/measurements.json")))
    day = make_source(replay).fetch_day(PM25, DAY)

    assert replay.paths() == ["/v3/sensors/3920/hours"]
    assert replay.params() == {
        "datetime_from": "2023-10-16T00:00:00Z",
        "datetime_to": "2023-10-17T00:00:00Z",
        "limit": "1000",
        "page": "1",
    }
    readings = day.readings
    assert readings.dtypes.astype(str).to_dict() == READING_COLUMNS
    assert list(readings["datetime_utc"]) == [
        pd.Timestamp("2023-10-16 12:00:00"),
        pd.Timestamp("2023-10-16 13:00:00"),
    ]
    assert list(readings["value"]) == [6.0, 7.5]
    assert set(readings["units"]) == {"µg/m³"}
    assert set(readings["parameter"]) == {"pm25"}
    assert set(readings["sensor_id"]) == {3920} and set(readings["location_id"]) == {2178}
    assert set(readings["source"]) == {"openaq"}
    assert day.rejected == []


def shifted(row: dict, hours: int) -> dict:
    """The real hourly row moved by `hours`, with its period rewritten to match."""
    row = copy.deepcopy(row)
    for end in ("datetimeFrom", "datetimeTo"):
        stamp = pd.Timestamp(row["period"][end]["utc"]) + pd.Timedelta(hours=hours)
        row["period"][end]["utc"] = stamp.isoformat()
    return row


def test_fetch_day_keeps_exactly_the_utc_day(make_source) -> None:
    real = load("responses/measurements.json")["results"][0]  # 12:00 UTC
    rows = [shifted(real, -13), shifted(real, -12), shifted(real, 11), shifted(real, 12)]
    replay = Replay(lambda _: ok(page(rows, 4)))

    readings = make_source(replay).fetch_day(PM25, DAY).readings

    assert list(readings["datetime_utc"]) == [
        pd.Timestamp("2023-10-16 00:00:00"),
        pd.Timestamp("2023-10-16 23:00:00"),
    ]


def test_fetch_day_puts_null_values_in_rejected(make_source) -> None:
    body = load("responses/measurements.json")
    body["results"][1]["value"] = None
    replay = Replay(lambda _: ok(body))

    day = make_source(replay).fetch_day(PM25, DAY)

    assert list(day.readings["value"]) == [6.0]
    assert len(day.rejected) == 1
    assert "2023-10-16T13:00:00" in day.rejected[0] and "null" in day.rejected[0]


def test_fetch_day_survives_odd_coverage_and_rejects_rows_without_time(make_source) -> None:
    body = load("responses/measurements.json")
    body["results"][0]["coverage"] = None
    body["results"][1]["coverage"] = {"percentComplete": "n/a", "datetimeFrom": None}
    body["results"][1]["summary"] = None
    no_time = copy.deepcopy(body["results"][0])
    no_time["period"] = {"label": "1hour", "datetimeFrom": None, "datetimeTo": None}
    body["results"].append(no_time)
    replay = Replay(lambda _: ok(body))

    day = make_source(replay).fetch_day(PM25, DAY)

    assert list(day.readings["value"]) == [6.0, 7.5]
    assert len(day.rejected) == 1 and "datetimeFrom" in day.rejected[0]


def test_fetch_day_with_no_data_is_empty_not_an_error(make_source) -> None:
    replay = Replay(lambda _: ok(page([], 0)))
    day = make_source(replay).fetch_day(PM25, DAY)
    assert day.readings.empty and list(day.readings.columns) == list(READING_COLUMNS)


def test_raw_measurements_are_averaged_to_utc_hours(make_source) -> None:
    template = load("resources/measurement.json")

    def raw(start: str, minutes: int, value: float | None) -> dict:
        row = copy.deepcopy(template)
        begins = pd.Timestamp(start, tz="UTC")
        row["period"] = {
            "label": "raw",
            "interval": f"00:{minutes:02d}:00",
            "datetimeFrom": {"utc": begins.isoformat(), "local": None},
            "datetimeTo": {"utc": (begins + pd.Timedelta(minutes=minutes)).isoformat()},
        }
        row["value"] = value
        return row

    rows = [
        raw("2023-10-15T23:45:00Z", 15, 99.0),  # previous day
        raw("2023-10-16T12:00:00Z", 15, 4.0),
        raw("2023-10-16T12:15:00Z", 15, 6.0),
        raw("2023-10-16T12:30:00Z", 15, None),
        raw("2023-10-16T12:45:00Z", 15, 8.0),
        raw("2023-10-16T13:00:00Z", 30, 10.0),
        raw("2023-10-16T23:45:00Z", 15, 2.0),  # ends at midnight: still this day
    ]
    replay = Replay(lambda _: ok(page(rows, len(rows))))

    day = make_source(replay, measurements="raw").fetch_day(PM25, DAY)

    assert replay.paths() == ["/v3/sensors/3920/measurements"]
    assert replay.params()["datetime_from"] == "2023-10-16T00:00:00Z"
    readings = day.readings.set_index("datetime_utc")["value"]
    assert readings.to_dict() == {
        pd.Timestamp("2023-10-16 12:00"): 6.0,
        pd.Timestamp("2023-10-16 13:00"): 10.0,
        pd.Timestamp("2023-10-16 23:00"): 2.0,
    }
    assert set(day.readings["units"]) == {"µg/m³"}
    assert len(day.rejected) == 1 and "12:30" in day.rejected[0]


# --- rate limits ------------------------------------------------------------------------


def test_429_waits_as_the_real_headers_say_then_succeeds(make_source, fake_time) -> None:
    replay = Replay(in_order(error("429_rate_limited"), ok(load("responses/measurements.json"))))

    day = make_source(replay).fetch_day(PM25, DAY)

    assert fake_time.sleeps == [37.0]
    assert len(replay.requests) == 2
    assert len(day.readings) == 2


@pytest.mark.parametrize(("headers", "waited"), [({}, 60.0), ({"x-ratelimit-reset": "0"}, 1.0)])
def test_429_without_a_usable_reset_still_waits(make_source, fake_time, headers, waited) -> None:
    too_many = httpx.Response(429, json=ERRORS["429_rate_limited"]["body"], headers=headers)
    replay = Replay(in_order(too_many, ok(load("responses/measurements.json"))))

    make_source(replay).fetch_day(PM25, DAY)

    assert fake_time.sleeps == [waited]
    assert len(replay.requests) == 2


def test_remaining_zero_makes_the_next_call_wait_for_reset(make_source, fake_time) -> None:
    spent = {"x-ratelimit-limit": "60", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "12"}
    measurements = load("responses/measurements.json")
    replay = Replay(in_order(ok(measurements, spent), ok(measurements)))
    source = make_source(replay)

    source.fetch_day(PM25, DAY)
    assert fake_time.sleeps == []
    source.fetch_day(PM25, DAY)

    assert fake_time.sleeps == [12.0]
    assert len(replay.requests) == 2


def test_the_limiter_is_shared_by_sources_and_blocks_the_61st_call(make_source, fake_time) -> None:
    measurements = load("responses/measurements.json")

    def answer(_: httpx.Request) -> httpx.Response:
        fake_time.now += 0.5  # each call takes half a second
        return ok(measurements)

    replay = Replay(answer)
    # two sources on one state_dir stand for two runs in two processes
    first, second = make_source(replay), make_source(replay)
    start = fake_time.now
    for n in range(60):
        (first if n % 2 else second).fetch_day(PM25, DAY)
    assert fake_time.sleeps == []

    first.fetch_day(PM25, DAY)

    assert fake_time.sleeps == [pytest.approx(30.0)]  # the oldest call leaves the minute
    assert len(replay.requests) == 61
    assert fake_time.now == pytest.approx(start + 60.5)


def test_another_key_has_its_own_limits(make_source, fake_time) -> None:
    replay = Replay(lambda _: ok(load("responses/measurements.json")))
    for _ in range(60):
        make_source(replay, api_key="key-a").fetch_day(PM25, DAY)
    make_source(replay, api_key="key-b").fetch_day(PM25, DAY)
    assert fake_time.sleeps == []


def test_the_hour_window_holds_calls_back_until_the_oldest_is_an_hour_old(tmp_path) -> None:
    limiter = SharedRateLimiter(tmp_path / "limits.json", per_minute=60, per_hour=100)
    start = 1_000_000.0
    for n in range(100):
        assert limiter.try_acquire(start + n * 1.5) == 0.0
    assert limiter.try_acquire(start + 150) == pytest.approx(3450.0)
    assert limiter.try_acquire(start + 3600) == 0.0


def _take_slots(path: str, now: float, tries: int, out: Any) -> None:
    limiter = SharedRateLimiter(Path(path), per_minute=60, per_hour=2000)
    out.put(sum(limiter.try_acquire(now) == 0.0 for _ in range(tries)))


def test_processes_sharing_the_file_never_take_more_than_60_slots(tmp_path) -> None:
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    path = str(tmp_path / "limits.json")
    workers = [
        context.Process(target=_take_slots, args=(path, 1_000_000.0, 40, out)) for _ in range(3)
    ]
    for worker in workers:
        worker.start()
    granted = [out.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert sum(granted) == 60


def test_a_damaged_limiter_file_starts_afresh(tmp_path) -> None:
    path = tmp_path / "limits.json"
    path.write_text('{"requests": [1, 2', encoding="utf-8")
    assert SharedRateLimiter(path, 60, 2000).try_acquire(10.0) == 0.0
    assert json.loads(path.read_text())["requests"] == [10.0]


# --- retries ----------------------------------------------------------------------------


def test_5xx_and_408_are_retried_with_exponential_backoff(make_source, fake_time) -> None:
    replay = Replay(
        in_order(
            httpx.Response(503, text="upstream busy"),
            httpx.Response(502, json={"message": "Bad gateway"}),
            error("408_timeout"),
            httpx.Response(500, json={"detail": "Internal Server Error"}),
            ok(load("responses/measurements.json")),
        )
    )
    day = make_source(replay).fetch_day(PM25, DAY)

    assert fake_time.sleeps == [1.0, 2.0, 4.0, 8.0]
    assert len(replay.requests) == 5
    assert len(day.readings) == 2


def test_backoff_has_full_jitter(make_source, fake_time) -> None:
    replay = Replay(in_order(httpx.Response(503), httpx.Response(503), ok(page([], 0))))
    make_source(replay).with_hooks(jitter=lambda: 0.25).fetch_day(PM25, DAY)
    assert fake_time.sleeps == [0.25, 0.5]


def test_network_errors_are_retried(make_source, fake_time) -> None:
    answers = [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")]

    def answer(request: httpx.Request) -> httpx.Response:
        if answers:
            raise answers.pop(0)
        return ok(load("responses/measurements.json"))

    replay = Replay(answer)
    day = make_source(replay).fetch_day(PM25, DAY)

    assert fake_time.sleeps == [1.0, 2.0]
    assert len(replay.requests) == 3 and len(day.readings) == 2


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused")


def test_a_host_that_never_answers_is_unreachable_after_three_tries(make_source, fake_time):
    replay = Replay(refused)

    with pytest.raises(SourceUnreachable, match=r"OpenAQ unreachable at .* since .* UTC"):
        make_source(replay).fetch_day(PM25, DAY)

    assert len(replay.requests) == 3 and fake_time.sleeps == [1.0, 2.0]


def test_once_unreachable_the_rest_of_a_run_fails_at_once(make_source, fake_time):
    """A 30-day backfill of 8 sensors asks three times, not 240 sensor-days x max_wait_s."""
    replay = Replay(refused)
    sensors = [Sensor(3920 + i, 2178, "pm25", "µg/m³") for i in range(8)]
    sensor_days = [(s, DAY + dt.timedelta(days=d)) for d in range(30) for s in sensors]

    collected = collect_readings(make_source(replay), sensor_days, pd.Timestamp("2025-01-01"))

    assert len(replay.requests) == 3 and sum(fake_time.sleeps) == 3.0
    assert len(collected.failures) == 240 and collected.readings.empty
    assert all("unreachable" in message for message in collected.failures.values())


def test_persistent_5xx_gives_up_with_a_clear_error_within_the_budget(
    make_source, fake_time
) -> None:
    replay = Replay(lambda _: httpx.Response(503, json={"message": "Service Unavailable"}))

    with pytest.raises(SourceError) as raised:
        make_source(replay).fetch_day(PM25, DAY)

    message = str(raised.value)
    assert fake_time.sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
    assert sum(fake_time.sleeps) <= 300
    assert len(replay.requests) == 10
    assert "GET /v3/sensors/3920/hours" in message
    assert "HTTP 503" in message and "Service Unavailable" in message
    assert "243 s" in message and "max_wait_s=300" in message


def test_the_retry_budget_is_the_runs_not_each_requests(make_source, fake_time) -> None:
    """An API answering 503 to everything: a 30-day backfill of 8 sensors stops after one
    budget of retries (~5 minutes), not 240 of them (20 hours)."""
    replay = Replay(lambda _: httpx.Response(503, json={"message": "Service Unavailable"}))
    sensors = [Sensor(3920 + i, 2178, "pm25", "µg/m³") for i in range(8)]
    sensor_days = [(s, DAY + dt.timedelta(days=d)) for d in range(30) for s in sensors]

    collected = collect_readings(make_source(replay), sensor_days, pd.Timestamp("2025-01-01"))

    assert sum(fake_time.sleeps) <= 300 and len(replay.requests) == 10
    assert len(collected.failures) == 240
    assert all("keeps failing" in message for message in collected.failures.values())


def test_a_429_that_never_ends_gives_up_too(make_source, fake_time) -> None:
    replay = Replay(lambda _: error("429_rate_limited"))
    with pytest.raises(SourceError) as raised:
        make_source(replay, max_wait_s=100).fetch_day(PM25, DAY)
    assert "HTTP 429" in str(raised.value) and "max_wait_s=100" in str(raised.value)
    assert fake_time.sleeps == [37.0, 37.0]
    assert len(replay.requests) == 3


# --- errors -----------------------------------------------------------------------------

# errors.json key -> (what is called, fragments the message must contain)
REFUSALS: dict[str, tuple[str, list[str]]] = {
    "401_no_key": ("fetch", ["OPENAQ_API_KEY", "https://explore.openaq.org/register", "401"]),
    "401_bad_key": ("fetch", ["OPENAQ_API_KEY", "Invalid credentials"]),
    "403_policy": ("fetch", ["rate-limit policy", "dev@openaq.org", "Wait"]),
    "404_location": ("list", ["location 2178", "Location not found", "AQ_LOCATIONS"]),
    "404_sensor": ("fetch", ["sensor 3920", "Sensor not found", "sensor_catalog"]),
    "410_gone": ("fetch", ["retired", "v3", "OPENAQ_BASE_URL"]),
    "422_invalid": ("fetch", ["query.limit='abc'", "Input should be a valid integer"]),
}
RETRIED = {"408_timeout", "429_rate_limited"}


def test_every_error_in_errors_json_is_covered() -> None:
    statuses = {key for key in ERRORS if not key.startswith("_")}
    assert statuses == set(REFUSALS) | RETRIED


@pytest.mark.parametrize("key", sorted(REFUSALS))
def test_refusals_name_cause_and_fix_and_are_not_retried(make_source, fake_time, key) -> None:
    call, fragments = REFUSALS[key]
    replay = Replay(lambda _: error(key))
    source = make_source(replay, locations="2178")

    with pytest.raises(SourceError) as raised:
        if call == "list":
            source.list_sensors()
        else:
            source.fetch_day(PM25, DAY)

    for fragment in fragments:
        assert fragment in str(raised.value)
    assert "test-key" not in str(raised.value)
    assert len(replay.requests) == 1
    assert fake_time.sleeps == []


def test_408_from_errors_json_is_retried(make_source, fake_time) -> None:
    replay = Replay(in_order(error("408_timeout"), ok(load("responses/measurements.json"))))
    assert len(make_source(replay).fetch_day(PM25, DAY).readings) == 2
    assert fake_time.sleeps == [1.0]


def test_missing_key_fails_before_any_request(make_source) -> None:
    replay = Replay(lambda _: ok(load("responses/locations.json")))
    source = make_source(replay, api_key="", locations="2178")

    for call in (source.list_sensors, lambda: source.fetch_day(PM25, DAY)):
        with pytest.raises(SourceError) as raised:
            call()
        assert "OPENAQ_API_KEY" in str(raised.value)
        assert "https://explore.openaq.org/register" in str(raised.value)
    assert replay.requests == []


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({}, "AQ_LOCATIONS, AQ_COORDINATES (with AQ_RADIUS_M), AQ_BBOX or AQ_COUNTRY"),
        ({"locations": "2178", "bbox": "1,2,3,4"}, "more than one area"),
        ({"locations": "Del Norte"}, "AQ_LOCATIONS='Del Norte'"),
        ({"coordinates": "35.1"}, "AQ_COORDINATES"),
        ({"coordinates": "-106.58,35.13"}, "latitude first"),
        ({"bbox": "35,-106,36"}, "AQ_BBOX"),
        ({"country": "USA"}, "AQ_COUNTRY"),
        ({"locations": "2178", "base_url": "api.openaq.org"}, "OPENAQ_BASE_URL"),
    ],
)
def test_bad_discovery_config_fails_before_any_request(make_source, config, fragment) -> None:
    replay = Replay(lambda _: ok(load("responses/locations.json")))
    with pytest.raises(SourceError) as raised:
        make_source(replay, **config).list_sensors()
    assert fragment in str(raised.value)
    assert replay.requests == []


def test_unknown_measurements_mode_fails_before_any_request(make_source) -> None:
    replay = Replay(lambda _: ok(load("responses/measurements.json")))
    with pytest.raises(SourceError, match="OPENAQ_MEASUREMENTS"):
        make_source(replay, measurements="daily").fetch_day(PM25, DAY)
    assert replay.requests == []


def test_a_non_json_answer_names_the_base_url(make_source) -> None:
    replay = Replay(lambda _: httpx.Response(200, text="<html>proxy login</html>"))
    with pytest.raises(SourceError, match="OPENAQ_BASE_URL"):
        make_source(replay).fetch_day(PM25, DAY)


def test_base_url_may_carry_a_path_prefix_or_the_version(make_source) -> None:
    replay = Replay(lambda _: ok(load("responses/measurements.json")))
    make_source(replay, base_url="http://replay.local/openaq/v3/").fetch_day(PM25, DAY)
    assert str(replay.requests[0].url).startswith(
        "http://replay.local/openaq/v3/sensors/3920/hours?"
    )


# --- in Dagster -------------------------------------------------------------------------


def test_hooks_survive_dagster_building_the_resource(make_source) -> None:
    replay = Replay(lambda _: ok(load("responses/locations.json")))

    @asset
    def catalog_size(source: OpenAQSource) -> int:
        return len(source.list_sensors())

    result = materialize(
        [catalog_size], resources={"source": make_source(replay, locations="2178")}
    )

    assert result.success
    assert result.output_for_node("catalog_size") == 8
    assert replay.paths() == ["/v3/locations/2178"]
