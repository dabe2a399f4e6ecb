"""Dependencies: typed state, the serving model (503 until ready), API-key checks, request ids."""

from __future__ import annotations

import hmac
import uuid
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from serving.state import AppState, LoadedModel

NOT_READY = "model not ready"
BAD_KEY = "missing or invalid API key"

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (when keys are configured).")
_bearer = HTTPBearer(auto_error=False, description="An API key as a bearer token (when keys are configured).")


async def get_state(request: Request) -> AppState:
    return request.app.state.leadscore


State = Annotated[AppState, Depends(get_state)]


async def require_key(
    state: State,
    api_key: Annotated[str | None, Security(_api_key_header)] = None,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
) -> None:
    keys = state.settings.api_keys
    if not keys:
        return
    given = api_key or (bearer.credentials if bearer is not None else None)
    if given:
        offered = given.encode("utf-8")
        matched = False
        for key in keys:  # compare with every key in constant time
            matched |= hmac.compare_digest(offered, key.get_secret_value().encode("utf-8"))
        if matched:
            return
    raise HTTPException(status.HTTP_401_UNAUTHORIZED, detail=BAD_KEY, headers={"WWW-Authenticate": "Bearer"})


async def get_model(state: State) -> LoadedModel:
    model = state.model  # read the reference once: this request is served by this version end to end
    if model is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=NOT_READY, headers={"Retry-After": "5"})
    return model


Model = Annotated[LoadedModel, Depends(get_model)]


async def request_id(request: Request) -> str:
    given = request.headers.get("x-request-id", "")
    if 0 < len(given) <= 64 and given.isascii() and given.replace("-", "").replace("_", "").isalnum():
        return given
    return uuid.uuid4().hex


RequestId = Annotated[str, Depends(request_id)]
