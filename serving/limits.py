"""Body-size limit as pure ASGI middleware: Content-Length is checked first, then the streamed size."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException

from serving.asgi import StartTracker, send_json

TOO_LARGE = "request body too large"


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (FastAPI re-raises HTTP errors from body reading)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, detail=f"{TOO_LARGE} (limit {max_bytes} bytes)", headers={"Connection": "close"})


class BodySizeLimit:
    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def _reject(self, send: Any) -> None:
        await send_json(send, 413, f"{TOO_LARGE} (limit {self.max_bytes} bytes)", ((b"connection", b"close"),))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    await self._reject(send)
                    return
                break
        seen = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        tracked = StartTracker(send)
        try:
            await self.app(scope, limited_receive, tracked)
        except BodyTooLarge:
            if not tracked.started:
                await self._reject(send)
