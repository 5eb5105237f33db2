"""Forecasts from a history in the request, or from the online_features snapshot."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import Response

from serving.deps import ServedDep
from serving.forecasting import read_request, request_answer
from serving.schemas import ErrorResponse

router = APIRouter(tags=["forecasts"])

# Up to this many series are answered on the event loop (well under a millisecond each);
# bigger batches go to a worker thread, one batch at a time, so they never hold up small
# requests and never slow each other down.
INLINE_SERIES = 4
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong bearer token."},
    413: {"model": ErrorResponse, "description": "Body, series or rows over the limits."},
    422: {
        "model": ErrorResponse,
        "description": "Malformed or out-of-range input; names the field.",
    },
    503: {"model": ErrorResponse, "description": "No model (or snapshot) loaded yet."},
}


def json_response(content: bytes) -> Response:
    return Response(content=content, media_type="application/json")


def _json(name: str) -> dict[str, Any]:
    """A body of the msgspec type `name`: msgspec reads and writes these, not FastAPI's
    pydantic path; the app adds their schemas to the OpenAPI components."""
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


REQUEST_BODY = {"requestBody": {"required": True, "content": _json("ForecastRequest")}}


@router.post(
    "/v1/forecast",
    responses={200: {"description": "Forecasts.", "content": _json("ForecastResponse")}, **ERRORS},
    openapi_extra=REQUEST_BODY,
)
async def forecast(request: Request, served: ServedDep) -> Response:
    """Forecasts for each series of the body, from its history: the level at every horizon
    of the model, the hour each forecast is for, and the model version that made them all."""
    service = served.service
    body = read_request(await request.body())
    answer = partial(request_answer, served.model, body, service.settings)
    if len(body.series) <= INLINE_SERIES:
        content = answer()
    else:
        content = await anyio.to_thread.run_sync(answer, limiter=service.batch_limiter)
    service.metrics.series.labels("history").inc(len(body.series))
    return json_response(content)


@router.get(
    "/v1/sensors/{sensor_id}/forecast",
    responses={
        200: {"description": "Forecasts.", "content": _json("SensorForecastResponse")},
        **ERRORS,
        404: {"model": ErrorResponse, "description": "Unknown sensor."},
    },
)
async def sensor_forecast(
    sensor_id: Annotated[int, Path(ge=0, le=2**63 - 1)], served: ServedDep
) -> Response:
    """Forecasts for a known sensor from its latest readings in the online_features snapshot,
    which the pipeline refreshes."""
    service = served.service
    snapshot = service.snapshot
    if snapshot is None:
        raise HTTPException(
            503,
            f"No online_features snapshot at {service.settings.online_features_path} yet: "
            "materialize the online_features asset.",
        )
    content = service.sensor_answers.get(served.model, snapshot, sensor_id)
    service.metrics.series.labels("sensor").inc()
    return json_response(content)
