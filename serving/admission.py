"""Admission control: a bound on the scoring work in flight, counted in leads; past it, 503 at once.

A scoring request is weighed before its body is read: a single lead weighs 1, a batch weighs its declared
body size in units of ``BATCH_BYTES_PER_LEAD`` bytes (at least 1, at most ``max_batch``), so a batch of a
thousand ordinary leads weighs a thousand. When the weight of what is in flight plus the new request's
would pass ``capacity``, the request is answered 503 with ``Retry-After`` without reading its body; else
its weight is held until its answer is sent (or it fails). Health, readiness, metrics and model
metadata are never weighed, so they are answered whatever the scoring load.

Everything runs on the event loop: the count needs no lock.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from leadscore.serving.asgi import send_json

SCORE_PATH = "/v1/score"
BATCH_PATH = "/v1/score/batch"
BATCH_BYTES_PER_LEAD = 200
RETRY_AFTER_SECONDS = 1
OVERLOADED = "overloaded: too much scoring work in flight, retry later"


class Admission:
    """ASGI middleware counting the leads in flight (``inflight``) against ``capacity``."""

    def __init__(
        self, app: Any, capacity: int, max_batch: int, on_shed: Callable[[str], None] = lambda route: None
    ) -> None:
        self.app, self.capacity, self.max_batch, self.on_shed = app, capacity, max_batch, on_shed
        self.inflight = 0

    def weight(self, scope: dict[str, Any]) -> int:
        """The request's weight in leads (0: not scoring work)."""
        if scope.get("method") != "POST":
            return 0
        path = scope.get("path")
        if path == SCORE_PATH:
            return 1
        if path != BATCH_PATH:
            return 0
        declared = 0
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                declared = int(value) if value.isdigit() else 0
                break
        return min(self.max_batch, max(1, declared // BATCH_BYTES_PER_LEAD))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        weight = self.weight(scope) if scope["type"] == "http" else 0
        if not weight:
            await self.app(scope, receive, send)
            return
        if self.inflight and self.inflight + weight > self.capacity:
            self.on_shed(scope["path"])
            await send_json(send, 503, OVERLOADED, [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())])
            return
        self.inflight += weight
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= weight
