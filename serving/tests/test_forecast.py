"""POST /v1/forecast and GET /v1/sensors/{id}/forecast: the batch path's numbers, batches,
and a clear 4xx for every bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.tests.conftest import (
    AUTH,
    expected_forecasts,
    history_body,
    settings_for,
    snapshot_readings,
    values_of,
)

HORIZONS = [1, 3, 6, 12, 24]


def location_readings(readings: pd.DataFrame, sensor_id: int) -> pd.DataFrame:
    location = readings.loc[readings["sensor_id"] == sensor_id, "location_id"].iloc[0]
    return readings[readings["location_id"] == location].drop(columns="timezone", errors="ignore")


def post(client: TestClient, *series: dict, **kwargs):
    return client.post("/v1/forecast", json={"series": list(series)}, headers=AUTH, **kwargs)


def assert_close(got: list[float | None], want: list[float]) -> None:
    np.testing.assert_allclose(np.array(got, dtype=float), want, rtol=1e-5, atol=1e-5)


def fields(response) -> list[str]:
    return [problem["field"] for problem in response.json()["detail"]]


# ---------------------------------------------------------------------------------------------
# Same numbers as the batch path


def test_answers_carry_the_batch_paths_intervals_chances_and_categories(session_client, store):
    from aq_assets.ml.forecasting import latest_forecasts

    snapshot = snapshot_readings(store)
    sensor = store.spec.sensors[0]
    readings = location_readings(snapshot, sensor)

    answer = post(session_client, history_body(snapshot, sensor, store.timezones)).json()

    assert answer["units"] == "µg/m³"
    batch = latest_forecasts(
        store.forecasters["1"], readings, store.timezones, thresholds=(15.0, 35.4)
    ).set_index("horizon")
    assert store.forecasters["1"].intervals is not None
    for forecast in answer["results"][0]["forecasts"]:
        row = batch.loc[forecast["horizon_hours"]]
        quantiles = forecast["quantiles"]
        assert list(quantiles) == ["q05", "q10", "q50", "q90", "q95"]
        assert_close(list(quantiles.values()), row[list(quantiles)].tolist())
        assert list(quantiles.values()) == sorted(quantiles.values())
        assert [e["above"] for e in forecast["exceedance"]] == [15.0, 35.4]
        assert_close(
            [e["probability"] for e in forecast["exceedance"]],
            row[["p_above_15", "p_above_35_4"]].tolist(),
        )
        assert forecast["category"] == row["category"]


def test_units_spelled_otherwise_give_the_same_answer(session_client, store):
    """Clients write "ug/m3" or "PPM"; the readings are cleaned as in the usual spelling."""
    snapshot = snapshot_readings(store)
    body = history_body(snapshot, store.spec.sensors[0], store.timezones)
    respelled = {"µg/m³": "ug/m3", "ppm": "PPM"}
    spelled = json.loads(json.dumps(body))
    for part in [spelled, *spelled["covariates"].values()]:
        assert part["units"] in respelled  # the test changes every spelling it sends
        part["units"] = respelled[part["units"]]
    # A value only a reading judged in its units' range drops: 5,000 µg/m³ of pm25.
    for part in (body, spelled):
        part["values"][-2] = 5000.0

    usual, other = post(session_client, body).json(), post(session_client, spelled).json()

    assert other["results"] == usual["results"]
    assert usual["results"][0]["forecasts"]


def test_a_service_configured_with_other_thresholds_answers_those(store):
    app = create_app(settings_for(store.home, thresholds="25,50"))
    snapshot = snapshot_readings(store)

    with TestClient(app) as client:
        answer = post(client, history_body(snapshot, store.spec.sensors[0], store.timezones))

    for forecast in answer.json()["results"][0]["forecasts"]:
        assert [e["above"] for e in forecast["exceedance"]] == [25.0, 50.0]


@pytest.mark.parametrize(
    "hours_after_last", [None, -30, 0, 2], ids=["latest", "earlier", "at-last", "after-last"]
)
def test_a_history_gets_the_batch_paths_forecasts(session_client, store, hours_after_last):
    snapshot = snapshot_readings(store)
    sensor = store.spec.sensors[1]
    readings = location_readings(snapshot, sensor)
    origin = None
    if hours_after_last is not None:
        last = readings.loc[readings["sensor_id"] == sensor, "datetime_utc"].max()
        origin = last + pd.Timedelta(hours=hours_after_last)

    response = post(session_client, history_body(snapshot, sensor, store.timezones, origin))

    assert response.status_code == 200, response.text
    answer = response.json()
    expected = expected_forecasts(store.forecasters["1"], readings, store.timezones, origin)
    assert answer["model_version"] == "1" and answer["model_name"] == "aq-forecast"
    (result,) = answer["results"]
    assert result["sensor_id"] == sensor and result["note"] is None
    assert_close(values_of(result), expected[sensor])
    origin_utc = pd.Timestamp(result["origin_utc"]).tz_localize(None)
    if origin is not None:
        assert origin_utc == origin
    assert [f["horizon_hours"] for f in result["forecasts"]] == HORIZONS
    assert [pd.Timestamp(f["forecast_for_utc"]).tz_localize(None) for f in result["forecasts"]] == [
        origin_utc + pd.Timedelta(hours=h) for h in HORIZONS
    ]


def test_a_batch_answers_every_series_in_order_with_one_model_version(session_client, store):
    snapshot = snapshot_readings(store)
    sensors = [*store.spec.sensors, store.spec.sensors[0]]
    series = [history_body(snapshot, s, store.timezones) for s in sensors]
    series.append({**series[0], "sensor_id": None})  # a sensor the model does not know

    response = post(session_client, *series)

    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["sensor_id"] for r in results] == [*sensors, None]
    for sensor, result in zip(sensors, results, strict=False):
        expected = expected_forecasts(
            store.forecasters["1"], location_readings(snapshot, sensor), store.timezones
        )
        assert_close(values_of(result), expected[sensor])
    assert all(v is not None for v in values_of(results[-1]))
    assert values_of(results[-1]) != values_of(results[0])  # identity matters to the model


def test_timestamps_may_be_offsets_or_unix_seconds(session_client, store):
    snapshot = snapshot_readings(store)
    sensor = store.spec.sensors[2]
    utc = history_body(snapshot, sensor, store.timezones)
    times = pd.to_datetime([t.rstrip("Z") for t in utc["timestamps"]])
    in_paris = {
        **utc,
        "timestamps": [(t + pd.Timedelta(hours=2)).isoformat() + "+02:00" for t in times],
    }
    in_seconds = {**utc, "timestamps": [int(t.timestamp()) for t in times]}
    shuffled = dict(utc)
    order = np.random.default_rng(0).permutation(len(times))
    shuffled["timestamps"] = [utc["timestamps"][i] for i in order]
    shuffled["values"] = [utc["values"][i] for i in order]

    answers = [
        post(session_client, s).json()["results"][0] for s in (utc, in_paris, in_seconds, shuffled)
    ]

    assert all(a == answers[0] for a in answers)


def test_a_known_sensor_gets_the_batch_paths_forecasts_from_online_features(session_client, store):
    snapshot = snapshot_readings(store).drop(columns="timezone")
    expected = expected_forecasts(store.forecasters["1"], snapshot, store.timezones)

    for sensor in store.spec.sensors:
        response = session_client.get(f"/v1/sensors/{sensor}/forecast", headers=AUTH)

        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["model_version"] == "1" and answer["sensor_id"] == sensor
        assert_close(values_of(answer), expected[sensor])
        last = snapshot.loc[snapshot["sensor_id"] == sensor, "datetime_utc"].max()
        assert pd.Timestamp(answer["last_reading_utc"]).tz_localize(None) == last
        newest = snapshot["datetime_utc"].max().floor("h")
        assert pd.Timestamp(answer["snapshot_latest_reading_utc"]).tz_localize(None) == newest


def test_a_posted_network_is_read_as_the_snapshot_reads_the_other_sensors(session_client, store):
    """`covariates.network`: the mean of the other sensors' readings of the parameter. Posted
    as the snapshot computes it, a history gets the known sensor's feature row and forecasts;
    without it, the row of a sensor with no neighbours."""
    from aq_assets.ml.features import NETWORK, RELATIVE_COLUMNS, origin_features
    from serving.champion import LoadedModel, OnlineForecaster
    from serving.forecasting import histories, read_request
    from serving.tests.conftest import history_of

    snapshot = snapshot_readings(store)
    sensor = store.spec.sensors[0]
    known = history_of(snapshot, store.timezones).sensors[sensor]
    network = known.covariates[NETWORK]
    stamps = network.hours.astype("datetime64[h]").astype("datetime64[s]").astype(str)
    body = history_body(snapshot, sensor, store.timezones)
    with_network = {
        **body,
        "covariates": {
            **body["covariates"],
            NETWORK: {"timestamps": [f"{t}Z" for t in stamps], "values": network.values.tolist()},
        },
    }
    model = LoadedModel("aq-forecast", "1", OnlineForecaster(store.forecasters["1"]))
    request = read_request(json.dumps({"series": [with_network, body]}).encode())
    [(posted, _), (alone, _)], _ = histories(request, model, settings_for(store.home))
    origin = int(known.target.hours[-1])

    row = origin_features(store.spec, posted, origin)
    assert row is not None
    np.testing.assert_array_equal(row, origin_features(store.spec, known, origin))
    without = origin_features(store.spec, alone, origin)
    assert without is not None
    columns = store.spec.feature_columns
    network_columns = [
        i for i, c in enumerate(columns) if c.startswith(NETWORK) or c in RELATIVE_COLUMNS
    ]
    assert len(network_columns) == 5 and np.isnan(without[network_columns]).all()
    assert not np.isnan(row[network_columns]).any()

    answer = session_client.get(f"/v1/sensors/{sensor}/forecast", headers=AUTH).json()
    (result,) = post(session_client, with_network).json()["results"]
    assert values_of(result) == values_of(answer)


def test_nulls_with_a_reason_where_there_is_nothing_to_forecast_from(session_client, store):
    snapshot = snapshot_readings(store)
    sensor = store.spec.sensors[0]
    body = history_body(snapshot, sensor, store.timezones)
    last = pd.Timestamp(body["timestamps"][-1].rstrip("Z"))
    stale = {**body, "origin": (last + pd.Timedelta(hours=10)).isoformat()}
    empty = {**body, "values": [None] * len(body["values"])}
    early = {**body, "origin": "2020-01-01T00:00:00Z"}

    results = post(session_client, stale, empty, early).json()["results"]

    assert results[0]["level"] is None and values_of(results[0]) == [None] * 5
    assert "no current level" in results[0]["note"]
    assert results[1]["forecasts"] == [] and "no valid reading" in results[1]["note"]
    assert results[2]["forecasts"] == [] and "before the first" in results[2]["note"]


# ---------------------------------------------------------------------------------------------
# 404, 413, 422


@pytest.mark.parametrize("sensor", ["123456", "9001011"], ids=["unknown", "not-the-parameter"])
def test_an_unknown_sensor_is_404(session_client, sensor):
    response = session_client.get(f"/v1/sensors/{sensor}/forecast", headers=AUTH)

    assert response.status_code == 404
    assert fields(response) == ["sensor_id"]
    assert sensor in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize("sensor", ["abc", "-5", "1e3", str(2**64)])
def test_a_malformed_sensor_id_is_422(session_client, sensor):
    response = session_client.get(f"/v1/sensors/{sensor}/forecast", headers=AUTH)

    assert response.status_code == 422
    assert fields(response) == ["sensor_id"]


def valid_series(store) -> dict:
    snapshot = snapshot_readings(store)
    return history_body(snapshot, store.spec.sensors[0], store.timezones)


def with_values(series: dict, index: int, value) -> dict:
    values = list(series["values"])
    values[index] = value
    return {**series, "values": values}


def with_timestamp(series: dict, index: int, stamp) -> dict:
    stamps = list(series["timestamps"])
    stamps[index] = stamp
    return {**series, "timestamps": stamps}


BAD_SERIES = [
    pytest.param(lambda s: {**s, "values": s["values"][:-1]}, "series[0].values", id="lengths"),
    pytest.param(lambda s: with_timestamp(s, 3, "yesterday"), "series[0].timestamps[3]", id="time"),
    pytest.param(
        lambda s: with_timestamp(s, 4, "2025-13-01T00:00:00Z"),
        "series[0].timestamps[4]",
        id="month",
    ),
    pytest.param(
        lambda s: with_timestamp(s, 5, "1900-01-01T00:00:00Z"), "series[0].timestamps[5]", id="year"
    ),
    pytest.param(lambda s: with_timestamp(s, 6, 10**17), "series[0].timestamps[6]", id="seconds"),
    pytest.param(lambda s: with_values(s, 2, 1e12), "series[0].values[2]", id="huge"),
    pytest.param(lambda s: with_values(s, 2, "high"), "series[0].values[2]", id="text"),
    pytest.param(lambda s: {**s, "timezone": "Mars/Olympus"}, "series[0].timezone", id="zone"),
    pytest.param(lambda s: {**s, "timezone": "+31:00"}, "series[0].timezone", id="offset"),
    pytest.param(lambda s: {**s, "parameter": "o3"}, "series[0].parameter", id="parameter"),
    pytest.param(
        lambda s: {**s, "origin": "2150-01-01T00:00:00Z"}, "series[0].origin", id="origin"
    ),
    pytest.param(lambda s: {**s, "sensor_id": -1}, "series[0].sensor_id", id="sensor"),
    pytest.param(lambda s: {**s, "colour": "red"}, "series[0].colour", id="extra-field"),
    pytest.param(
        lambda s: {**s, "covariates": {"pm7": s["covariates"]["pm10"]}},
        "series[0].covariates.pm7",
        id="covariate",
    ),
    pytest.param(
        lambda s: {**s, "covariates": {"pm10": {**s["covariates"]["pm10"], "values": [1.0]}}},
        "series[0].covariates.pm10.values",
        id="covariate-lengths",
    ),
    pytest.param(
        lambda s: {**s, "covariates": {"pm10": with_values(s["covariates"]["pm10"], 1, "x")}},
        "series[0].covariates.pm10.values[1]",
        id="covariate-value",
    ),
    pytest.param(
        lambda s: {**s, "covariates": {"pm10": {"values": s["covariates"]["pm10"]["values"]}}},
        "series[0].covariates.pm10.timestamps",
        id="covariate-missing-field",
    ),
    pytest.param(
        lambda s: {
            **s,
            "covariates": {
                "pm10": s["covariates"]["pm10"],
                "no2": {"values": s["covariates"]["pm10"]["values"]},
            },
        },
        "series[0].covariates.no2.timestamps",
        id="second-covariate-missing-field",
    ),
]


@pytest.mark.parametrize(("spoil", "field"), BAD_SERIES)
def test_bad_input_is_422_naming_the_field(session_client, store, spoil, field):
    response = post(session_client, spoil(valid_series(store)))

    assert response.status_code == 422, response.text
    assert field in fields(response)
    assert all("input" not in problem for problem in response.json()["detail"])  # no echo


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(b'{"series": [', "body", id="truncated"),
        pytest.param(b"not json", "body", id="not-json"),
        pytest.param(b'{"series": []}', "series", id="no-series"),
        pytest.param(b"{}", "series", id="no-body-fields"),
        pytest.param(b"[1, 2]", "body", id="not-an-object"),
        pytest.param(b"[" * 1000 + b"]" * 1000, "body", id="nested-arrays"),
        pytest.param(
            b'{"series": [{"timestamps": [0], "values": [1], "covariates": '
            + b'{"a":' * 1000
            + b"1"
            + b"}" * 1001
            + b"]}",
            "body",
            id="nested-inside-covariates",
        ),
        pytest.param(
            b'{"series": [{"timestamps": [0], "values": ' + b"[" * 1000 + b"]" * 1000 + b"}]}",
            "body",
            id="nested-inside-values",
        ),
    ],
)
def test_a_malformed_body_is_422(session_client, body, field):
    response = session_client.post(
        "/v1/forecast", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text
    assert field in fields(response)


@pytest.mark.parametrize(
    "body",
    [
        b'{"series": [{"timestamps": [0], "values": [NaN]}]}',
        # Covariates are first read as raw JSON; a bad one beside it must not hide the NaN.
        b'{"series": [{"timestamps": [0], "values": [1],'
        b' "covariates": {"a": null, "b": {"timestamps": [0], "values": [NaN]}}}]}',
        b'{"series": [{"timestamps": [0], "values": [1],'
        b' "covariates": {"b": {"timestamps": [0], "values": [NaN]}}}]}',
    ],
    ids=["values", "beside-an-invalid-covariate", "covariate"],
)
def test_nan_is_refused_with_what_to_send_instead(session_client, body):
    """Python's json.dumps writes NaN, which is not JSON: the answer says to send null."""
    response = session_client.post(
        "/v1/forecast", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )

    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["field"] == "body" and "send null" in problem["msg"]
    assert f"(byte {body.index(b'NaN')})" in problem["msg"]


