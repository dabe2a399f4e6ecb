"""A reference HTTP server that does no work: the floor of ``/healthz`` timings on this machine under a load.

Run: ``python bench/reference_server.py PORT ANSWER_FILE SECONDS_PER_BATCH``. It answers, over HTTP/1.1 with
keep-alive, on uvloop's event loop (as ``leadscore serve`` does):

- ``GET /healthz``: ``{"status":"ok"}``;
- ``POST /v1/score/batch``: the bytes of ``ANSWER_FILE`` (a real answer, so the client reads as much as from
  the real server), once the whole body is read, one batch at a time, each after ``SECONDS_PER_BATCH`` of an
  idle wait (the real server's time per batch, so the client sends at the same rate);
- anything else: 404.

It parses no JSON, scores nothing and logs nothing: what the probe measures against it under the same load
is the cost of the load itself (the client, the probe and the bytes moved on the same cores).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

HEALTH = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 15\r\n\r\n{"status":"ok"}'
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


class Reference(asyncio.Protocol):
    answer = b""
    seconds_per_batch = 0.0
    turn: asyncio.Lock

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = bytearray()
        self.busy = False

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
