"""The model and the snapshot over time: readiness, model info, swaps under load without a
dropped request or a mixed answer, failed loads that keep the old model, metrics."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.state import ServingState
from serving.tests.conftest import (
    AUTH,
    MODEL,
    TOKEN,
    Store,
    expected_forecasts,
    history_body,
    settings_for,
    snapshot_readings,
    values_of,
)


def service_of(client: TestClient) -> ServingState:
    return client.app.state.service  # type: ignore[attr-defined]


def metric(client: TestClient, line_start: str) -> float:
    """The value of the first Prometheus sample whose line starts with `line_start`."""
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(line_start):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {line_start}")


@pytest.fixture
def client_on(own_store: Store):
    """A service on this test's own copy of the store; refreshed only by hand."""
    with TestClient(create_app(settings_for(own_store.home))) as client:
        yield client


def test_model_info_names_the_version_its_scores_and_its_run(session_client, store):
    before = pd.Timestamp.now(tz="UTC")
    info = session_client.get("/v1/model", headers=AUTH).json()

    run = store.client().get_run(info["run_id"])
    assert info["name"] == MODEL and info["alias"] == "champion" and info["version"] == "1"
    assert info["horizons"] == [1, 3, 6, 12, 24] and info["parameter"] == "pm25"
    assert info["history_hours"] == store.spec.history_hours
    assert info["kind"] == "trained"
    assert info["metrics"]["1"] == {
        "rmse": run.data.metrics["rmse_h1"],
        "mae": run.data.metrics["mae_h1"],
        "skill": run.data.metrics["skill_h1"],
    }
    assert set(info["metrics"]) == {"1", "3", "6", "12", "24"}
    assert info["mlflow_run_url"].endswith(
        f"/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    )
    assert pd.Timestamp(info["trained_at"]) == pd.Timestamp(run.info.end_time, unit="ms", tz="UTC")
    assert info["last_load_error"] is None
    # How far behind the snapshot is: from the end of its newest reading hour to now.
    newest = snapshot_readings(store)["datetime_utc"].max().floor("h").tz_localize("UTC")
    snapshot = info["snapshot"]
    assert pd.Timestamp(snapshot["latest_reading_utc"]) == newest
    expected_age = (before - newest) / pd.Timedelta(hours=1) - 1
    assert expected_age <= snapshot["age_hours"] < expected_age + 0.1


def test_not_ready_until_a_champion_is_loaded(own_store):
    client = own_store.client()
    client.delete_registered_model_alias(MODEL, "champion")

    with TestClient(create_app(settings_for(own_store.home))) as api:
        before = api.get("/readyz")
        no_model = api.get("/v1/model", headers=AUTH)
        signing_in = api.post(
            "/login",
            content=f"token={TOKEN}&next=/",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        no_page = api.get("/")
        client.set_registered_model_alias(MODEL, "champion", "2")
        service_of(api).refresh()
        after = api.get("/readyz")

    assert api.get("/livez").status_code == 200
    assert before.status_code == 503 and "champion" in before.json()["waiting_for"]
    assert no_model.status_code == 503
    assert signing_in.status_code == 303
    assert no_page.status_code == 503 and no_page.headers["content-type"].startswith("text/html")
    assert "No model or online_features snapshot loaded yet" in no_page.text
    assert after.status_code == 200 and after.json()["model_version"] == "2"


def test_a_failed_load_keeps_the_old_model_and_says_so(client_on, own_store, caplog):
    registry = own_store.client()
    broken = registry.create_model_version(MODEL, source="file:///nowhere/at/all")
    registry.set_registered_model_alias(MODEL, "champion", broken.version)

    with caplog.at_level(logging.ERROR, logger="serving"):
        service_of(client_on).refresh()

    info = client_on.get("/v1/model", headers=AUTH).json()
    assert info["version"] == "1"
    assert info["last_load_error"]["version"] == str(broken.version)
    assert info["last_load_error"]["what"] == "model"
    assert f"version {broken.version}" in caplog.text and "still serving version 1" in caplog.text
    assert metric(client_on, "aq_serving_model_load_failures_total") == 1
    assert client_on.get("/readyz").status_code == 200
    sensor = own_store.spec.sensors[0]
    assert client_on.get(f"/v1/sensors/{sensor}/forecast", headers=AUTH).status_code == 200

    # The next good champion is picked up, and the failure is history.
    registry.set_registered_model_alias(MODEL, "champion", "2")
    service_of(client_on).refresh()
    info = client_on.get("/v1/model", headers=AUTH).json()
    assert info["version"] == "2" and info["last_load_error"] is None
    assert metric(client_on, "aq_serving_model_swaps_total") == 1
    assert metric(client_on, "aq_serving_model_version") == 2
    # A sensor's answer, remembered for version 1, is not served for version 2.
    answer = client_on.get(f"/v1/sensors/{sensor}/forecast", headers=AUTH).json()
    expected = expected_forecasts(
        own_store.forecasters["2"],
        snapshot_readings(own_store).drop(columns="timezone"),
        own_store.timezones,
    )
    assert answer["model_version"] == "2"
    np.testing.assert_allclose(values_of(answer), expected[sensor], rtol=1e-5, atol=1e-5)


def test_a_swap_under_concurrent_requests_drops_none_and_mixes_no_versions(client_on, own_store):
    """Eight threads post single series and batches while the alias moves from 1 to 2 and
    the poller's refresh runs. Every answer must be 200, and every forecast in an answer
    must be exactly the batch path's number for the version the answer names."""
    snapshot = snapshot_readings(own_store)
    sensors = list(own_store.spec.sensors)
    series = {s: history_body(snapshot, s, own_store.timezones) for s in sensors}
    readings = snapshot.drop(columns="timezone")
    # A posted series without `covariates.network` is a sensor without neighbours: the batch
    # path on its location's readings alone.
    location = readings.drop_duplicates("sensor_id").set_index("sensor_id")["location_id"]
    expected = {
        version: {
            s: expected_forecasts(
                forecaster, readings[readings["location_id"] == location[s]], own_store.timezones
            )[s]
            for s in sensors
        }
        for version, forecaster in own_store.forecasters.items()
    }
    assert all(
        not np.allclose(expected["1"][s], expected["2"][s], rtol=1e-3) for s in sensors
    )  # the versions are told apart by their numbers, not only by their label
    bodies = [{"series": [series[s]]} for s in sensors]
    bodies.append({"series": [series[s] for s in sensors * 2]})  # runs in a worker thread

    answers: dict[str, int] = {"1": 0, "2": 0}
    seen_lock = threading.Lock()
    enough_of = {"1": threading.Event(), "2": threading.Event()}
    failures: list[str] = []

    def worker(k: int) -> None:
        i = k
        while not enough_of["2"].is_set():
            body = bodies[i % len(bodies)]
            i += 1
            response = client_on.post("/v1/forecast", json=body, headers=AUTH)
            if response.status_code != 200:
                failures.append(f"{response.status_code}: {response.text[:200]}")
                return
            answer = response.json()
            version = answer["model_version"]
            for sent, result in zip(body["series"], answer["results"], strict=True):
                want = expected[version][sent["sensor_id"]]
                got = np.array(values_of(result), dtype=float)
                if not np.allclose(got, want, rtol=1e-5, atol=1e-5):
                    failures.append(f"a version {version} answer holds other numbers")
                    return
            with seen_lock:
                answers[version] += 1
                if answers[version] >= 40:
                    enough_of[version].set()

    with ThreadPoolExecutor(8) as pool:
        running = [pool.submit(worker, k) for k in range(8)]
        assert enough_of["1"].wait(timeout=120), failures
        own_store.client().set_registered_model_alias(MODEL, "champion", "2")
        service_of(client_on).refresh()  # the poller's step, while requests keep coming
        finished = enough_of["2"].wait(timeout=120)
        for future in running:
            future.result()

    assert not failures, failures[:3]
    assert finished and answers["1"] >= 40 and answers["2"] >= 40
    assert metric(client_on, "aq_serving_model_swaps_total") == 1
    assert "aq_serving_request_errors_total{" not in client_on.get("/metrics").text


def test_metrics_count_requests_errors_and_latency_by_route(client_on, own_store):
    sensor = own_store.spec.sensors[0]
    client_on.get(f"/v1/sensors/{sensor}/forecast", headers=AUTH)
    client_on.get("/v1/sensors/1/forecast", headers=AUTH)
    client_on.get("/v1/model")
    client_on.get("/no/such/path")

    text = client_on.get("/metrics").text

    route = "/v1/sensors/{sensor_id}/forecast"
    assert f'aq_serving_requests_total{{method="GET",route="{route}",status="200"}} 1.0' in text
    assert f'aq_serving_requests_total{{method="GET",route="{route}",status="404"}} 1.0' in text
    assert f'aq_serving_request_errors_total{{route="{route}",status="404"}} 1.0' in text
    assert 'aq_serving_request_errors_total{route="/v1/model",status="401"} 1.0' in text
    assert 'aq_serving_request_errors_total{route="unmatched",status="404"} 1.0' in text
    assert f'aq_serving_request_duration_seconds_count{{method="GET",route="{route}"}} 2.0' in text
    assert "aq_serving_model_version 1.0" in text
    assert "aq_serving_model_swaps_total 0.0" in text
    assert "aq_serving_online_features_loads_total 1.0" in text


def test_a_new_snapshot_is_picked_up_and_a_broken_one_is_not(client_on, own_store):
    sensor = own_store.spec.sensors[0]
    path = own_store.home / "online_features.parquet"
    first = client_on.get(f"/v1/sensors/{sensor}/forecast", headers=AUTH).json()

    shorter = snapshot_readings(own_store)
    shorter = shorter[
        shorter["datetime_utc"] < shorter["datetime_utc"].max() - pd.Timedelta(hours=5)
    ]
    shorter.to_parquet(path, index=False)
    service_of(client_on).refresh()
    second = client_on.get(f"/v1/sensors/{sensor}/forecast", headers=AUTH).json()

    path.write_bytes(b"not parquet at all")
    service_of(client_on).refresh()
    third = client_on.get(f"/v1/sensors/{sensor}/forecast", headers=AUTH).json()

    assert pd.Timestamp(second["origin_utc"]) < pd.Timestamp(first["origin_utc"])
    assert third == second  # the broken file did not replace the good snapshot
    assert metric(client_on, "aq_serving_online_features_load_failures_total") == 1


def test_the_poller_starts_with_the_app_and_stops_with_it(own_store):
    app = create_app(settings_for(own_store.home, poll_seconds=3600))

    with TestClient(app) as client:
        assert client.get("/readyz").status_code == 200
        service = service_of(client)
        assert service.checked_at is not None


def test_a_location_with_an_unreadable_time_zone_fails_alone(client_on, own_store):
    readings = snapshot_readings(own_store)
    first, second = own_store.spec.sensors[:2]
    bad_location = readings.loc[readings["sensor_id"] == first, "location_id"].iloc[0]
    readings.loc[readings["location_id"] == bad_location, "timezone"] = "Mars/Olympus"
    readings.to_parquet(own_store.home / "online_features.parquet", index=False)
    service_of(client_on).refresh()

    broken = client_on.get(f"/v1/sensors/{first}/forecast", headers=AUTH)
    fine = client_on.get(f"/v1/sensors/{second}/forecast", headers=AUTH)

    assert broken.status_code == 503 and "Mars/Olympus" in broken.text
    assert fine.status_code == 200


def test_a_mistyped_home_is_named_and_no_empty_store_is_made(tmp_path):
    home = tmp_path / "no-such-home"

    with TestClient(create_app(settings_for(home))) as api:
        ready = api.get("/readyz")
        model = api.get("/v1/model", headers=AUTH)

    assert ready.status_code == 503
    error = ready.json()["last_load_error"]["error"]
    assert f"No MLflow store at {home / 'mlflow.db'}" in error and "AQ_HOME" in error
    assert model.status_code == 503 and "Last load error: FileNotFoundError" in model.text
    assert not home.exists()  # MLflow alone would have made an empty store there


def test_a_corrupt_store_says_why_over_http(own_store):
    (own_store.home / "mlflow.db").write_bytes(b"not a database" * 100)

    with TestClient(create_app(settings_for(own_store.home))) as api:
        ready = api.get("/readyz")
        model = api.get("/v1/model", headers=AUTH)

    assert ready.status_code == 503 and ready.json()["last_load_error"]["what"] == "alias"
    assert "registry" in ready.json()["waiting_for"]
    assert model.status_code == 503 and "Last load error" in model.text


def test_an_unreadable_snapshot_makes_the_service_not_ready_and_says_why(own_store):
    path = own_store.home / "online_features.parquet"
    path.write_bytes(b"PAR1 but not parquet")

    with TestClient(create_app(settings_for(own_store.home))) as api:
        ready = api.get("/readyz")
        info = api.get("/v1/model", headers=AUTH).json()

    assert ready.status_code == 503
    assert ready.json()["snapshot_error"]["what"] == "online_features"
    assert "snapshot" in ready.json()["waiting_for"]
    assert info["snapshot"] is None and info["snapshot_error"]["what"] == "online_features"


def test_a_batch_finds_the_memory_the_one_before_freed(session_client):
    """The lifespan (session_client started it) keeps freed heap in the process: arrays of
    a batch's size come back without a page fault."""
    import resource

    from serving.app import keep_freed_memory

    def faults_touching(megabytes: int) -> int:
        before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        np.ones(megabytes * 131072).sum()  # every page written, then freed
        return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before

    assert keep_freed_memory()  # glibc took the settings (as the lifespan asked)
    faults_touching(8)
    assert faults_touching(8) < 100  # 8 MB are 2,048 pages
