"""Property-based fuzzing of the API: whatever a client sends, the answer is never a 5xx, and a
200 is a well-formed forecast for every series sent."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from serving.tests.conftest import AUTH

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=30,
)

times = st.one_of(
    st.datetimes().map(lambda t: t.isoformat() + "Z"),
    st.datetimes().map(lambda t: t.isoformat()),
    st.datetimes().map(lambda t: t.isoformat() + "+05:30"),
    st.sampled_from(["", "Z", "NaT", "now", "2025-02-30T00:00:00Z", "2025-05-01T24:00:00Z"]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=70),
)
numbers = st.one_of(
    st.none(),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(min_value=-20, max_value=2000),
    st.sampled_from([-999.0, -9999.0, 9999.0, 99999.0, 0.0, -0.0, 1e9, -1e9, 1e10]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=5),
)
zones = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "UTC",
            "Z",
            "+05:30",
            "-03:00",
            "+0545",
            "+18:00",
            "+18:01",
            "-99:99",
            "America/Mexico_City",
        ]
    ),
    st.sampled_from(["Europe/Berlin", "Etc/GMT+12", "posixrules", "America", "..", "/etc/passwd"]),
    st.text(max_size=70),
)


@st.composite
def readings(draw, max_rows: int = 60) -> dict:
    n = draw(st.integers(0, max_rows))
    stamps = draw(st.lists(times, min_size=n, max_size=n))
    if draw(st.booleans()):  # mostly well-formed, so the deeper code paths run too
        start = draw(st.integers(1_600_000_000, 1_900_000_000))
        step = draw(st.sampled_from([600, 3600, 7200]))
        stamps = [start + i * step for i in range(n)]
    values = draw(st.lists(numbers, min_size=n, max_size=n + draw(st.sampled_from([0, 0, 1]))))
    out: dict = {"timestamps": stamps, "values": values}
    if draw(st.booleans()):
        out["units"] = draw(
            st.sampled_from(["µg/m³", "ppm", "ppb", "c", "%", ""]) | st.text(max_size=70)
        )
    return out


@st.composite
def series(draw) -> dict:
    out = draw(readings())
    if draw(st.booleans()):
        out["sensor_id"] = draw(
            st.sampled_from([9001002, 9002002, 0, -1, 2**63, 2**64]) | st.integers()
        )
    if draw(st.booleans()):
        out["timezone"] = draw(zones)
    if draw(st.booleans()):
        out["origin"] = draw(times)
    if draw(st.booleans()):
        out["parameter"] = draw(st.sampled_from(["pm25", "o3", ""]) | st.text(max_size=70))
    if draw(st.booleans()):
        names = st.sampled_from(["pm10", "o3", "no2", "temperature", "pm25", "bogus"]) | st.text(
            max_size=70
        )
        out["covariates"] = draw(st.dictionaries(names, readings(30), max_size=3))
    if draw(st.integers(0, 9)) == 0:
        out[draw(st.text(max_size=10))] = draw(json_values)
    return out


valid_numbers = st.one_of(
    st.none(),
    st.floats(min_value=-20, max_value=2000),
    st.floats(min_value=-1e9, max_value=1e9),
    st.sampled_from([-999.0, -9999.0, 9999.0, 99999.0, 0.0, 1e9, -1e9]),
)
valid_zones = st.sampled_from(
    [None, "UTC", "Z", "+05:30", "-03:00", "+0545", "America/Mexico_City", "Asia/Kathmandu"]
)


@st.composite
def valid_readings(draw, max_rows: int = 80) -> dict:
    n = draw(st.integers(0, max_rows))
    start = draw(st.integers(1_600_000_000, 1_900_000_000))
    steps = draw(
        st.lists(st.sampled_from([0, 600, 3600, 3600, 3600, 7200, 86400]), min_size=n, max_size=n)
    )
    stamps, t = [], start
    for step in steps:
        t += step
        stamps.append(t)
    if draw(st.booleans()):
        stamps = [f"{dt.datetime.fromtimestamp(x, dt.UTC):%Y-%m-%dT%H:%M:%S}Z" for x in stamps]
    values = draw(st.lists(valid_numbers, min_size=n, max_size=n))
    return {"timestamps": stamps, "values": values}


@st.composite
def valid_series(draw) -> dict:
    """A well-formed series, sometimes with one field spoiled by arbitrary JSON."""
    out = draw(valid_readings())
    out["sensor_id"] = draw(st.sampled_from([None, 9001002, 9003002, 9005002, 1, 2**63 - 1]))
    out["timezone"] = draw(valid_zones)
    if draw(st.booleans()) and out["timestamps"]:
        last = out["timestamps"][-1]
        out["origin"] = (
            last if isinstance(last, str) else last + draw(st.integers(-100, 100)) * 3600
        )
    out["covariates"] = draw(
        st.dictionaries(
            st.sampled_from(["pm10", "o3", "no2", "temperature"]), valid_readings(40), max_size=3
        )
    )
    if draw(st.integers(0, 5)) == 0:
        field = draw(
            st.sampled_from(
                [
                    "timestamps",
                    "values",
                    "sensor_id",
                    "timezone",
                    "origin",
                    "covariates",
                    "units",
                    "parameter",
                ]
            )
        )
        out[field] = draw(json_values)
    return out


valid_bodies = st.fixed_dictionaries({"series": st.lists(valid_series(), min_size=1, max_size=3)})
bodies = st.one_of(
    valid_bodies,
    valid_bodies,
    valid_bodies,
    st.fixed_dictionaries({"series": st.lists(series(), min_size=0, max_size=6)}),
    json_values.map(lambda v: {"series": v}),
    json_values,
)


def assert_sound(response, sent: object) -> None:
    event(f"status {response.status_code}")
    assert response.status_code < 500, response.text[:500]
    if response.status_code == 200:
        answer = response.json()
        assert isinstance(sent, dict)
        assert len(answer["results"]) == len(sent["series"])
        for result in answer["results"]:
            assert set(result) == {"sensor_id", "origin_utc", "level", "forecasts", "note"}
    elif response.headers.get("content-type") == "application/json":
        assert "detail" in response.json()


@pytest.fixture(scope="module")
def client(session_client) -> TestClient:
    return session_client


@pytest.mark.slow(minutes=1)
@settings(FUZZ, max_examples=250)
@given(body=bodies)
def test_no_body_gets_a_5xx(client, body):
    response = client.post("/v1/forecast", content=json.dumps(body).encode(), headers=AUTH)

    assert_sound(response, body)


@FUZZ
@given(raw=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_no_bytes_get_a_5xx(client, raw):
    response = client.post("/v1/forecast", content=raw, headers=AUTH)

    assert response.status_code in {413, 422}, response.text[:300]


@FUZZ
@given(sensor=st.text(max_size=40) | st.integers().map(str))
def test_no_sensor_path_gets_a_5xx(client, sensor):
    response = client.get(f"/v1/sensors/{quote(sensor, safe='')}/forecast", headers=AUTH)

    assert response.status_code in {200, 404, 422}, response.text[:300]


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
    path=st.sampled_from(["/v1/forecast", "/v1/model", "/readyz", "/livez", "/metrics", "/v1"])
    | st.text(max_size=30).map(lambda p: "/" + quote(p)),
    token=st.none() | st.text(max_size=20),
)
def test_no_method_path_or_token_gets_a_5xx(client, method, path, token):
    headers = {} if token is None else {"Authorization": f"Bearer {quote(token)}"}

    response = client.request(method, path, headers=headers)

    assert response.status_code < 500, response.text[:300]
