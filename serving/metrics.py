"""Prometheus metrics of one app (its own registry, so apps in one process don't collide) and
the ASGI middleware that counts and times every request by route template."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_METHODS = frozenset({"GET", "POST", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"})
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    def __init__(self) -> None:
        disable_created_metrics()  # no `_created` twin of every counter (process-wide)
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "aq_serving_requests",
            "HTTP requests answered.",
            ["method", "route", "status"],
            registry=r,
        )
        self.errors = Counter(
            "aq_serving_request_errors",
            "HTTP answers with status >= 400, by status.",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "aq_serving_request_duration_seconds",
            "Time from request to last response byte.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.series = Counter(
            "aq_serving_forecast_series", "Series forecast.", ["endpoint"], registry=r
        )
        self.model_version = Gauge(
            "aq_serving_model_version",
            "Registry version of the model served (0: none).",
            registry=r,
        )
        self.model_loaded_at = Gauge(
            "aq_serving_model_loaded_timestamp_seconds",
            "When the served model was loaded.",
            registry=r,
        )
        self.swaps = Counter(
            "aq_serving_model_swaps", "Models replaced by a newer champion.", registry=r
        )
        self.load_failures = Counter(
            "aq_serving_model_load_failures",
            "Champion versions that failed to load (the old model kept serving).",
            registry=r,
        )
        self.snapshot_loads = Counter(
            "aq_serving_online_features_loads", "online_features snapshots loaded.", registry=r
        )
        self.snapshot_failures = Counter(
            "aq_serving_online_features_load_failures",
            "online_features snapshots that failed to load (the old one kept serving).",
            registry=r,
        )


class MetricsMiddleware:
    """Counts, times and labels every HTTP request with its route template (never the raw
    path: a fuzzer must not create a series per URL)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.metrics.latency.labels(method, template).observe(time.perf_counter() - started)
            self.metrics.requests.labels(method, template, str(status)).inc()
            if status >= 400:
                self.metrics.errors.labels(template, str(status)).inc()
