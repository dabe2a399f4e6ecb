"""JSON answers and error bodies: a response class for the routes, raw ASGI sends for the middleware."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse


class ORJSONAnswer(JSONResponse):
    """A JSON response written by orjson; a datetime in UTC ends in ``Z`` (``2026-09-21T09:30:00Z``), not ``+00:00``."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_UTC_Z)


def validation_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Field path, message and type of each validation error; the caller's input is not echoed back."""
    return [
        {
            "loc": [p if isinstance(p, (str, int)) else str(p) for p in err.get("loc", ())],
            "msg": str(err.get("msg", "")),
            "type": str(err.get("type", "")),
        }
        for err in errors
    ]


async def send_json(send: Any, status: int, detail: Any, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Send ``{"detail": ...}`` with ``status`` as a complete response."""
    body = orjson.dumps({"detail": detail})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_http_error(send: Any, exc: HTTPException) -> None:
    """Send an HTTP error as FastAPI's handler would: ``{"detail": ...}`` with its status and headers."""
    await send_json(
        send, exc.status_code, exc.detail, [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
    )
