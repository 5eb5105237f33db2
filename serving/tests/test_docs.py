"""The API documentation works without internet: Swagger UI and ReDoc come from the service."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

ASSET = re.compile(r'(?:src|href)="([^"]+)"')


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_doc_pages_load_only_assets_the_service_serves(session_client, page):
    html = session_client.get(page)
    assert html.status_code == 200

    assets = ASSET.findall(html.text)
    assert assets, html.text
    assert not [url for url in assets if "//" in url]  # no CDN, no other host
    for url in assets:
        response = session_client.get(url)
        assert response.status_code == 200, url
        assert len(response.content) > 1000 or url.endswith(".png"), url


def rendered(url: str) -> str:
    """The page's DOM after its scripts ran, as headless Chromium (Debian's) renders it."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("Chromium is missing: scripts/test.sh installs Debian's `chromium`.")
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return done.stdout


def test_swagger_ui_renders_every_route_in_chromium(live_service):
    dom = rendered(f"{live_service}/docs")

    operations = set(re.findall(r'data-path="([^"]+)"', dom))
    assert {"/v1/forecast", "/v1/model", "/readyz"} <= operations, dom[:2000]


def test_redoc_renders_in_chromium(live_service):
    dom = rendered(f"{live_service}/redoc")

    assert "/v1/forecast" in dom and "aq forecast service" in dom, dom[:2000]
