"""JSON answers and error bodies: a response class for the routes, raw ASGI sends for the middleware."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response

SLICE_BYTES = 64 * 1024


class ORJSONAnswer(JSONResponse):
    """A JSON response written by orjson; a datetime in UTC ends in ``Z`` (``2026-09-21T09:30:00Z``), not ``+00:00``."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_UTC_Z)


class PacedJSON(Response):
    """JSON bytes already rendered (a batch's answer, up to megabytes), sent ``SLICE_BYTES`` at a time with a
    turn of the event loop between slices: copying a big answer into the socket never holds the loop for
    longer than one slice, so a probe or a single lead arriving meanwhile is answered between slices.
    ``Content-Length`` is the whole body's, as for any response. Each slice waits for room in the client's
    socket; the server bounds that wait (:class:`serving.server.GuardedHttp`: a stalled reader is cut off)."""

    media_type = "application/json"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        body = self.body
        at = 0
        while True:
            end = at + SLICE_BYTES
            await send({"type": "http.response.body", "body": body[at:end], "more_body": end < len(body)})
            if end >= len(body):
                return
            at = end
            await asyncio.sleep(0)


# Fields whose keys the caller chooses: in a field path, a key under one of them is shown as KEY_PLACEHOLDER.
CALLER_KEYED = frozenset({"engagement", "attributes"})
KEY_PLACEHOLDER = "<key>"
UNKNOWN_FIELD = "<unknown field>"


def _loc(err: Mapping[str, Any]) -> list[str | int]:
    """The field path of one error, without a name the caller chose (an unknown field, a dict key)."""
    loc: list[str | int] = []
    for part in err.get("loc", ()):
        if isinstance(part, str) and loc and loc[-1] in CALLER_KEYED:
            loc.append(KEY_PLACEHOLDER)
        else:
            loc.append(part if isinstance(part, (str, int)) else str(part))
    if err.get("type") == "extra_forbidden" and loc:
        loc[-1] = UNKNOWN_FIELD
    return loc


def validation_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Field path, message and type of each validation error; the caller's input is not echoed back (neither
    its values nor the names it chose: an unknown field is ``<unknown field>``, a key of ``engagement`` or
    ``attributes`` is ``<key>``)."""
    return [{"loc": _loc(err), "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))} for err in errors]


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
