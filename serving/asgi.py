"""Small ASGI pieces shared by the middleware and the scoring endpoints: JSON responses and error bodies."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException


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


async def send_body(send: Any, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Send a complete JSON response whose body is already encoded."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Any, status: int, detail: Any, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Send ``{"detail": ...}`` with ``status`` as a complete response."""
    await send_body(send, status, orjson.dumps({"detail": detail}), headers)


async def send_http_error(send: Any, exc: HTTPException) -> None:
    """Send an HTTP error as FastAPI's handler would: ``{"detail": ...}`` with its status and headers."""
    await send_json(
        send, exc.status_code, exc.detail, [(k.lower().encode(), v.encode()) for k, v in (exc.headers or {}).items()]
    )
