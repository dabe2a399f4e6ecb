"""A reference HTTP server that does no work: the floor of ``/healthz`` timings on this machine under a load.

Run: ``python bench/reference_server.py PORT ANSWER_FILE SECONDS_PER_BATCH``. It answers, over HTTP/1.1 with
keep-alive, on uvloop's event loop (as ``leadscore serve`` does):

- ``GET /healthz``: ``{"status":"ok"}``;
- ``POST /v1/score/batch``: admitted or refused as the real server does with its default bounds (the same
  :class:`serving.admission.Admission`: past them, 503 with ``Retry-After`` and ``Connection: close`` as soon
  as the headers are in, the body not read); once an admitted batch's whole body is read, the bytes of
  ``ANSWER_FILE`` (a real answer, so the client reads as much as from the real server), one batch at a time,
  each after ``SECONDS_PER_BATCH`` of an idle wait (the real server's time per batch, so the client sends,
  waits and retries as it does against the real server);
- anything else: 404.

It parses no JSON, scores nothing and logs nothing: what the probe measures against it under the same load
is the cost of the load itself (the client, the probe and the bytes moved on the same cores).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from leadscore.serving.admission import SHED_CLOSE, Admission
from leadscore.serving.settings import ServingSettings

HEALTH = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{"status":"ok"}'
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


def default_admission() -> Admission:
    """The admission of ``leadscore serve`` with its default bounds (as ``bench_overload.py`` runs it)."""
    fields = ServingSettings.model_fields
    return Admission(
        None,
        fields["max_inflight_leads"].default,
        fields["max_batch"].default,
        fields["max_inflight_single_leads"].default,
    )


class Reference(asyncio.Protocol):
    answer = b""
    seconds_per_batch = 0.0
    turn: asyncio.Lock
    admission: Admission

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = bytearray()
        self.busy = False
        self.weight = 0  # the admitted batch's weight, held until its answer is sent

    def connection_lost(self, exc: Exception | None) -> None:
        if self.weight and not self.busy:  # gone while its body was coming: the batch task never started
            self._release()

    def _release(self) -> None:
        Reference.admission.inflight -= self.weight
        self.weight = 0

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip() == b"content-length":
                length = int(value)
        if head.startswith(b"post /v1/score/batch") and not self.weight:
            weight = Reference.admission.weight(b"POST", b"/v1/score/batch", [(b"content-length", b"%d" % length)])
            if Reference.admission.refuses(weight, single=False):
                self.buffer.clear()
                self.transport.write(SHED_CLOSE)
                self.transport.close()
                return
            Reference.admission.inflight += weight
            self.weight = weight
        if len(self.buffer) < end + 4 + length:
            return
        del self.buffer[: end + 4 + length]
        close = b"connection: close" in head
        if head.startswith(b"get /healthz "):
            self._send(HEALTH, close)
        elif head.startswith(b"post /v1/score/batch"):
            self.busy = True
            asyncio.get_running_loop().create_task(self._batch(close))
        else:
            self._send(NOT_FOUND, close)

    async def _batch(self, close: bool) -> None:
        async with Reference.turn:
            await asyncio.sleep(self.seconds_per_batch)
        head = f"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {len(self.answer)}\r\n\r\n"
        self.busy = False
        self._release()
        self._send(head.encode() + self.answer, close)

    def _send(self, data: bytes, close: bool) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(data)
        if close:
            self.transport.close()
        elif self.buffer:
            self._next()


async def serve(port: int) -> None:
    Reference.turn = asyncio.Lock()
    Reference.admission = default_admission()
    server = await asyncio.get_running_loop().create_server(Reference, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


def main() -> None:
    port, answer, seconds = int(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    Reference.answer = answer.read_bytes()
    Reference.seconds_per_batch = seconds
    try:
        import uvloop

        uvloop.run(serve(port))
    except ImportError:  # pragma: no cover - uvloop is a dependency of the API
        asyncio.run(serve(port))


if __name__ == "__main__":
    main()
