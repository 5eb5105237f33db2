"""The app factory: `uvicorn serving.app:create_app --factory`. The lifespan loads the
champion and starts the poller that swaps in new ones; every route is typed, every input
checked with a clear 4xx."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import ApiError
from serving.forecasting import compile_kernels
from serving.metrics import MetricsMiddleware, ServiceMetrics
from serving.routers import forecast, health, model, pages, reports
from serving.schemas import msgspec_schemas
from serving.settings import Settings, get_settings
from serving.state import ServingState

MAX_REPORTED_PROBLEMS = 20
DESCRIPTION = """Forecasts of the next hours of an air-quality parameter (pm25 by default)
from the `champion` of the `aq-forecast` model in MLflow. The same cleaning, features and
model as the pipeline's batch predictions. `/v1` needs `Authorization: Bearer <AQ_API_TOKEN>`
unless the service runs open (AQ_API_OPEN=true); `/livez`, `/readyz`, `/metrics` and this
document are open."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service. Settings come from `get_settings()` (the environment) unless given here
    or through `app.dependency_overrides[get_settings]`, read when the app starts."""
    metrics = ServiceMetrics()
    _show_service_log()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        keep_freed_memory()  # first: the threads that serve requests start below
        resolved: Settings = app.dependency_overrides.get(get_settings, get_settings)()
        service = ServingState(resolved, metrics)
        app.state.settings = resolved
        app.state.service = service
        service.batch_limiter = anyio.CapacityLimiter(1)
        await anyio.to_thread.run_sync(service.refresh)
        await anyio.to_thread.run_sync(compile_kernels)
        # ~430,000 objects (mlflow, pandas, the model) live as long as the process, and a
        # full collection that scans them stalls the requests in flight for ~0.2 s here. A
        # frozen heap leaves a full collection only what came after start-up.
        gc.freeze()
        poller = asyncio.create_task(service.poll()) if resolved.poll_seconds > 0 else None
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            gc.unfreeze()  # what is frozen is never freed, and extension modules say so at exit

    # /docs and /redoc from assets in the fastapi-offline package, not a CDN: they work offline.
    app = FastAPIOffline(
        title="aq forecast service", version="1", description=DESCRIPTION, lifespan=lifespan
    )
    if settings is not None:
        app.dependency_overrides[get_settings] = lambda: settings
    app.state.metrics = metrics
    app.add_middleware(BodyLimitMiddleware, limit=lambda: _body_limit(app))
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ApiError, _input_error)
    app.include_router(forecast.router)  # its routes depend on the token (deps.ServedDep)
    app.include_router(model.router)
    app.include_router(reports.router)
    app.include_router(health.router)
    app.include_router(pages.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def keep_freed_memory() -> bool:
    """Keep up to 64 MiB of freed heap in the process, and take blocks up to 32 MiB from
    it, instead of giving memory back to the OS as glibc does by default: a batch of 100
    series allocates ~8 MB of arrays, and the next batch faulted ~260 pages back in, 0.3 ms
    of system time in a 5 ms answer (benchmarks/README.md). Call it before the threads that
    will allocate start: a worker thread started before it still faulted as many (measured).
    Whether glibc took the settings; elsewhere there is nothing to do."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    return bool(
        mallopt(_M_TRIM_THRESHOLD, 64 * 1024 * 1024)
        and mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
    )


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the forecast bodies' schemas, which it cannot see: msgspec
    reads and writes them."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(msgspec_schemas(ref_template="#/components/schemas/{name}"))
    app.openapi_schema = document
    return document


def _show_service_log() -> None:
    """Swaps and failed loads are worth seeing: uvicorn configures only its own loggers, so
    give ours a handler unless the process configured logging itself."""
    logger = logging.getLogger("serving")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _body_limit(app: FastAPI) -> int:
    settings: Settings | None = getattr(app.state, "settings", None)
    return (settings or Settings.model_construct()).max_body_bytes


class BodyLimitMiddleware:
    """413 for a body over the limit: at once when Content-Length says so, else as soon as
    the streamed bytes pass it."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            response = _problem(413, "body", _too_large(limit), "body_too_large")
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
            return message

        await self.app(scope, counted, send)


class BodyTooLarge(ApiError):
    """The streamed body passed the limit (the declared one is refused before reading)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, "body", _too_large(limit), "body_too_large")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _too_large(limit: int) -> str:
    return f"The body is over {limit} bytes (AQ_API_MAX_BODY_BYTES)."


def _problem(status: int, field: str | None, msg: str, kind: str) -> JSONResponse:
    return JSONResponse(
        {"detail": [{"field": field, "msg": msg, "type": kind}]}, status_code=status
    )


async def _input_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return _problem(exc.status, exc.field, exc.msg, exc.kind)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 naming each bad field as a JSON path (series[0].values[3]); never echoes input."""
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in list(exc.errors())[:MAX_REPORTED_PROBLEMS]:
        loc = list(error.get("loc", ()))
        msg = str(error.get("msg", "invalid"))
        problems.append({"field": _path(loc), "msg": msg, "type": str(error.get("type"))})
    return JSONResponse({"detail": problems}, status_code=422)


def _path(loc: list[Any]) -> str:
    """("body", "series", 0, "values", 3) -> "series[0].values[3]"."""
    parts = loc[1:] if loc and loc[0] in {"body", "path", "query", "header"} else loc
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "body"
