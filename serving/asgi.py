"""Small pieces shared by the pure-ASGI middlewares: a JSON error response, and knowing whether one has started."""

from __future__ import annotations

from typing import Any

import orjson


async def send_json(send: Any, status: int, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    """Send ``{"detail": ...}`` with ``status`` as a complete response."""
    body = orjson.dumps({"detail": detail})
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
    })
    await send({"type": "http.response.body", "body": body})


class StartTracker:
    """Wraps ``send``; ``started`` says whether a response has begun (after which no other may be sent)."""

    def __init__(self, send: Any) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)
