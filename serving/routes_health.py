"""Liveness, readiness and Prometheus metrics (no API key: meant for the platform, not for callers)."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from leadscore.serving.deps import NOT_READY, State
from leadscore.serving.schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """Liveness: the process answers."""
    return Health(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness, "description": NOT_READY}})
async def readyz(state: State) -> Response | Readiness:
    """Readiness: a model is loaded and warmed (503 until then)."""
    model = state.model
    if model is None:
        return JSONResponse({"status": NOT_READY, "model": None}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)
    return Readiness(status="ready", model={"name": model.name, "version": model.version})


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
async def metrics(state: State) -> Response:
    """Prometheus metrics: requests and latency by route and status, scores by tier, model version."""
    return Response(generate_latest(state.metrics.exposition()), media_type=CONTENT_TYPE_LATEST)
