"""Prometheus metrics, one registry per app (so several apps in one process never collide)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from serving.state import LoadedModel

Scope = dict[str, Any]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "leadscore_http_requests_total", "HTTP requests by route, method and status.",
            ["route", "method", "status"], registry=self.registry,
        )
        self.latency = Histogram(
            "leadscore_http_request_duration_seconds", "Request latency by route and status.", ["route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5), registry=self.registry,
        )
        self.scores = Counter("leadscore_scores_total", "Leads scored, by tier.", ["tier"], registry=self.registry)
        self.model_info = Gauge(
            "leadscore_model_info", "The model version serving (value 1).", ["name", "version", "source"], registry=self.registry
        )
        self.reloads = Counter("leadscore_model_reloads_total", "Model swaps by result.", ["result"], registry=self.registry)
        self.score_log_dropped = Counter(
            "leadscore_score_log_dropped_total", "Scores not written to the score log.", registry=self.registry
        )

    def set_model(self, name: str, version: str, source: str, previous: LoadedModel | None) -> None:
        if previous is not None:
            self.model_info.remove(previous.name, previous.version, previous.source)
            self.reloads.labels("ok").inc()
        self.model_info.labels(name, version, source).set(1)

    def reload_failed(self) -> None:
        self.reloads.labels("refused").inc()

    def count_tiers(self, tiers: list[str]) -> None:
        for tier in tiers:
            self.scores.labels(tier).inc()


class MetricsMiddleware:
    """Pure ASGI middleware: count and time every HTTP request by route template (never by raw path)."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or "unmatched"
            code = str(status)
            self.metrics.requests.labels(label, scope.get("method", ""), code).inc()
            self.metrics.latency.labels(label, code).observe(time.perf_counter() - began)
