"""The pipeline's HTML reports (Evidently's drift report of each day), behind the token."""

from __future__ import annotations

import datetime as dt

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

from serving.deps import TokenCheckedDep
from serving.schemas import ErrorResponse

router = APIRouter(tags=["reports"])


@router.get(
    "/v1/reports/drift/{day}",
    response_class=FileResponse,
    responses={
        200: {"content": {"text/html": {}}, "description": "Evidently's HTML report."},
        404: {"model": ErrorResponse, "description": "No report for that day yet."},
    },
)
async def drift_report(day: dt.date, service: TokenCheckedDep) -> FileResponse:
    """Evidently's drift report of a day (`drift_report` writes it under AQ_HOME/reports),
    the page the Dagster UI links to from the asset's `report_url`."""
    path = service.settings.home / "reports" / f"drift-{day.isoformat()}.html"
    if not path.is_file():
        raise HTTPException(
            404, f"No drift report for {day} at {path}: materialize drift_report for that day."
        )
    return FileResponse(path, media_type="text/html")
