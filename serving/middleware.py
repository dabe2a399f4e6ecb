"""The one middleware every HTTP request passes: body-size limit, metrics by route and status, a stable 500.

One pure-ASGI layer rather than three, so ``send`` and ``receive`` are wrapped once per request.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from leadscore.serving.asgi import send_http_error, send_json
from leadscore.serving.metrics import Metrics

log = logging.getLogger("leadscore.serving")

TOO_LARGE = "request body too large"
NOT_JSON = "content-type must be application/json"
INTERNAL_ERROR = "internal server error"
CLIENT_CLOSED = 499  # the status nginx logs for a client that went away before its answer: nothing is sent
CUT_OFF = "leadscore.cut_off"  # set in the scope by the server when it cut a reader that stalled mid-answer


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit (the routes answer it as any HTTP error)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, detail=f"{TOO_LARGE} (limit {max_bytes} bytes)", headers={"Connection": "close"})


class Guard:
    """Per HTTP request:

    - **content type**: a ``POST`` under ``/v1/`` without ``Content-Type: application/json`` is refused at
      once (415), before its body is read (a browser form cannot post to the API without a preflight);
    - **body size**: a declared ``Content-Length`` over ``max_bytes`` is refused at once (413); a
      streamed body is counted as it is read, and passing the limit raises :class:`BodyTooLarge`;
    - **metrics**: the request is counted and timed by route template (never the raw path) and status;
      a client that disconnected before its answer started (mid-body too) is counted as 499 and sent nothing,
      and so is one the server cut off for not reading its answer (``CUT_OFF`` in the scope);
    - **faults**: an unhandled exception becomes one stable 500 and one log line naming the route and
      the stack, never the request's data (the exception's message may quote it, so it is left out),
      and it is not re-raised to the server (which would log it whole).
    """

    def __init__(self, app: Any, metrics: Metrics, max_bytes: int) -> None:
        self.app, self.metrics, self.max_bytes = app, metrics, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        status = 500
        started = False
        gone = False  # the client disconnected before the answer started
        seen = 0

        async def tracked_send(message: dict[str, Any]) -> None:
            nonlocal status, started
            if gone:
                return
            if message["type"] == "http.response.start":
                status, started = message["status"], True
            await send(message)

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen, gone
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            elif message["type"] == "http.disconnect" and not started:
                gone = True
            return message

        try:
            if self._declared(scope) > self.max_bytes:
                raise BodyTooLarge(self.max_bytes)
            if scope.get("method") == "POST" and scope.get("path", "").startswith("/v1/") and not _is_json(scope):
                status = 415
                await send_json(send, 415, NOT_JSON)
                return
            await self.app(scope, limited_receive, tracked_send)
        except BodyTooLarge as exc:
            if not started:
                await send_http_error(tracked_send, exc)
        except ClientDisconnect:
            gone = not started
        except Exception as exc:  # noqa: BLE001
            route = getattr(scope.get("route"), "path", "unmatched")
            stack = "".join(traceback.format_tb(exc.__traceback__))
            log.error("unhandled %s on %s %s\n%s", type(exc).__name__, scope.get("method"), route, stack)
            if not started:
                await send_json(tracked_send, 500, INTERNAL_ERROR)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            self.metrics.observe(
                route,
                scope.get("method", ""),
                CLIENT_CLOSED if gone or scope.get(CUT_OFF) else status,
                time.perf_counter() - began,
            )

    @staticmethod
    def _declared(scope: dict[str, Any]) -> int:
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return -1
        return -1


def _is_json(scope: dict[str, Any]) -> bool:
    """The request's media type is ``application/json`` (parameters such as ``charset`` allowed)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower() == b"application/json"
    return False
