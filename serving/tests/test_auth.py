"""Bearer-token auth on /v1; open operations endpoints; the explicit open mode."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from serving.app import create_app
from serving.settings import Settings, get_settings
from serving.tests.conftest import AUTH, TOKEN, history_body, settings_for, snapshot_readings

WRONG = [
    pytest.param({}, id="no-header"),
    pytest.param({"Authorization": "Bearer not-the-token"}, id="wrong-token"),
    pytest.param({"Authorization": f"Bearer {TOKEN}x"}, id="longer-token"),
    pytest.param({"Authorization": f"Bearer {TOKEN[:-1]}"}, id="prefix-of-token"),
    pytest.param({"Authorization": f"Basic {TOKEN}"}, id="not-bearer"),
    pytest.param({"Authorization": TOKEN}, id="no-scheme"),
    pytest.param({"Authorization": "Bearer "}, id="empty-token"),
    pytest.param({"Authorization": "Bearer tøken-ü".encode()}, id="non-ascii"),
]


def v1_requests(store) -> list[tuple[str, str, dict | None]]:
    sensor = store.spec.sensors[0]
    body = {"series": [history_body(snapshot_readings(store), sensor, store.timezones)]}
    return [
        ("GET", "/v1/model", None),
        ("GET", f"/v1/sensors/{sensor}/forecast", None),
        ("POST", "/v1/forecast", body),
    ]


@pytest.mark.parametrize("headers", WRONG)
def test_v1_refuses_a_missing_or_wrong_token_with_401(session_client, store, headers):
    for method, path, body in [*v1_requests(store), ("GET", "/v1/reports/drift/2025-06-10", None)]:
        response = session_client.request(method, path, headers=headers, json=body)

        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["WWW-Authenticate"] == "Bearer"
        assert "AQ_API_TOKEN" in response.json()["detail"]


def test_v1_answers_with_the_token(session_client, store):
    for method, path, body in v1_requests(store):
        response = session_client.request(method, path, headers=AUTH, json=body)

        assert response.status_code == 200, (method, path, response.text)


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics", "/openapi.json", "/docs"])
def test_operations_endpoints_and_the_openapi_document_are_open(session_client, path):
    assert session_client.get(path).status_code == 200


def test_a_service_started_open_needs_no_token(store):
    app = create_app(settings_for(store.home, api_open=True, api_token=None))

    with TestClient(app) as client:
        for method, path, body in v1_requests(store):
            assert client.request(method, path, json=body).status_code == 200, path


def test_settings_refuse_neither_a_token_nor_open_mode(monkeypatch):
    monkeypatch.delenv("AQ_API_TOKEN", raising=False)
    monkeypatch.delenv("AQ_API_OPEN", raising=False)

    with pytest.raises(ValidationError, match=r"AQ_API_TOKEN.*AQ_API_OPEN=true"):
        Settings()


@pytest.mark.parametrize("token", ["", "   ", "short-token", " padded-token-0123456789 "])
def test_a_blank_short_or_padded_token_refuses_to_start(monkeypatch, token):
    monkeypatch.setenv("AQ_API_TOKEN", token)
    monkeypatch.delenv("AQ_API_OPEN", raising=False)

    with pytest.raises(ValidationError, match=r"AQ_API_TOKEN"):
        Settings()


def test_settings_come_from_the_environment_once(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("AQ_HOME", str(tmp_path))
    monkeypatch.setenv("AQ_API_TOKEN", "from-env-0123456789")
    monkeypatch.setenv("AQ_API_MAX_SERIES", "7")
    get_settings.cache_clear()
    try:
        settings = get_settings()

        assert get_settings() is settings
        assert settings.max_series == 7
        assert settings.token() == b"from-env-0123456789"
        # The pipeline's store, exactly as MLflowTracking.uri computes it.
        assert settings.tracking_uri == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
        assert settings.online_features_path == tmp_path.resolve() / "online_features.parquet"
    finally:
        get_settings.cache_clear()


def test_tests_can_replace_the_settings_by_dependency_override(store):
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings_for(
        store.home, api_token="other-token-0123456789"
    )

    with TestClient(app) as client:
        assert client.get("/v1/model", headers=AUTH).status_code == 401
        ok = client.get("/v1/model", headers={"Authorization": "Bearer other-token-0123456789"})
        assert ok.status_code == 200


def test_the_openapi_document_describes_bodies_answers_and_the_token(session_client):
    document = session_client.get("/openapi.json").json()

    assert set(document["paths"]) == {
        "/v1/forecast",
        "/v1/sensors/{sensor_id}/forecast",
        "/v1/model",
        "/v1/reports/drift/{day}",
        "/livez",
        "/readyz",
        "/metrics",
        "/",  # the pages: a browser signs in for a session cookie (test_pages.py)
        "/login",
        "/logout",
        "/sensors/{sensor_id}",
    }
    post = document["paths"]["/v1/forecast"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schemas = document["components"]["schemas"]
    assert schemas[body.rsplit("/", 1)[1]]["required"] == ["series"]
    stamps = schemas["SeriesHistory"]["properties"]["timestamps"]  # read as raw JSON, typed here
    assert stamps["type"] == "array"
    assert {"string", "integer"} == {kind["type"] for kind in stamps["items"]["anyOf"]}
    assert {"200", "401", "413", "422", "503"} <= set(post["responses"])
    for path, method, answer in [
        ("/v1/forecast", "post", "ForecastResponse"),
        ("/v1/sensors/{sensor_id}/forecast", "get", "SensorForecastResponse"),
    ]:  # written by msgspec, documented from the same types
        ok = document["paths"][path][method]["responses"]["200"]["content"]["application/json"]
        assert ok["schema"]["$ref"] == f"#/components/schemas/{answer}"
        assert "model_version" in schemas[answer]["required"]
    assert "forecasts" in schemas["SensorForecastResponse"]["required"]
    results = schemas["ForecastResponse"]["properties"]["results"]["items"]["$ref"]
    assert "forecasts" in schemas[results.rsplit("/", 1)[1]]["required"]
    horizon = schemas["HorizonForecast"]["properties"]
    assert horizon["forecast_for_utc"]["format"] == "date-time"
    assert "24 hours" in horizon["category"]["description"]
    assert post["security"] == [{"AQ_API_TOKEN": []}]
    assert document["components"]["securitySchemes"]["AQ_API_TOKEN"]["scheme"] == "bearer"
    assert "security" not in document["paths"]["/readyz"]["get"]
    report = document["paths"]["/v1/reports/drift/{day}"]["get"]
    assert (
        report["security"] == [{"AQ_API_TOKEN": []}]
        and "text/html" in report["responses"]["200"]["content"]
    )
