"""A closed-loop HTTP load client that times every request and, like a well-behaved caller, honours
``Retry-After``.

Each connection sends one request, reads the whole answer, notes ``(status, seconds)`` and sends again.
On a 503 with ``Retry-After: N`` it waits N seconds before its next request (reconnecting if the server
closed the connection), as a routing system is asked to do (``wrk``, by contrast, retries at once).
:func:`drive` runs in a process of its own (:func:`drive_in_process`), so that
the client's interpreter lock never delays a probe timed in the calling process.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

Result = list[tuple[int, float]]  # (status, seconds) of each answered request, in completion order


def request_bytes(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.lower().split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip() == name:
            return value.strip()
    return None


async def _connection(port: int, request: bytes, until: float, out: Result) -> None:
    reader = writer = None
    try:
        while time.perf_counter() < until:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            began = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.readexactly(int(_header(head, b"content-length") or 0))
            status = int(head[9:12])
            out.append((status, time.perf_counter() - began))
            if _header(head, b"connection") == b"close":
                writer.close()
                reader = writer = None
            wait = _header(head, b"retry-after") if status == 503 else None
            if wait is not None:
                await asyncio.sleep(min(float(wait), max(0.0, until - time.perf_counter())))
    except (ConnectionError, asyncio.IncompleteReadError):
        out.append((0, 0.0))  # the connection failed: counted, not timed
    finally:
        if writer is not None:
            writer.close()


def drive(port: int, request: bytes, connections: int, seconds: float) -> Result:
    """``connections`` connections sending ``request`` to 127.0.0.1:``port`` for ``seconds``."""
    try:
        import uvloop

        run = uvloop.run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        run = asyncio.run
    out: Result = []

    async def main() -> None:
        until = time.perf_counter() + seconds
        await asyncio.gather(*(_connection(port, request, until, out) for _ in range(connections)))

    run(main())
    return out


def drive_in_process(port: int, request: bytes, connections: int, seconds: float) -> Result:
    """:func:`drive` in a fresh process (spawned): its CPU and interpreter lock are its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(drive, port, request, connections, seconds).result()
