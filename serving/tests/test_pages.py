"""The forecast page: signing in with the token gives a browser a session cookie, and the
page Chromium renders draws the readings, the forecast's bands and the AQI colours, with the
numbers of the API's answer."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from serving.deps import SESSION_COOKIE
from serving.tests.conftest import (
    AUTH,
    TOKEN,
    settings_for,
    simulated_location_names,
    snapshot_readings,
)

# The README's screenshot; rewritten with AQ_WRITE_SCREENSHOT=1, else saved under tmp_path.
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "forecast-page.png"


@pytest.fixture
def client(session_client):
    """The session's client without cookies: it keeps those responses set, and a sign-in
    must not leak into the next test."""
    session_client.cookies.clear()
    yield session_client
    session_client.cookies.clear()


def a_sensor(session_client) -> int:
    signed_in(session_client)
    page = session_client.get("/", follow_redirects=False)
    assert page.status_code == 200, page.text
    first = page.text.index('href="/sensors/') + len('href="/sensors/')
    return int(page.text[first : page.text.index('"', first)])


def sign_in(client, token: str = TOKEN, target: str = "/"):
    """POST the sign-in form as a browser does; the client keeps any cookie it sets."""
    return client.post(
        "/login",
        content=f"token={token}&next={target}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )


def signed_in(session_client) -> str:
    """Sign in; the client keeps the cookie, returned too."""
    response = sign_in(session_client)
    assert response.status_code == 303
    return response.cookies[SESSION_COOKIE]


def test_a_page_without_a_session_sends_the_browser_to_sign_in(client):
    response = client.get("/sensors/1", follow_redirects=False)

    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=/sensors/1"
    assert client.get(response.headers["location"]).status_code == 200


def test_signing_in_sets_a_session_cookie_that_is_not_the_token(client):
    response = sign_in(client, target="/sensors/1")

    assert response.status_code == 303 and response.headers["location"] == "/sensors/1"
    cookie = response.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert TOKEN not in cookie
    # The cookie opens the pages and the reports a browser follows links to, not the JSON API.
    assert client.get("/").status_code == 200  # the client keeps the cookie
    assert client.get("/v1/reports/drift/2025-01-01").status_code == 404
    assert client.get("/v1/model").status_code == 401


@pytest.mark.parametrize("token", ["", "wrong-token-of-enough-length", TOKEN + "x"])
def test_a_wrong_token_is_refused_and_sets_nothing(client, token):
    response = sign_in(client, token)

    assert response.status_code == 401
    assert "not the service" in response.text
    assert SESSION_COOKIE not in response.cookies
    client.cookies.set(SESSION_COOKIE, "0" * 64)
    assert client.get("/", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "javascript:1"])
def test_signing_in_never_redirects_off_the_site(client, target):
    response = sign_in(client, target=target)

    assert response.headers["location"] == "/"


def test_an_unknown_sensor_is_a_404_page_that_says_so(client):
    signed_in(client)
    response = client.get("/sensors/4242")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "4242" in response.text and 'href="/"' in response.text


def test_the_page_renders_in_chromium_with_the_apis_numbers(live_service, client, store, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if chromium is None or driver_path is None:
        pytest.fail("Chromium or its driver is missing: scripts/test.sh installs Debian's.")
    sensor = a_sensor(client)
    api = client.get(f"/v1/sensors/{sensor}/forecast", headers=AUTH).json()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=390,1400")  # a phone's width
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        browser.get(f"{live_service}/sensors/{sensor}")
        browser.find_element(By.ID, "token").send_keys(TOKEN)  # sent to sign in first
        browser.find_element(By.ID, "sign-in").click()
        WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.ID, "forecasts"))

        readings = browser.find_element(By.ID, "readings").get_attribute("d") or ""
        assert readings.count("L") > 24  # a line through the last days' hours
        for band in ("band80", "band90"):
            points = browser.find_element(By.ID, band).get_attribute("points") or ""
            assert len(points.split()) == 2 * len(api["forecasts"]) + 2
        categories = browser.find_elements(By.CSS_SELECTOR, "#categories rect")
        assert categories and categories[0].get_attribute("data-name") == "Good"
        rows = browser.find_elements(By.CSS_SELECTOR, "tr.forecast")
        assert len(rows) == len(api["forecasts"])
        for row, forecast in zip(rows, api["forecasts"], strict=True):
            assert int(row.get_attribute("data-horizon") or 0) == forecast["horizon_hours"]
            value = row.find_element(By.CLASS_NAME, "value").get_attribute("data-value")
            assert float(value or "nan") == forecast["value"]
            band80 = row.find_element(By.CLASS_NAME, "range80")
            assert float(band80.get_attribute("data-low") or "nan") == forecast["quantiles"]["q10"]
            assert float(band80.get_attribute("data-high") or "nan") == forecast["quantiles"]["q90"]
            chances = row.find_elements(By.CLASS_NAME, "exceedance")
            assert [float(c.get_attribute("data-probability") or "nan") for c in chances] == [
                e["probability"] for e in forecast["exceedance"]
            ]
            assert forecast["category"] in row.find_element(By.CLASS_NAME, "category").text
        assert browser.find_element(By.ID, "model-version").text == api["model_version"]
        location = store.readings.set_index("sensor_id").at[sensor, "location_id"].iloc[0]
        place = simulated_location_names()[int(location)]
        assert browser.find_element(By.ID, "place").text == f"PM2.5 at {place}"
        # Readable on a phone: nothing wider than the screen but the table's own scroller.
        assert browser.execute_script(
            "return document.documentElement.scrollWidth <= window.innerWidth"
        )
        browser.set_window_size(760, 1100)
        screenshot = tmp_path / "forecast-page.png"
        if os.environ.get("AQ_WRITE_SCREENSHOT"):
            screenshot = README_SCREENSHOT
        assert browser.save_screenshot(str(screenshot))
        assert screenshot.stat().st_size > 10_000
    finally:
        browser.quit()


def test_sensors_are_listed_and_titled_by_their_place_name(client, store):
    """A person looks for a town, not an id: the list and each page carry the location's
    name from the catalog (written into the snapshot by online_features)."""
    sensor = a_sensor(client)
    listing = client.get("/").text
    page = client.get(f"/sensors/{sensor}").text

    location = int(store.readings.set_index("sensor_id").at[sensor, "location_id"].iloc[0])
    place = simulated_location_names()[location]
    assert f'<a href="/sensors/{sensor}">{place}</a>' in listing
    assert f"PM2.5 at {place}</h1>" in page
    assert f"Sensor {sensor} at location {location}." in page


def pages_on(store, snapshot) -> tuple[int, str, Any]:
    """A service on `store` with `snapshot` as its online_features: a sensor, the list page
    and that sensor's page (the response)."""
    from fastapi.testclient import TestClient

    from serving.app import create_app

    snapshot.to_parquet(store.home / "online_features.parquet", index=False)
    with TestClient(create_app(settings_for(store.home))) as api:
        sensor = a_sensor(api)
        return sensor, api.get("/").text, api.get(f"/sensors/{sensor}")


