"""Request dependencies: the app's state, the API-key check, the serving model and the request id.

Each is a plain FastAPI dependency, so a test (or an embedding app) can replace it through
``app.dependency_overrides[...]``. Routes that need a key list :data:`require_key` among their
dependencies, before :data:`Model`: a request without a valid key is refused (401) before the model is
looked at (503).
"""

from __future__ import annotations

import hmac
import random
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader

from leadscore.serving.state import AppState, LoadedModel

NOT_READY = "model not ready"
STOPPING = "stopping"
BAD_KEY = "missing or invalid API key"
RETRY_AFTER_SECONDS = 5
_LOW_62 = (1 << 62) - 1


async def get_state(request: Request) -> AppState:
    """The app's :class:`AppState` (set by the lifespan)."""
    return request.app.state.leadscore


State = Annotated[AppState, Depends(get_state)]


def check_key(request: Request) -> None:
    """401 unless keys are off or ``X-API-Key`` (or else ``Authorization: Bearer``) holds one.

    The offered key is compared with every configured key in constant time, so the time taken does not
    tell which key, or how much of one, matched.
    """
    keys = request.app.state.leadscore.settings.api_keys
    if not keys:
        return
    headers = request.headers
    given = headers.get("x-api-key")
    if not given:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        given = token.strip() if scheme.lower() == "bearer" else ""
    if given:
        offered = given.encode("utf-8")
        matched = False
        for key in keys:
            matched |= hmac.compare_digest(offered, key.get_secret_value().encode("utf-8"))
        if matched:
            return
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=BAD_KEY, headers={"WWW-Authenticate": "Bearer"})


def serving_model(request: Request) -> LoadedModel:
    """The model version serving now; 503 with ``Retry-After`` while none is loaded.

    The reference is read once, so one request is served by one version end to end, even across a swap.
    """
    model = request.app.state.leadscore.model
    if model is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, detail=NOT_READY, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
        )
    return model


def callers_request_id(request: Request) -> str | None:
    """The caller's ``X-Request-Id`` when it is a short token (at most 64 letters, digits, ``-`` or ``_``)."""
    given = request.headers.get("x-request-id", "")
    if 0 < len(given) <= 64 and given.isascii() and given.replace("-", "").replace("_", "").isalnum():
        return given
    return None


def request_id(request: Request) -> str:
    """The caller's ``X-Request-Id`` when it is a short token, else a new UUIDv7 (32 hex digits)."""
    return callers_request_id(request) or uuid7_hex()


_KEY_SCHEME = {
    "name": "X-API-Key",
    "scheme_name": "APIKeyHeader",
    "auto_error": False,
    "description": "An API key (when keys are configured); `Authorization: Bearer <key>` is accepted too.",
}


class APIKeyCheck(APIKeyHeader):
    """The API-key check (:func:`check_key`), listed in the OpenAPI document as the ``APIKeyHeader`` scheme."""

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        check_key(request)


require_key = APIKeyCheck(**_KEY_SCHEME)


@dataclass(frozen=True)
class ScoringContext:
    """What a scoring request is served with: one model version end to end, and its request id."""

    model: LoadedModel
    request_id: str
    log_id: str | None = None  # what the score log stores instead of a caller's id (None: the id we made)


class ScoringAccess(APIKeyHeader):
    """The scoring routes' one dependency: the key check (401), then the serving model (503), then the
    request id. One dependency rather than three, since FastAPI resolves each dependency of every request;
    it is listed in the OpenAPI document as the ``APIKeyHeader`` scheme, as :data:`require_key` is.
    A caller's ``X-Request-Id`` is answered as sent and logged as its HMAC under the lead-hash key."""

    async def __call__(self, request: Request) -> ScoringContext:  # type: ignore[override]
        check_key(request)
        model = serving_model(request)
        given = callers_request_id(request)
        if given is None:
            return ScoringContext(model, uuid7_hex())
        # A caller's id may carry what it knows (a name, a CRM key): the score log keeps its keyed hash only.
        return ScoringContext(model, given, request.app.state.leadscore.hash_lead(given))


scoring_access = ScoringAccess(**_KEY_SCHEME)
Scoring = Annotated[ScoringContext, Depends(scoring_access)]


async def get_model(request: Request) -> LoadedModel:
    """The dependency form of :func:`serving_model` (routes other than scoring)."""
    return serving_model(request)


Model = Annotated[LoadedModel, Depends(get_model)]


def uuid7_hex(now_ns: int | None = None) -> str:
    """A UUIDv7 (RFC 9562) as 32 hex digits: the Unix time in milliseconds, then 74 random bits.

    Ids made later sort later (to the millisecond), so they are appended at the end of the score log's
    ``request_id`` index rather than inserted at random places in it. The random bits come from Python's
    generator, seeded from the OS in each process: unique, not secret.
    """
    ms = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    bits = random.getrandbits(74)
    return f"{ms << 80 | 0x7 << 76 | bits >> 62 << 64 | 0b10 << 62 | bits & _LOW_62:032x}"
