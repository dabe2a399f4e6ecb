"""Admission control: bounds on the scoring work in flight, counted in leads; past them, 503 at once.

A scoring request is weighed before its body is read: a single lead weighs 1, a batch weighs its declared
body size in units of ``BATCH_BYTES_PER_LEAD`` bytes (at least 1, at most ``max_batch``), so a batch of a
thousand ordinary leads weighs a thousand; a batch streamed without ``Content-Length`` weighs ``max_batch``. Of ``capacity`` leads in flight, ``single_capacity`` are kept
for single leads. A request is refused (503 with ``Retry-After``, its body not read) when

- it is a single lead and ``single_capacity`` single leads are in flight already;
- it is a batch and the leads of the batches in flight plus its weight would pass ``capacity -
  single_capacity`` (unless no batch is in flight: a lone batch bigger than that is still served).

So the work in flight stays within ``capacity`` (a lone oversized batch aside), and neither kind crowds the
other out: however many batches are in flight, single leads have their share, and the reverse. Single
leads are scored on the event loop (micro-batched), batches by the batch worker process; their bound also keeps
the queue of single leads short, so an admitted single lead is answered within a few scoring turns however
many callers wait. A request's weight is held until its answer is sent (or it fails). Health, readiness,
metrics and model metadata are never weighed, so they are answered whatever the scoring load.

A refused batch is answered ``Connection: close`` (its body, possibly megabytes, is not read). Refusing
is cheap on purpose: clients that retry at once must not take the server's time from the admitted work.
The server's protocol (:class:`serving.server.GuardedHttp`) refuses through :attr:`Admission.serving` as
soon as a request's headers are parsed, without starting the app; this middleware refuses what reaches
the app (pipelined requests, or the app run by another server).

Everything runs on the event loop: the counts need no lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import orjson

from leadscore.serving.asgi import send_json

SCORE_PATH = "/v1/score"
BATCH_PATH = "/v1/score/batch"
BATCH_BYTES_PER_LEAD = 200
RETRY_AFTER_SECONDS = 1
OVERLOADED = "overloaded: too much scoring work in flight, retry later"


def _shed_response(close: bool) -> bytes:
    body = orjson.dumps({"detail": OVERLOADED})
    head = (
        f"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"retry-after: {RETRY_AFTER_SECONDS}\r\n{'connection: close' if close else 'connection: keep-alive'}\r\n\r\n"
    )
    return head.encode() + body


SHED_KEEP_ALIVE = _shed_response(close=False)
SHED_CLOSE = _shed_response(close=True)


class Admission:
    """ASGI middleware counting the leads in flight (``inflight``; ``singles`` of them single leads).

    ``single_capacity`` defaults to 1 lead of ``capacity``; it must leave batches at least one."""

    serving: ClassVar[Admission | None] = None  # the admission of the app this process serves (the last made)

    def __init__(
        self,
        app: Any,
        capacity: int,
        max_batch: int,
        single_capacity: int | None = None,
        on_shed: Callable[[str], None] = lambda route: None,
    ) -> None:
        self.app, self.capacity, self.max_batch, self.on_shed = app, capacity, max_batch, on_shed
        self.single_capacity = 1 if single_capacity is None else single_capacity
        if not 0 < self.single_capacity < capacity:
            raise ValueError(
                f"the single leads' share ({self.single_capacity}) must be at least 1 and less than the capacity "
                f"({capacity}): batches take the rest"
            )
        self.batch_capacity = capacity - self.single_capacity
        self.inflight = 0
        self.singles = 0
        Admission.serving = self

    def weight(self, method: str | bytes, path: str | bytes, headers: Iterable[tuple[bytes, bytes]]) -> int:
        """The request's weight in leads (0: not scoring work)."""
        if method not in ("POST", b"POST"):
            return 0
        if path in (SCORE_PATH, b"/v1/score"):
            return 1
        if path not in (BATCH_PATH, b"/v1/score/batch"):
            return 0
        declared = None
        for name, value in headers:
            if name == b"content-length":
                declared = int(value) if value.isdigit() else 0
                break
        if declared is None:  # a streamed (chunked) body: its size is unknown until read, so the most a batch weighs
            return self.max_batch
        return min(self.max_batch, max(1, declared // BATCH_BYTES_PER_LEAD))

    def refuses(self, weight: int, single: bool) -> bool:
        """Whether a request of ``weight`` leads is refused now (a single lead against the single leads in
        flight, a batch against the batches')."""
        if single:
            return self.singles >= self.single_capacity
        batches = self.inflight - self.singles
        return bool(batches) and batches + weight > self.batch_capacity

    def shed(self, path: str) -> None:
        self.on_shed(path)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path")
        weight = self.weight(scope.get("method", ""), path, scope.get("headers", ()))
        if not weight:
            await self.app(scope, receive, send)
            return
        single = path == SCORE_PATH
        if self.refuses(weight, single):
            self.shed(scope["path"])
            headers = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
            if not single:  # a batch's body is not read: the connection is closed after the answer
                headers.append((b"connection", b"close"))
            await send_json(send, 503, OVERLOADED, headers)
            return
        self.inflight += weight
        self.singles += single
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= weight
            self.singles -= single
