"""Prometheus metrics, one registry per app (so several apps in one process never collide)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from serving.state import LoadedModel

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


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
        self.batch_size = Histogram(
            "leadscore_single_lead_batch_size", "Single-lead requests scored together (micro-batching).",
            buckets=(1, 2, 4, 8, 16, 32, 64), registry=self.registry,
        )
        self.model_info = Gauge(
            "leadscore_model_info", "The model version serving (value 1).", ["name", "version", "source"], registry=self.registry
        )
        self.reloads = Counter("leadscore_model_reloads_total", "Model swaps by result.", ["result"], registry=self.registry)
        self.score_log_dropped = Counter(
            "leadscore_score_log_dropped_total", "Scores not written to the score log.", registry=self.registry
        )
        self._requests: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._tiers: dict[str, Any] = {}

    def set_model(self, name: str, version: str, source: str, previous: LoadedModel | None) -> None:
        if previous is not None:
            self.model_info.remove(previous.name, previous.version, previous.source)
            self.reloads.labels("ok").inc()
        self.model_info.labels(name, version, source).set(1)

    def reload_failed(self) -> None:
        self.reloads.labels("refused").inc()

    def count_tiers(self, tiers: list[str]) -> None:
        for tier in tiers:
            counter = self._tiers.get(tier)
            if counter is None:
                counter = self._tiers[tier] = self.scores.labels(tier)
            counter.inc()

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count and time one request (the labelled series are looked up once, then kept)."""
        key = (route, method if method in _METHODS else "other", status)
        series = self._requests.get(key)
        if series is None:
            series = self._requests[key] = (self.requests.labels(key[0], key[1], str(status)), self.latency.labels(route, str(status)))
        series[0].inc()
        series[1].observe(seconds)
