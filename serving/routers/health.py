"""Liveness, readiness and Prometheus metrics: open, for orchestrators and scrapers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.deps import ServiceDep
from serving.schemas import LoadError

router = APIRouter(tags=["operations"])


@router.get("/livez")
async def live() -> dict[str, str]:
    """The process answers."""
    return {"status": "alive"}


@router.get(
    "/readyz",
    responses={503: {"description": "No model loaded yet, or the snapshot cannot be read."}},
)
async def ready(service: ServiceDep) -> JSONResponse:
    """Ready once a model is loaded (it stays ready through failed reloads) unless the
    online_features snapshot exists but cannot be read. Says why it is not ready, with the
    last load errors."""
    model = service.model
    problems = {
        name: LoadError(**failure.__dict__).model_dump(mode="json")
        for name, failure in service.problems().items()
    }
    if model is None:
        return JSONResponse(
            {"status": "not ready", "waiting_for": service.waiting_for, **problems},
            status_code=503,
        )
    if service.snapshot_unreadable():
        return JSONResponse(
            {
                "status": "not ready",
                "waiting_for": "a readable online_features snapshot (see snapshot_error)",
                "model_version": model.version,
                **problems,
            },
            status_code=503,
        )
    return JSONResponse({"status": "ready", "model_version": model.version, **problems})


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus exposition: requests, latency, errors by status, model version, swaps."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
