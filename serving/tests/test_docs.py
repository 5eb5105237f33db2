"""The API documentation works without internet: Swagger UI and ReDoc come from the service."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from serving.app import create_app
from serving.tests.conftest import settings_for

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


@pytest.fixture(scope="module")
def live_service(store) -> Iterator[str]:
    """The service on a free local port, in this process."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings_for(store.home)), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:  # set by uvicorn once it listens
        assert thread.is_alive() and time.monotonic() < deadline, "the service did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=30)


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
