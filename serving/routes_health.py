"""Liveness, readiness and Prometheus metrics (no API key: meant for the platform, not for callers)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool

from leadscore.serving.deps import NOT_READY, STOPPING, State
from leadscore.serving.schemas import Health, Readiness
from leadscore.serving.state import AppState

router = APIRouter(tags=["health"])
LIVE = {"status": "ok"}  # the liveness answer (the server's protocol sends these bytes itself: serving.server)


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(**LIVE)


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": NOT_READY}})
async def readyz(request: Request) -> Response | Readiness:
    """Readiness: a model is loaded and warmed, and no stop is under way (503 otherwise, with the reason)."""
    state = getattr(request.app.state, "leadscore", None)
    model = state.model if state is not None else None
    if request.app.state.draining:
        return _not_ready(STOPPING)
    if state is None or model is None:
        return _not_ready(f"{NOT_READY}: {_why(state)}")
    return Readiness(status="ready", model={"name": model.name, "version": model.version})


def _why(state: AppState | None) -> str:
    """Why no model serves yet, as a kind only (this route needs no key: no URL, no message)."""
    if state is None or (state.last_poll_error is None and state.last_reload_error is None):
        return "loading"
    if state.last_poll_error is not None:
        return state.last_poll_error.split(":", 1)[0]
    return "load failed"


def _not_ready(why: str) -> JSONResponse:
    return JSONResponse(
        {"status": why, "model": None}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "1"}
    )


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(state: State) -> Response:
    """Prometheus metrics: requests and latency by route and status, scores by tier, model version.

    Collected on a worker thread: some values are read from files or the database at a scrape (the
    SLA gauges), and the event loop keeps scoring meanwhile."""
    body = await run_in_threadpool(lambda: generate_latest(state.metrics.exposition()))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