@pytest.fixture(scope="module")
def tight_client(store):
    """Limits small enough to hit: 2 series, 100 readings a list, 60 kB a body."""
    settings = settings_for(store.home, max_series=2, max_history_rows=100, max_body_bytes=60_000)
    with TestClient(create_app(settings)) as client:
        yield client


def short_series(store) -> dict:
    series = valid_series(store)
    keep = slice(-50, None)
    return {
        **series,
        "timestamps": series["timestamps"][keep],
        "values": series["values"][keep],
        "covariates": {},
    }


def test_too_many_series_is_413(tight_client, store):
    response = post(tight_client, *[short_series(store)] * 3)

    assert response.status_code == 413
    assert fields(response) == ["series"] and "AQ_API_MAX_SERIES" in response.text
    assert post(tight_client, *[short_series(store)] * 2).status_code == 200


def test_too_many_readings_is_413(tight_client, store):
    series = short_series(store)
    long = {**series, "timestamps": series["timestamps"] * 3, "values": series["values"] * 3}
    covariate = {"pm10": {"timestamps": long["timestamps"], "values": long["values"]}}

    for spoiled, field in [
        (long, "series[0].timestamps"),
        ({**series, "covariates": covariate}, "series[0].covariates.pm10.timestamps"),
    ]:
        response = post(tight_client, spoiled)

        assert response.status_code == 413
        assert fields(response) == [field] and "AQ_API_MAX_HISTORY_ROWS" in response.text