def test_a_snapshot_without_place_names_still_serves_its_pages(own_store):
    """Snapshots written before the names (or by hand) have no `location_name`: the pages
    name the sensor by its id."""
    snapshot = snapshot_readings(own_store).drop(columns="location_name")

    sensor, listing, page = pages_on(own_store, snapshot)

    assert f'<a href="/sensors/{sensor}">sensor {sensor}</a>' in listing
    assert page.status_code == 200
    assert f"PM2.5 at sensor {sensor}</h1>" in page.text


def test_a_place_name_from_the_source_is_shown_as_text_never_as_markup(own_store):
    """Names come from OpenAQ's data: one that looks like markup is escaped."""
    snapshot = snapshot_readings(own_store).assign(location_name="<b onmouseover=x()>A & B</b>")

    _, listing, page = pages_on(own_store, snapshot)

    pages = listing + page.text
    assert "<b onmouseover" not in pages
    assert "&lt;b onmouseover=x()&gt;A &amp; B&lt;/b&gt;" in pages


@pytest.mark.parametrize(
    ("hours", "shown"), [(5.2, "5 h"), (47.4, "47 h"), (50.0, "2 days"), (77565.4, "3,232 days")]
)
def test_the_datas_age_reads_as_a_person_says_it(hours, shown):
    from serving.routers.pages import _age

    assert _age(hours) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [(35.44, "35.4"), (0.0321, "0.0321"), (0.45, "0.45"), (0.0, "0.0"), (None, "—")],
)
def test_the_page_shows_a_gas_in_ppm_with_its_digits(value, shown):
    """One decimal is right for µg/m³ and would show every ppm gas as 0.0."""
    from serving.routers.pages import _number

    assert _number(value) == shown
