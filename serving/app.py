"""The scoring API: app factory, lifespan (load, warm, poll for new versions, flush the score log), error handlers.

``/docs`` (Swagger UI) and ``/redoc`` load their scripts and styles from the app itself (the files
``fastapi-offline`` installs), so they work without reaching any other host.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from leadscore.serving import routes_events, routes_health, routes_model, routes_scoring
from leadscore.serving.admission import Admission
from leadscore.serving.asgi import validation_errors
from leadscore.serving.batch import BatchWorker, batch_executor
from leadscore.serving.batcher import MicroBatcher
from leadscore.serving.memory import limit_arenas, trim
from leadscore.serving.metrics import Metrics
from leadscore.serving.middleware import Guard
from leadscore.serving.privacy import lead_hash_key
from leadscore.serving.schemas import BatchRequest
from leadscore.serving.score_log import lead_hasher
from leadscore.serving.settings import ServingSettings, get_serving_settings
from leadscore.serving.spool import SpooledScoreLog
from leadscore.serving.state import NOT_LOADED, AppState, ModelLoader, RegistryLoader

log = logging.getLogger("leadscore.serving")

INITIAL_RETRY_SECONDS = 5.0
BATCH_THREADS = 1  # batches scored at once, by the batch worker process (serving.batch; the rest wait their turn)
# How long a thread running Python keeps the GIL while another waits for it (Python's default: 5 ms). Threads
# beside the event loop (the batch thread copying a batch to and from the worker, the score log's watcher) run
# Python briefly; at 0.2 ms the event loop, waiting, gets the GIL back within about that long.
SWITCH_INTERVAL_SECONDS = 0.0002
TRIM_EVERY_SECONDS = 2.0


async def _give_memory_back(app: FastAPI, state: AppState) -> None:
    """Every ``TRIM_EVERY_SECONDS``, when batches were scored since the last look, return free heap to the
    system (:func:`serving.memory.trim`, in a thread): memory goes back to its resting size after a burst. A
    batch worker without a batch for ``batch_worker_idle_seconds`` is ended (it is started again by the next)."""
    seen = 0
    idle = state.settings.batch_worker_idle_seconds
    while True:
        await asyncio.sleep(TRIM_EVERY_SECONDS)
        if app.state.batches_scored != seen:
            seen = app.state.batches_scored
            await asyncio.to_thread(trim)
        elif idle and state.batch_worker.process is not None:
            await asyncio.to_thread(state.batch_worker.stop_if_idle, idle)


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 with each problem's field path and message (never the caller's input)."""
    return JSONResponse({"detail": validation_errors(exc.errors())}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def _load_then_poll(state: AppState, settings: ServingSettings, loader: ModelLoader | None) -> None:
    """Load the first model (the server already answers: ``/readyz`` says why it is not ready), then poll."""
    await _load_first(state, settings, loader)
    await _poll(state)


async def _load_first(state: AppState, settings: ServingSettings, loader: ModelLoader | None) -> None:
    """Build the registry client (unless a loader is given) and load the first model; a failure is kept in
    ``last_reload_error`` (the poller keeps trying)."""
    try:
        if loader is None and state.loader is NOT_LOADED:
            state.loader = await asyncio.to_thread(RegistryLoader, settings)
        await asyncio.to_thread(state.load_initial)
    except Exception as exc:  # noqa: BLE001 - stay up, not ready, and keep trying
        state.last_reload_error = f"{type(exc).__name__}: {str(exc)[:300]}"
        state.poll_failed(exc)
        log.error("no model to serve yet (%s); /readyz answers 503 until one loads", state.last_reload_error)
    else:
        # What is loaded now lives as long as the process: frozen out of the cyclic collector's sight, so a
        # full collection walks only what requests made since, not the libraries and the model.
        gc.collect()
        gc.freeze()


async def _poll(state: AppState) -> None:
    """Follow the alias: check every poll_seconds (retry sooner while nothing serves yet)."""
    while True:
        wait = (
            state.settings.poll_seconds
            if state.model is not None
            else min(INITIAL_RETRY_SECONDS, state.settings.poll_seconds or INITIAL_RETRY_SECONDS)
        )
        if state.model is not None and state.settings.poll_seconds <= 0:
            return
        await asyncio.sleep(wait)
        if state.loader is NOT_LOADED:  # the registry client could not be made at start: try again
            await _load_first(state, state.settings, None)
            continue
        try:
            await asyncio.to_thread(state.check_for_new_version)
        except Exception as exc:  # noqa: BLE001 - keep polling whatever happens
            state.last_reload_error = f"{type(exc).__name__}: {str(exc)[:300]}"
            state.poll_failed(exc)
            log.error("model load failed: %s", state.last_reload_error)


def _document_batch_request(app: FastAPI) -> None:
    """Put :class:`BatchRequest` among the OpenAPI document's schemas: the batch route reads its body itself
    (:mod:`serving.batch`) and refers to it there (``routes_scoring.BATCH_BODY``)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schema = BatchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
            for name, definition in schema.pop("$defs", {}).items():
                schemas.setdefault(name, definition)
            schemas["BatchRequest"] = schema
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: ServingSettings | None = None, loader: ModelLoader | None = None) -> FastAPI:
    """Build the app; nothing is loaded until its lifespan starts."""
    settings = settings or get_serving_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        logging.getLogger("leadscore").setLevel(settings.log_level)
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        limit_arenas()
        metrics: Metrics = app.state.metrics
        score_log = SpooledScoreLog(
            settings.resolved_score_log_url,
            settings.home / "spool",
            flush_seconds=settings.score_log_flush_seconds,
            batch_rows=settings.score_log_batch_rows,
            stop_seconds=settings.score_log_stop_seconds,
            fsync_each=settings.score_log_fsync,
            priority=settings.helper_priority,
            cpus=settings.placed_helper_cpus,
        )
        await asyncio.to_thread(score_log.start)
        key = await asyncio.to_thread(lead_hash_key, settings)
        hash_lead = lead_hasher(key)
        state = AppState(
            settings=settings,
            loader=loader if loader is not None else NOT_LOADED,
            score_log=score_log,
            metrics=metrics,
            hash_lead=hash_lead,
            batcher=MicroBatcher(hash_lead, metrics.batch_size.observe),
            batch_worker=BatchWorker(key, priority=settings.helper_priority, cpus=settings.placed_helper_cpus),
        )
        app.state.leadscore = state
        app.state.running_states.append(state)
        if loader is None and not settings.load_before_listening:  # listen at once; the model comes when it comes
            poller = asyncio.create_task(_load_then_poll(state, settings, loader), name="leadscore-model-loader")
        else:  # a loader at hand (tests, embedding), or one of several workers: ready once the app listens
            await _load_first(state, settings, loader)
            poller = asyncio.create_task(_poll(state), name="leadscore-alias-poller")
        trimmer = asyncio.create_task(_give_memory_back(app, state), name="leadscore-memory-trim")
        try:
            yield
        finally:
            for task in (poller, trimmer):
                task.cancel()
                with suppress(asyncio.CancelledError):
                    await task
            await asyncio.to_thread(state.batch_worker.close)
            await asyncio.to_thread(score_log.close)
            app.state.running_states.remove(state)
            if app.state.running_states:  # a lifespan ended inside another (test clients): the outer one serves on
                app.state.leadscore = app.state.running_states[-1]

    app = FastAPIOffline(
        title="leadscore",
        summary="Lead scoring API: calibrated conversion probability, tier, queue and reasons for each lead.",
        version="1",
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},  # Swagger UI would otherwise send the document to a validator
    )
    app.state.metrics = Metrics()
    # the batch thread (serving.batch), made on the first batch; it lives as long as the app, lifespans included
    # (the batch worker process it hands batches to lives as long as a lifespan: AppState.batch_worker)
    app.state.batch_executor = batch_executor(BATCH_THREADS)
    app.state.running_states = []  # the AppState of each lifespan running, the innermost last
    app.state.batches_scored = 0  # batch requests answered (serving.routes_scoring); read by the memory trim
    app.state.draining = False  # set when a stop is requested (serving.server): /readyz answers 503
    app.include_router(routes_scoring.router)
    app.include_router(routes_model.router)
    app.include_router(routes_health.router)
    routes_events.install(app)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    _document_batch_request(app)
    app.add_middleware(
        Admission,
        capacity=settings.max_inflight_leads,
        single_capacity=settings.max_inflight_single_leads,
        max_batch=settings.max_batch,
        on_shed=app.state.metrics.shed,
    )
    app.add_middleware(Guard, metrics=app.state.metrics, max_bytes=settings.max_body_bytes)
    return app
