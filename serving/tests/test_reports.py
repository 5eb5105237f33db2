"""GET /v1/reports/drift/{day}: the drift report's HTML, behind the same token as /v1."""

from __future__ import annotations

from fastapi.testclient import TestClient

from serving.app import create_app
from serving.tests.conftest import AUTH, settings_for


def test_a_days_drift_report_is_served_behind_the_token(own_store):
    reports = own_store.home / "reports"
    reports.mkdir()
    page = "<html><body>Evidently drift report of 2025-06-10</body></html>"
    (reports / "drift-2025-06-10.html").write_text(page)

    with TestClient(create_app(settings_for(own_store.home))) as client:
        served = client.get("/v1/reports/drift/2025-06-10", headers=AUTH)
        assert served.status_code == 200, served.text
        assert served.headers["content-type"].startswith("text/html")
        assert served.text == page

        assert client.get("/v1/reports/drift/2025-06-10").status_code == 401
        missing = client.get("/v1/reports/drift/2025-06-11", headers=AUTH)
        assert missing.status_code == 404 and "materialize drift_report" in missing.text
        # Only a date names a file: nothing else under AQ_HOME can be reached.
        for day in ("..%2Fmlflow.db", "2025-06-10.html", "latest"):
            assert client.get(f"/v1/reports/drift/{day}", headers=AUTH).status_code in (404, 422)
