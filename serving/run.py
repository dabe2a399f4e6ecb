"""Run the scoring API under uvicorn (uvloop and httptools when installed)."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from leadscore.serving.metrics import MULTIPROCESS_ENV
from leadscore.serving.priority import format_cpus, place_process, split_cpus
from leadscore.serving.privacy import check_bind
from leadscore.serving.settings import ServingSettings, get_serving_settings

log = logging.getLogger(__name__)


def server_options(settings: ServingSettings, workers: int = 1) -> dict[str, Any]:
    """uvicorn options shared by the CLI, the demo and the benchmark: the guarded protocol
    (:mod:`serving.server`: connection cap, header and body deadlines), keep-alive limit, stop timeout."""
    from leadscore.serving.server import guarded_protocol, raise_open_files_limit

    raise_open_files_limit(settings.max_connections + 256)  # room for the cap, the score log and the model
    http: Any = (
        "leadscore.serving.server:GuardedHttpFromEnv"
        if workers > 1
        else guarded_protocol(settings.max_connections, settings.header_timeout_seconds, settings.body_timeout_seconds)
    )
    return {
        "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        "http": http,
        "access_log": settings.access_log,
        "log_level": settings.log_level.lower(),
        "timeout_keep_alive": settings.keep_alive_seconds,
        "timeout_graceful_shutdown": settings.stop_seconds,
        "backlog": min(2048, settings.max_connections),
        "lifespan": "on",
    }


@contextmanager
def shared_metrics_folder() -> Iterator[None]:
    """A fresh folder where the workers write their metrics (removed at the end), unless one is given."""
    if os.environ.get(MULTIPROCESS_ENV):  # the operator's own: prometheus_client wants it emptied before a start
        yield
        return
    folder = tempfile.mkdtemp(prefix="leadscore-metrics-")
    os.environ[MULTIPROCESS_ENV] = folder  # the workers inherit it
    try:
        yield
    finally:
        del os.environ[MULTIPROCESS_ENV]
        shutil.rmtree(folder, ignore_errors=True)


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    settings: ServingSettings | None = None,
    allow_public_without_keys: bool = False,
) -> None:
    """Serve until stopped (SIGINT/SIGTERM stop cleanly: the score log is flushed).

    With ``workers > 1`` each worker process builds its own app from ``LEADSCORE_*`` environment
    settings (``settings`` must then be None); each loads, caches and polls the model itself, and their
    Prometheus metrics are summed in ``/metrics`` (through a shared folder, see :mod:`serving.metrics`).
    A non-loopback ``host`` without API keys is refused (PermissionError) unless
    ``allow_public_without_keys``.
    """
    if workers > 1 and settings is not None:
        raise ValueError("settings cannot be passed to several worker processes: set LEADSCORE_* environment variables")
    resolved = settings or get_serving_settings()
    check_bind(host, resolved, allow_public_without_keys)  # before anything starts
    logging.basicConfig(level=resolved.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = server_options(resolved, workers)
    if workers > 1:
        # Workers share one socket: one still loading would answer 503 while the others serve.
        os.environ["LEADSCORE_LOAD_BEFORE_LISTENING"] = "true"
        from leadscore.serving.server import serve_workers

        with shared_metrics_folder():
            serve_workers("leadscore.serving.app:create_app", host, port, options, workers)
        return
    resolved = place_api(resolved)
    from leadscore.serving.app import create_app
    from leadscore.serving.server import serve

    serve(create_app(resolved), host, port, options, resolved.drain_seconds)


def place_api(settings: ServingSettings) -> ServingSettings:
    """Run this (the API's) process on its share of the CPUs (:func:`serving.priority.split_cpus`); the settings
    its helpers are then started with name their share. Unchanged settings when placement is left to the
    scheduler."""
    split = split_cpus(settings.helper_cpus)
    if split is None:
        if settings.placed_helper_cpus is not None:  # a CPU list naming none this process may use, or all of them
            log.warning(
                "LEADSCORE_HELPER_CPUS=%s leaves no CPU to the API or to its helpers: no placement",
                settings.helper_cpus,
            )
            return settings.model_copy(update={"helper_cpus": "all"})
        return settings
    api, helpers = split
    place_process(api)
    log.info(
        "API process on CPU %s, its batch worker and score-log writer on CPU %s", format_cpus(api), format_cpus(helpers)
    )
    return settings.model_copy(update={"helper_cpus": format_cpus(helpers)})
