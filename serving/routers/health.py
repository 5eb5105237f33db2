"""Liveness, readiness and Prometheus metrics: open, for orchestrators and scrapers."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.deps import ServiceDep

router = APIRouter(tags=["operations"])


@router.get("/livez")
async def live() -> dict[str, str]:
    """The process answers."""
    return {"status": "alive"}


@router.get("/readyz", responses={503: {"description": "No model loaded yet."}})
async def ready(service: ServiceDep) -> JSONResponse:
    """Ready once a model is loaded (it stays ready through failed reloads)."""
    model = service.model
    if model is None:
        return JSONResponse(
            {"status": "not ready", "waiting_for": service.waiting_for}, status_code=503
        )
    return JSONResponse({"status": "ready", "model_version": model.version})


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """Prometheus exposition: requests, latency, errors by status, model version, swaps."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