def test_too_large_a_body_is_413_declared_or_streamed(tight_client, store):
    body = json.dumps({"series": [valid_series(store)]}).encode()
    assert len(body) > 60_000

    declared = tight_client.post("/v1/forecast", content=body, headers=AUTH)
    streamed = tight_client.post(
        "/v1/forecast", content=iter([body[:40_000], body[40_000:]]), headers=AUTH
    )

    for response in (declared, streamed):
        assert response.status_code == 413
        (problem,) = response.json()["detail"]  # the one error shape, either way
        assert problem["field"] == "body" and problem["type"] == "body_too_large"
        assert "AQ_API_MAX_BODY_BYTES" in problem["msg"]


def test_without_a_snapshot_sensor_forecasts_are_503_and_histories_still_work(store, tmp_path):
    settings = settings_for(store.home, online_features=str(tmp_path / "none.parquet"))

    with TestClient(create_app(settings)) as client:
        missing = client.get(f"/v1/sensors/{store.spec.sensors[0]}/forecast", headers=AUTH)
        history = post(client, short_series(store))

    assert missing.status_code == 503 and "online_features" in missing.json()["detail"]
    assert history.status_code == 200


def test_thresholds_that_do_not_parse_stop_the_service_with_the_variable_named(store):
    import pydantic

    with pytest.raises(pydantic.ValidationError, match="AQ_THRESHOLDS"):
        settings_for(store.home, thresholds="15;35")


