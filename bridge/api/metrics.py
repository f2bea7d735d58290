"""Prometheus metrics of one app, in a registry of its own."""

from __future__ import annotations

import time
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.ingest import ItemResult

_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "twin_bridge_usage_events",
            "Usage events answered by the API, by status and refusal reason.",
            ["status", "reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "twin_bridge_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

    def count(self, results: list[ItemResult]) -> None:
        for result in results:
            reason = result.reason.value if result.reason else ""
            self.events.labels(result.status.value, reason).inc()


class LatencyMiddleware:
    """Observes every HTTP request's latency under its route template (not the raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self._metrics.latency.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - start
            )
