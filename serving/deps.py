"""Request context: typed state, the serving model (503 until ready), API-key checks, request ids.

The scoring endpoints call :func:`scoring_context` directly (one plain call per request: FastAPI's
dependency solving cost more than scoring a lead); the other routes use the same checks as
dependencies.
"""

from __future__ import annotations

import hmac
import random
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.datastructures import Headers

from leadscore.serving.state import AppState, LoadedModel

NOT_READY = "model not ready"
BAD_KEY = "missing or invalid API key"

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (when keys are configured).")
_bearer = HTTPBearer(auto_error=False, description="An API key as a bearer token (when keys are configured).")
# How the scoring routes, which read the headers themselves, declare the same schemes in OpenAPI.
SECURITY = [{"APIKeyHeader": []}, {"HTTPBearer": []}]
_LOW_62 = (1 << 62) - 1


async def get_state(request: Request) -> AppState:
    return request.app.state.leadscore


State = Annotated[AppState, Depends(get_state)]


def check_key(state: AppState, headers: Headers) -> None:
    """401 unless keys are off or ``X-API-Key`` / ``Authorization: Bearer`` holds one (compared in constant time)."""
    keys = state.settings.api_keys
    if not keys:
        return
    given = headers.get("x-api-key")
    if not given:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else ""
    if given:
        offered = given.encode("utf-8")
        matched = False
        for key in keys:  # compare with every key
            matched |= hmac.compare_digest(offered, key.get_secret_value().encode("utf-8"))
        if matched:
            return
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=BAD_KEY, headers={"WWW-Authenticate": "Bearer"})


async def require_key(
    request: Request,
    state: State,
    api_key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[object | None, Security(_bearer)] = None,
) -> None:
    """The dependency form of :func:`check_key` (it also puts both schemes in the OpenAPI document)."""
    check_key(state, request.headers)


def serving_model(state: AppState) -> LoadedModel:
    model = state.model  # read the reference once: this request is served by this version end to end
    if model is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=NOT_READY, headers={"Retry-After": "5"})
    return model


async def get_model(state: State) -> LoadedModel:
    return serving_model(state)


Model = Annotated[LoadedModel, Depends(get_model)]


def request_id(headers: Headers) -> str:
    """The caller's ``X-Request-Id`` when it is a short token, else a new UUIDv7 (32 hex digits)."""
    given = headers.get("x-request-id", "")
    if 0 < len(given) <= 64 and given.isascii() and given.replace("-", "").replace("_", "").isalnum():
        return given
    return uuid7_hex()


def uuid7_hex(now_ns: int | None = None) -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: the Unix time in milliseconds, then 74 random bits.

    Time-ordered ids go in at the end of the score log's ``request_id`` index rather than at random
    places in it: about half the SQLite work of a logged score (measured on a 117 MB log). The random
    bits come from Python's generator (seeded from the OS in each process): unique, not secret, and
    0.8 us where ``uuid4`` (an ``os.urandom`` system call) costs 2 us in a tight loop.
    """
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    bits = random.getrandbits(74)
    return f"{ms << 80 | 0x7 << 76 | bits >> 62 << 64 | 0b10 << 62 | bits & _LOW_62:032x}"


def scoring_context(state: AppState, headers: Headers) -> tuple[LoadedModel, str]:
    """Key check, serving model and request id of a scoring request, in that order of refusal (401, then 503)."""
    check_key(state, headers)
    return serving_model(state), request_id(headers)
