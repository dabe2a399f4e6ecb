"""Prometheus metrics, one registry per app (so several apps in one process never collide).

With ``leadscore serve --workers N`` every worker writes its metrics to one shared folder
(``PROMETHEUS_MULTIPROC_DIR``, prometheus_client's multiprocess mode) and ``/metrics`` sums them, so a
scrape counts every worker's requests whichever worker answers it.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, multiprocess

if TYPE_CHECKING:
    from leadscore.serving.state import LoadedModel

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def forget_dead_workers(folder: str) -> None:
    """Remove the live gauges (``leadscore_model_info``) that worker processes now gone left in ``folder``.

    uvicorn starts a new worker when one dies, but gives no hook to tell prometheus_client
    (``mark_process_dead``), so each worker does it as it starts. Counts and latencies of the dead stay:
    they happened.
    """
    pids = {path.stem.rsplit("_", 1)[-1] for path in Path(folder).glob("gauge_live*_*.db")}
    for pid in sorted(int(p) for p in pids if p.isdigit() and not _alive(int(p))):
        multiprocess.mark_process_dead(pid, folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class Metrics:
    serving: ClassVar[Metrics | None] = None  # the metrics of the app this process serves (the last made)

    def __init__(self) -> None:
        Metrics.serving = self
        self.shared = bool(os.environ.get(MULTIPROCESS_ENV))  # several workers: values live in the shared folder
        if self.shared:
            forget_dead_workers(os.environ[MULTIPROCESS_ENV])
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "leadscore_http_requests_total",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "leadscore_http_request_duration_seconds",
            "Request latency by route and status.",
            ["route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.scores = Counter("leadscore_scores_total", "Leads scored, by tier.", ["tier"], registry=self.registry)
        self.batch_size = Histogram(
            "leadscore_single_lead_batch_size",
            "Single-lead requests scored together (micro-batching).",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.model_info = Gauge(
            "leadscore_model_info",
            "The model version serving (value 1; with several workers, 1 while any serves it).",
            ["name", "version", "source"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            "leadscore_model_reloads_total", "Model swaps by result.", ["result"], registry=self.registry
        )
        self.score_log_dropped = Counter(
            "leadscore_score_log_dropped_total", "Scores not written to the score log.", registry=self.registry
        )
        self.read_at_scrape: list[Any] = []  # collectors that read their values when scraped (not per process)

        self.shed_requests = Counter(
            "leadscore_shed_requests_total",
            "Scoring requests refused with 503 because too much work was in flight, by route.",
            ["route"],
            registry=self.registry,
        )
        self.connections_closed = Counter(
            "leadscore_connections_closed_total",
            "Connections the server closed to bound a client's cost, by reason (over_cap, header_timeout, "
            "body_timeout, send_timeout).",
            ["reason"],
            registry=self.registry,
        )
        self.registry_errors = Counter(
            "leadscore_registry_errors_total",
            "Registry calls that failed, by kind (connection_refused, timeout, no_alias, no_such_version, other).",
            ["kind"],
            registry=self.registry,
        )
        self._requests: dict[tuple[str, str, int], tuple[Any, Any]] = {}
        self._tiers: dict[str, Any] = {}

    def set_model(self, name: str, version: str, source: str, previous: LoadedModel | None) -> None:
        if previous is not None:
            if self.shared:  # a series cannot be removed from the shared folder: the old version reads 0
                self.model_info.labels(previous.name, previous.version, previous.source).set(0)
            else:
                self.model_info.remove(previous.name, previous.version, previous.source)
            self.reloads.labels("ok").inc()
        self.model_info.labels(name, version, source).set(1)

    def exposition(self) -> CollectorRegistry:
        """What ``/metrics`` exports: this app's registry, or with several workers all of theirs, summed."""
        if not self.shared:
            return self.registry
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        for collector in self.read_at_scrape:
            registry.register(collector)
        return registry

    def add_scrape_collector(self, collector: Any) -> None:
        """A collector whose values are read at each scrape (e.g. from the database), in every exposition."""
        self.read_at_scrape.append(collector)
        self.registry.register(collector)

    def shed(self, route: str) -> None:
        self.shed_requests.labels(route).inc()

    def connection_closed(self, reason: str) -> None:
        self.connections_closed.labels(reason).inc()

    def reload_failed(self) -> None:
        self.reloads.labels("refused").inc()

    def count_tier(self, tier: str, count: int = 1) -> None:
        """Count ``count`` scores in ``tier``."""
        counter = self._tiers.get(tier)
        if counter is None:
            counter = self._tiers[tier] = self.scores.labels(tier)
        counter.inc(count)

    def count_tiers(self, tiers: list[str]) -> None:
        """Count scores by tier: one increment per tier present, however many leads (a batch's thousand
        included)."""
        for tier, count in collections.Counter(tiers).items():
            self.count_tier(tier, count)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Count and time one request (the labelled series are looked up once, then kept)."""
        key = (route, method if method in _METHODS else "other", status)
        series = self._requests.get(key)
        if series is None:
            series = self._requests[key] = (
                self.requests.labels(key[0], key[1], str(status)),
                self.latency.labels(route, str(status)),
            )
        series[0].inc()
        series[1].observe(seconds)
