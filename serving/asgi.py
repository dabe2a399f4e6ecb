"""Small ASGI pieces shared by the middlewares and the scoring endpoints: JSON responses, error bodies, started-or-not."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import orjson


def validation_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Field path, message and type of each validation error; the caller's input is not echoed back."""
    return [
        {"loc": [p if isinstance(p, (str, int)) else str(p) for p in err.get("loc", ())], "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        for err in errors
    ]


async def send_body(send: Any, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Send a complete JSON response whose body is already encoded."""
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Any, status: int, detail: Any, headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Send ``{"detail": ...}`` with ``status`` as a complete response."""
    await send_body(send, status, orjson.dumps({"detail": detail}), headers)


class StartTracker:
    """Wraps ``send``; ``started`` says whether a response has begun (after which no other may be sent)."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