def test_the_answers_quantiles_are_the_intervals_levels_in_order():
    from aq_assets.ml.forecasting import quantile_name
    from aq_assets.ml.intervals import QUANTILES
    from serving.schemas import Quantiles

    # horizon_forecasts fills them by position
    assert Quantiles.__struct_fields__ == tuple(quantile_name(q) for q in QUANTILES)


def test_forecasts_are_written_a_column_at_a_time_in_row_order_with_nan_as_null():
    import msgspec

    from aq_assets.ml.forecasting import Outlook
    from serving.forecasting import horizon_forecasts

    predicted = np.array([[1.0, np.nan], [3.0, 4.0]])
    quantiles = np.arange(20, dtype=float).reshape(2, 2, 5)
    stamps = [("2025-01-01T01:00:00Z", "2025-01-01T03:00:00Z"), ("b1", "b3")]
    with_chances = Outlook(quantiles, np.array([[[0.1], [0.2]], [[0.3], [0.4]]]), None)
    without_thresholds = Outlook(
        quantiles, np.empty((2, 2, 0)), np.array([["Good", None], ["A", "B"]], dtype=object)
    )

    rows = msgspec.to_builtins(horizon_forecasts(predicted, with_chances, [9.0], stamps, (1, 3)))
    bare = msgspec.to_builtins(horizon_forecasts(predicted, without_thresholds, [], stamps, (1, 3)))
    plain = msgspec.to_builtins(
        horizon_forecasts(predicted, Outlook(None, None, None), [], stamps, (1, 3))
    )

    assert [
        [f["value"] for f in row] for row in msgspec.json.decode(msgspec.json.encode(rows))
    ] == [
        [1.0, None],
        [3.0, 4.0],
    ]
    assert [f["horizon_hours"] for f in rows[1]] == [1, 3]
    assert [f["forecast_for_utc"] for f in rows[1]] == ["b1", "b3"]
    assert rows[1][0]["quantiles"] == {
        "q05": 10.0,
        "q10": 11.0,
        "q50": 12.0,
        "q90": 13.0,
        "q95": 14.0,
    }
    assert rows[1][1]["exceedance"] == [{"above": 9.0, "probability": 0.4}]
    assert [[f["exceedance"] for f in row] for row in bare] == [[[], []], [[], []]]
    assert [[f["category"] for f in row] for row in bare] == [["Good", None], ["A", "B"]]
    assert {f["quantiles"] is None and f["exceedance"] is None for row in plain for f in row} == {
        True
    }


def test_a_batch_of_targets_forecasts_from_its_laid_series_as_from_each_alone(store):
    """Target-only series reach the features as cleaning laid them end to end, not laid
    again: the same forecasts and notes as each series laid on its own, with a series
    without valid readings and one whose origin is before its first reading among them."""
    from serving.champion import LoadedModel, OnlineForecaster
    from serving.forecasting import forecast, histories, read_request

    snapshot = snapshot_readings(store)
    bodies = [history_body(snapshot, s, store.timezones, covariates=()) for s in store.spec.sensors]
    empty = {**bodies[0], "values": [None] * len(bodies[0]["values"])}
    early = {**bodies[1], "origin": "2001-01-01T00:00:00Z"}
    request = read_request(json.dumps({"series": [*bodies, empty, early]}).encode())
    model = LoadedModel("aq-forecast", "1", OnlineForecaster(store.forecasters["1"]))

    items, targets = histories(request, model, settings_for(store.home))

    assert targets is not None and targets[2].size == len(items) + 1
    laid = forecast(model, items, targets)
    assert laid == forecast(model, items)
    assert [r.forecasts != [] for r in laid] == [True] * len(bodies) + [False, False]
    assert "no valid reading" in laid[-2].note and "before the first" in laid[-1].note
