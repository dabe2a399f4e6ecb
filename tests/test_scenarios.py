"""The scenario suite (docs/scenarios.md): abuse, overload, stops and outages against real processes.

Each scenario starts its own server on 127.0.0.1 (``tests/scenario_app.py``: the server ``leadscore serve``
runs, serving a saved scorer, or ``leadscore serve`` itself), is scaled down to take seconds (a connection
cap of 64 against 200 slow clients, not 21,000) and asserts the mechanism. Every loop is bounded in count
and time.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from leadscore.models.scorer import Scorer
from leadscore.serving.schemas import EXAMPLE_LEAD
from tests.factories import free_port, wait_http

pytestmark = [pytest.mark.scenario, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
LEADSCORE = str(Path(sys.executable).parent / "leadscore")


@dataclass
class Server:
    base: str
    port: int
    process: subprocess.Popen[bytes]
    home: Path
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def scorer_file(scorer: Scorer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scorer.save(tmp_path_factory.mktemp("scenario-model") / "scorer.joblib")


def _env(home: Path, **env_vars: str) -> dict[str, str]:
    return {
        **os.environ,
        "LEADSCORE_HOME": str(home),
        "LEADSCORE_POLL_SECONDS": "0",
        "LEADSCORE_SCORE_LOG_FLUSH_SECONDS": "0.2",
        "LEADSCORE_DRAIN_SECONDS": "0.5",
        "PYTHONUNBUFFERED": "1",
        **env_vars,
    }


@contextmanager
def scenario_server(home: Path, command: list[str], ready: str = "/readyz", **env_vars: str) -> Iterator[Server]:
    """Start ``command`` (given the port last) on a free port; stop it with SIGTERM (exit status 0 expected)."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = home / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, str(port)], env=_env(home, **env_vars), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
    server = Server(f"http://127.0.0.1:{port}", port, process, home, log)
    try:
        wait_http(server.base + ready, timeout=60, process=process)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def app_command(scorer_file: Path) -> list[str]:
    return [sys.executable, "-m", "tests.scenario_app", str(scorer_file)]


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def raw_connection(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\0" * 8)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True when the server closes ``sock`` within ``within`` seconds (whatever it sent first)."""
    sock.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def metric(base: str, line_start: str) -> float:
    text = httpx.get(base + "/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(line_start))


def test_slow_header_clients_cannot_keep_anyone_out(scorer_file: Path, tmp_path: Path) -> None:
    """200 connections sending headers a byte at a time against a cap of 64: probes still get in, the
    slow ones are closed within the header deadline, open files stay bounded."""
    with scenario_server(
        tmp_path / "home",
        app_command(scorer_file),
        LEADSCORE_MAX_CONNECTIONS="64",
        LEADSCORE_HEADER_TIMEOUT_SECONDS="2",
    ) as server:
        with ExitStack() as stack:
            slow: list[socket.socket] = []
            for _ in range(200):
                sock = stack.enter_context(raw_connection(server.port))
                with suppress(OSError):
                    sock.sendall(b"POST /v1/score HTTP/1.1\r\nHost: x\r\n")
                slow.append(sock)
            fds = open_fds(server.process.pid)
            assert fds <= 64 + 40, fds
            for _ in range(10):  # a probe on a fresh connection is answered at once
                began = time.monotonic()
                assert httpx.get(server.base + "/readyz", timeout=2).status_code == 200
                assert time.monotonic() - began < 1.0
            for sock in slow:  # a trickle of header bytes does not extend the deadline
                with suppress(OSError):
                    sock.sendall(b"X")
            time.sleep(2.5)
            assert all(closed_by_server(sock, 0.5) for sock in slow)
        assert "connections closed so far" in server.log_text()
        closed = {
            why: metric(server.base, f'leadscore_connections_closed_total{{reason="{why}"}}')
            for why in ("over_cap", "header_timeout")
        }
        assert closed["over_cap"] + closed["header_timeout"] >= 200 and closed["header_timeout"] > 0, closed


def test_a_body_that_never_comes_is_cut_off(scorer_file: Path, tmp_path: Path) -> None:
    """A body declared ~2 MB of which 15 bytes come: the connection is closed at the body deadline, counted
    as a client gone (499), never a 500."""
    with scenario_server(tmp_path / "home", app_command(scorer_file), LEADSCORE_BODY_TIMEOUT_SECONDS="1") as server:
        with raw_connection(server.port) as sock:
            sock.sendall(
                b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 2000000\r\n\r\n" + b'{"lead_id": "x"'
            )
            began = time.monotonic()
            assert closed_by_server(sock, 5)
            assert time.monotonic() - began < 3
        time.sleep(0.2)
        assert metric(server.base, 'leadscore_http_requests_total{method="POST",route="/v1/score",status="499"}') == 1
        assert metric(server.base, 'leadscore_http_requests_total{method="POST",route="/v1/score",status="500"}') == 0
        assert metric(server.base, 'leadscore_connections_closed_total{reason="body_timeout"}') == 1


def test_a_client_gone_mid_body_is_a_499(scorer_file: Path, tmp_path: Path) -> None:
    with scenario_server(tmp_path / "home", app_command(scorer_file)) as server:
        for _ in range(3):
            with raw_connection(server.port) as sock:
                sock.sendall(
                    b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 500\r\n\r\n" + b'{"lead_id": "x", '
                )
                time.sleep(0.1)
        time.sleep(0.5)
        assert metric(server.base, 'leadscore_http_requests_total{method="POST",route="/v1/score",status="499"}') == 3
        assert 'status="500"' not in httpx.get(server.base + "/metrics").text


def test_a_batch_answer_its_client_never_reads_is_cut_off_and_counted_499(scorer_file: Path, tmp_path: Path) -> None:
    """An 8,000-lead batch (an answer of megabytes) from a client that never reads: once the answer fills the
    socket for the body deadline (1 s), the server cuts the connection; the request is counted as a client
    gone (499, not 200) and the close as a stalled reader."""
    batch = orjson.dumps({"leads": [{**EXAMPLE_LEAD, "lead_id": f"L-{i}"} for i in range(8000)]})
    closes = 'leadscore_connections_closed_total{reason="send_timeout"}'
    route = 'leadscore_http_requests_total{method="POST",route="/v1/score/batch",status="%s"}'
    with scenario_server(
        tmp_path / "home",
        app_command(scorer_file),
        LEADSCORE_BODY_TIMEOUT_SECONDS="1",
        LEADSCORE_MAX_BATCH="10000",
        LEADSCORE_MAX_BODY_BYTES=str(4 * len(batch)),
    ) as server:
        with socket.socket() as stalled:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect(("127.0.0.1", server.port))
            stalled.sendall(
                b"POST /v1/score/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(batch)}\r\n\r\n".encode()
                + batch
            )
            deadline = time.monotonic() + 30
            while metric(server.base, route % "499") + metric(server.base, route % "200") == 0:
                assert time.monotonic() < deadline, "the request never ended"
                time.sleep(0.2)
        assert metric(server.base, route % "499") == 1
        assert metric(server.base, route % "200") == 0
        assert metric(server.base, closes) == 1


def test_sigterm_drains_with_readyz_503_then_exits_0(scorer_file: Path, tmp_path: Path) -> None:
    """A request in flight at SIGTERM is answered; meanwhile /readyz answers 503 (not a reset); exit 0."""
    with scenario_server(
        tmp_path / "home", app_command(scorer_file), LEADSCORE_DRAIN_SECONDS="1", LEADSCORE_BODY_TIMEOUT_SECONDS="10"
    ) as server:
        body = orjson.dumps(EXAMPLE_LEAD)
        with raw_connection(server.port) as sock:
            sock.sendall(
                b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body[:10]
            )
            time.sleep(0.2)
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            ready = httpx.get(server.base + "/readyz", timeout=2)
            assert ready.status_code == 503 and ready.json()["status"] == "stopping"
            assert httpx.get(server.base + "/healthz", timeout=2).status_code == 200
            sock.sendall(body[10:])
            answer = b""
            sock.settimeout(5)
            while chunk := sock.recv(65536):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200")
        assert server.process.wait(timeout=15) == 0, server.log_text()


def test_single_leads_past_their_bound_are_refused_at_once_on_a_kept_connection(
    scorer_file: Path, tmp_path: Path
) -> None:
    """With one single lead in flight (its body still coming) and a bound of one, another single lead is
    answered 503 + Retry-After at once, its connection kept; once the first is answered, the same connection
    is served again. The refusals are counted."""
    body = orjson.dumps(EXAMPLE_LEAD)
    request = (
        b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
    )
    with (
        scenario_server(tmp_path / "home", app_command(scorer_file), LEADSCORE_MAX_INFLIGHT_SINGLE_LEADS="1") as server,
        raw_connection(server.port) as held,
        httpx.Client(base_url=server.base, timeout=5) as http,
    ):
        held.sendall(request + body[:10])  # admitted: in flight until answered
        time.sleep(0.3)
        for _ in range(3):
            began = time.monotonic()
            refused = http.post("/v1/score", content=body, headers={"content-type": "application/json"})
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json() == {"detail": "overloaded: too much scoring work in flight, retry later"}
            assert time.monotonic() - began < 1.0
        assert httpx.get(server.base + "/healthz", timeout=2).status_code == 200
        held.sendall(body[10:])
        held.settimeout(5)
        assert held.recv(65536).startswith(b"HTTP/1.1 200")
        assert http.post("/v1/score", content=body, headers={"content-type": "application/json"}).status_code == 200
        assert metric(server.base, 'leadscore_shed_requests_total{route="/v1/score"}') == 3


def test_batches_in_flight_never_take_the_single_leads_share(scorer_file: Path, tmp_path: Path) -> None:
    """Of 300 leads in flight, 4 are kept for single leads: with a 150-lead batch in flight (its body still
    coming), another 150-lead batch would take their share and is refused at once; single leads are answered."""
    body = orjson.dumps(EXAMPLE_LEAD)

    def batch_head(weight: int) -> bytes:  # a batch weighs its declared size in units of 200 bytes
        return (
            b"POST /v1/score/batch HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {weight * 200}\r\n\r\n".encode()
            + b'{"leads": ['
        )

    with (
        scenario_server(
            tmp_path / "home",
            app_command(scorer_file),
            LEADSCORE_MAX_INFLIGHT_LEADS="300",
            LEADSCORE_MAX_INFLIGHT_SINGLE_LEADS="4",
        ) as server,
        raw_connection(server.port) as first,
        raw_connection(server.port) as second,
        httpx.Client(base_url=server.base, timeout=5) as http,
    ):
        first.sendall(batch_head(150))  # admitted: in flight until answered
        time.sleep(0.3)
        second.sendall(batch_head(150))
        second.settimeout(5)
        assert second.recv(65536).startswith(b"HTTP/1.1 503")
        for _ in range(3):
            answer = http.post("/v1/score", content=body, headers={"content-type": "application/json"})
            assert answer.status_code == 200
        assert metric(server.base, 'leadscore_shed_requests_total{route="/v1/score/batch"}') == 1
        assert metric(server.base, 'leadscore_shed_requests_total{route="/v1/score"}') == 0


def test_sigterm_to_the_parent_of_two_workers_drains_both_then_exits_0(scorer_file: Path, tmp_path: Path) -> None:
    """``--workers 2``: SIGTERM to the parent reaches both workers; each answers /readyz 503 while it drains,
    answers what it has in flight (and spools it: every answered score reaches the log), then all exit 0."""
    home = tmp_path / "home"
    command = [sys.executable, "-m", "tests.scenario_app", str(scorer_file), "2"]
    with scenario_server(home, command, LEADSCORE_DRAIN_SECONDS="3", LEADSCORE_BODY_TIMEOUT_SECONDS="10") as server:
        workers = [  # the worker processes (not multiprocessing's resource tracker)
            pid for pid in children(server.process.pid) if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(workers) == 2
        body = orjson.dumps(EXAMPLE_LEAD)
        head = (
            b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        )
        with ExitStack() as stack:
            socks = [stack.enter_context(raw_connection(server.port)) for _ in range(8)]
            for sock in socks:  # requests in flight: their bodies are not complete yet
                sock.sendall(head + body[:10])
            time.sleep(0.5)
            server.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 5  # the parent passes signals on within half a second
            stopping_in_a_row = 0  # on a busy machine one worker may take the signal a little after the other
            while stopping_in_a_row < 8 and time.monotonic() < deadline:
                ready = httpx.get(server.base + "/readyz", timeout=2, headers={"connection": "close"})
                stopping_in_a_row = stopping_in_a_row + 1 if ready.status_code == 503 else 0
                time.sleep(0.02)
            for _ in range(16):  # new connections, taken by either worker: both say they are stopping
                ready = httpx.get(server.base + "/readyz", timeout=2, headers={"connection": "close"})
                assert ready.status_code == 503 and ready.json()["status"] == "stopping"
            answered = []
            for sock in socks:
                sock.sendall(body[10:])
                answer = b""
                sock.settimeout(5)
                while chunk := sock.recv(65536):
                    answer += chunk
                assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
                answered.append(orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["request_id"])
        assert server.process.wait(timeout=30) == 0, server.log_text()
        for pid in workers:  # the parent waited for them
            assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    with scenario_server(home, app_command(scorer_file)):  # whatever a worker left spooled is written now
        missing = set(answered) - logged_request_ids(home, len(answered))
    assert not missing, f"{len(missing)} of {len(answered)} answered scores missing from the log"


def _read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """One HTTP answer with a Content-Length body read from ``sock``: its head (lowercased) and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    head = head.lower()
    length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head, body


def test_liveness_probes_are_answered_as_the_route_would_and_counted(scorer_file: Path, tmp_path: Path) -> None:
    """GET /healthz, answered by the server's protocol: the route's status, body and content type; a kept
    connection stays usable (two probes, then a lead, on one socket); ``Connection: close`` is honoured; a
    probe with a query string (the app's route) answers the same; every probe is counted under /healthz."""
    probe = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    body = orjson.dumps(EXAMPLE_LEAD)
    lead = (
        b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    with scenario_server(tmp_path / "home", app_command(scorer_file)) as server:
        before = metric(server.base, 'leadscore_http_requests_total{method="GET",route="/healthz",status="200"}')
        with raw_connection(server.port) as kept:
            kept.settimeout(5)
            for _ in range(2):
                kept.sendall(probe)
                head, answer = _read_answer(kept)
                assert head.startswith(b"http/1.1 200 ok") and b"content-type: application/json" in head
                assert orjson.loads(answer) == {"status": "ok"}
                assert b"connection: close" not in head
            kept.sendall(lead)
            head, answer = _read_answer(kept)
            assert head.startswith(b"http/1.1 200") and orjson.loads(answer)["lead_id"] == EXAMPLE_LEAD["lead_id"]
        with raw_connection(server.port) as closing:
            closing.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            head, answer = _read_answer(closing)
            assert head.startswith(b"http/1.1 200 ok") and b"connection: close" in head
            assert closed_by_server(closing, within=2)
        via_app = httpx.get(server.base + "/healthz?from=test", timeout=5)
        assert via_app.status_code == 200 and via_app.json() == {"status": "ok"}
        assert via_app.headers["content-type"] == "application/json"
        after = metric(server.base, 'leadscore_http_requests_total{method="GET",route="/healthz",status="200"}')
        assert after - before == 4


@contextmanager
def guarded_uvicorn(app: Any, body_timeout: float = 5.0) -> Iterator[int]:
    """A real uvicorn on 127.0.0.1 serving ``app`` through the guarded protocol (the server ``leadscore serve``
    runs), in a thread of this process; yields its port, stops it at the end."""
    import uvicorn

    from leadscore.serving.server import guarded_protocol

    port = free_port()
    protocol = guarded_protocol(16, 5.0, body_timeout)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=protocol, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def test_liveness_is_answered_without_starting_the_app(tmp_path: Path) -> None:
    """The server's protocol answers a well-formed GET /healthz itself, without calling the app (which would
    answer 204); any other path reaches the app, and so does a probe whose head the protocol does not vouch
    for (a space before a header's colon, a bare line feed: the parser reads it, and answers or refuses it)."""
    reached: list[str] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    with guarded_uvicorn(app) as port:
        with raw_connection(port) as sock:
            sock.settimeout(5)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            head, answer = _read_answer(sock)
            assert head.startswith(b"http/1.1 200 ok") and orjson.loads(answer) == {"status": "ok"}
            assert reached == []
            sock.sendall(b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 204")
            assert reached == ["/elsewhere"]
        for malformed in (
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost: x\nTransfer-Encoding: chunked\r\n\r\n",
        ):
            with raw_connection(port) as sock:
                sock.settimeout(5)
                sock.sendall(malformed)
                assert not sock.recv(65536).startswith(b"HTTP/1.1 200"), malformed


def test_a_client_that_does_not_read_its_big_answer_does_not_hold_the_request(tmp_path: Path) -> None:
    """A batch-sized answer (PacedJSON, 8 MB) to a client that never reads: once the answer has filled its
    socket, the client has the body timeout (1 s here) to take some of it, then its connection is closed and the
    request ends, so a stalled reader does not keep the work it was admitted for; a client that reads gets
    every byte."""
    from leadscore.serving.asgi import PacedJSON

    body = b"[" + b"1," * (4 * 1024 * 1024 - 1) + b"1]"
    ended: list[float] = []

    async def app(scope: dict, receive: object, send: object) -> None:
        if scope["type"] != "http":
            return
        await PacedJSON(body)(scope, receive, send)
        ended.append(time.monotonic())

    with guarded_uvicorn(app, body_timeout=1.0) as port:
        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", port))
        began = time.monotonic()
        stalled.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        while not ended and time.monotonic() - began < 10:
            time.sleep(0.05)
        assert ended and ended[0] - began < 5, "the request waited for its client to read"
        assert closed_by_server(stalled, within=2)
        stalled.close()
        with httpx.Client(timeout=30) as http:
            assert http.get(f"http://127.0.0.1:{port}/big").content == body


def test_a_slow_reader_that_takes_its_whole_answer_keeps_its_connection(tmp_path: Path) -> None:
    """A client that reads a big answer slowly (the server waits for room several times) but takes all of it
    keeps its connection: idle past the body deadline (0.5 s here, keep-alive 5 s), it is served again. Both
    for an answer sent in slices and for one written whole (the app done while the client still reads)."""
    from starlette.responses import Response

    from leadscore.serving.asgi import PacedJSON

    body = b"[" + b"1," * (4 * 1024 * 1024 - 1) + b"1]"

    async def app(scope: dict, receive: object, send: object) -> None:
        if scope["type"] == "http":
            answer = PacedJSON(body) if scope["path"] == "/paced" else Response(body)
            await answer(scope, receive, send)

    with guarded_uvicorn(app, body_timeout=0.5) as port, socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        sock.connect(("127.0.0.1", port))
        sock.settimeout(5)
        for path in ("/paced", "/whole", "/paced"):
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            got = b""
            while b"\r\n\r\n" not in got or len(got.partition(b"\r\n\r\n")[2]) < len(body):
                time.sleep(0.001)  # slower than the server writes: it waits for room again and again
                chunk = sock.recv(16384)
                assert chunk, "the server closed a connection whose client was taking its answer"
                got += chunk
            assert got.partition(b"\r\n\r\n")[2] == body
            time.sleep(1.0)  # idle past the body deadline, within the keep-alive time


def test_overload_is_shed_with_503_and_health_stays_fast(scorer_file: Path, tmp_path: Path) -> None:
    """16 concurrent 100-lead batches against a bound of 300 leads in flight: some are refused at once with
    503 + Retry-After, the rest answered; /healthz answers meanwhile; no other error."""
    batch = orjson.dumps({"leads": [{**EXAMPLE_LEAD, "lead_id": f"L-{i}"} for i in range(100)]})
    with scenario_server(tmp_path / "home", app_command(scorer_file), LEADSCORE_MAX_INFLIGHT_LEADS="300") as server:
        statuses: list[int] = []
        retry_after: set[str] = set()
        health: list[float] = []
        stop = threading.Event()

        def caller() -> None:
            with httpx.Client(base_url=server.base, timeout=30) as http:
                for _ in range(6):
                    r = http.post("/v1/score/batch", content=batch, headers={"content-type": "application/json"})
                    statuses.append(r.status_code)
                    if r.status_code == 503:
                        retry_after.add(r.headers.get("retry-after", ""))

        def prober() -> None:
            with httpx.Client(base_url=server.base, timeout=5) as http:
                for _ in range(200):
                    if stop.is_set():
                        return
                    began = time.monotonic()
                    assert http.get("/healthz").status_code == 200
                    health.append(time.monotonic() - began)
                    time.sleep(0.02)

        callers = [threading.Thread(target=caller) for _ in range(16)]
        probe = threading.Thread(target=prober)
        probe.start()
        for t in callers:
            t.start()
        for t in callers:
            t.join(60)
        stop.set()
        probe.join(10)
        assert set(statuses) <= {200, 503} and statuses.count(200) > 0 and statuses.count(503) > 0, statuses
        assert retry_after == {"1"}
        assert health and sorted(health)[int(len(health) * 0.99) - 1] < 0.5
        assert metric(server.base, "leadscore_shed_requests_total") == statuses.count(503)


def test_start_listens_at_once_against_a_registry_that_never_answers(tmp_path: Path) -> None:
    """A registry that accepts connections and never answers: /healthz 200 and /readyz 503 with the reason
    come within seconds, and the failure is counted by kind."""
    with socket.socket() as blackhole:
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)
        uri = f"http://127.0.0.1:{blackhole.getsockname()[1]}"
        began = time.monotonic()
        with scenario_server(
            tmp_path / "home",
            [LEADSCORE, "serve", "--port"],
            ready="/healthz",
            LEADSCORE_TRACKING_URI=uri,
            LEADSCORE_POLL_SECONDS="1",
            MLFLOW_HTTP_REQUEST_TIMEOUT="2",
            MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
        ) as server:
            assert time.monotonic() - began < 15  # the process start (imports), not the registry's silence
            ready = httpx.get(server.base + "/readyz", timeout=2)
            assert ready.status_code == 503 and ready.json()["status"].startswith("model not ready")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not metric(
                server.base, 'leadscore_registry_errors_total{kind="timeout"}'
            ):
                time.sleep(0.5)
            assert metric(server.base, 'leadscore_registry_errors_total{kind="timeout"}') >= 1
            assert httpx.get(server.base + "/readyz", timeout=2).json()["status"] == "model not ready: timeout"


class Load:
    """``threads`` callers scoring single leads until stopped (at most ``seconds``); answered request ids kept."""

    def __init__(self, base: str, threads: int = 4, seconds: float = 20) -> None:
        self.base, self.seconds = base, seconds
        self.answered: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._call, args=(i,)) for i in range(threads)]

    def _call(self, n: int) -> None:
        deadline = time.monotonic() + self.seconds
        with httpx.Client(base_url=self.base, timeout=5) as http:
            for i in range(100_000):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                try:
                    r = http.post("/v1/score", json={**EXAMPLE_LEAD, "lead_id": f"T{n}-{i}"})
                except httpx.HTTPError:
                    time.sleep(0.05)  # the server is gone: nothing was answered
                    continue
                if r.status_code == 200:
                    self.answered.append(r.json()["request_id"])

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def logged_request_ids(home: Path, expected: int, within: float = 30) -> set[str]:
    """The request ids in the SQLite score log, once it holds ``expected`` rows (or ``within`` seconds passed)."""
    deadline = time.monotonic() + within
    ids: set[str] = set()
    while time.monotonic() < deadline:
        with suppress(sqlite3.Error), sqlite3.connect(home / "scores.db") as conn:
            ids = {row[0] for row in conn.execute("select request_id from score_log")}
        if len(ids) >= expected:
            break
        time.sleep(0.2)
    return ids


def children(pid: int) -> list[int]:
    """Child processes of ``pid`` (started from any of its threads; a thread that ends meanwhile is left out)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found.extend(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def test_sigkill_of_the_api_under_load_loses_no_answered_score(scorer_file: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with scenario_server(home, app_command(scorer_file)) as server:
        with Load(server.base) as load:
            time.sleep(2)
            server.process.kill()  # the API only: its writer goes on with what is ready, then stops
            server.process.wait()
        answered = list(load.answered)
    assert len(answered) > 50
    with scenario_server(home, app_command(scorer_file)):  # the next start writes what the spool holds
        missing = set(answered) - logged_request_ids(home, len(answered))
    assert not missing, f"{len(missing)} of {len(answered)} answered scores missing from the log"


def test_batches_are_scored_in_a_worker_process_that_ends_with_the_api(scorer_file: Path, tmp_path: Path) -> None:
    """The first batch starts the batch worker (a child of the API at the lowest priority); killing the API (SIGKILL) does
    not leave it behind: it ends with its input."""
    batch = orjson.dumps({"leads": [{**EXAMPLE_LEAD, "lead_id": f"L-{i}"} for i in range(50)]})
    with scenario_server(tmp_path / "home", app_command(scorer_file)) as server:
        before = children(server.process.pid)  # the score-log writer
        answer = httpx.post(
            server.base + "/v1/score/batch", content=batch, headers={"content-type": "application/json"}, timeout=30
        )
        assert answer.status_code == 200 and len(answer.json()["results"]) == 50
        workers = [
            pid
            for pid in children(server.process.pid)
            if pid not in before and b"leadscore.serving.batch_worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
        ]
        assert len(workers) == 1 and os.getpriority(os.PRIO_PROCESS, workers[0]) == 19
        server.process.kill()
        server.process.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{workers[0]}").exists() and time.monotonic() < deadline:
            if "zombie" in Path(f"/proc/{workers[0]}/status").read_text():
                break  # ended, its parent gone before reaping it
            time.sleep(0.05)
        gone = not Path(f"/proc/{workers[0]}").exists() or "zombie" in Path(f"/proc/{workers[0]}/status").read_text()
        assert gone, "the batch worker outlived the API"


def test_an_idle_batch_worker_ends_and_a_new_batch_starts_another(scorer_file: Path, tmp_path: Path) -> None:
    """With LEADSCORE_BATCH_WORKER_IDLE_SECONDS=0.5 the batch worker ends a few seconds after its batch (its
    memory goes back to the system); the next batch is answered by a new worker."""
    batch = orjson.dumps({"leads": [{**EXAMPLE_LEAD, "lead_id": f"L-{i}"} for i in range(20)]})

    def command(pid: int) -> bytes:
        try:
            return Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:  # ended meanwhile
            return b""

    def workers(server: Server) -> list[int]:
        return [pid for pid in children(server.process.pid) if b"leadscore.serving.batch_worker" in command(pid)]

    with scenario_server(
        tmp_path / "home", app_command(scorer_file), LEADSCORE_BATCH_WORKER_IDLE_SECONDS="0.5"
    ) as server:
        post = partial(httpx.post, content=batch, headers={"content-type": "application/json"}, timeout=30)
        assert post(server.base + "/v1/score/batch").status_code == 200
        first = workers(server)
        assert len(first) == 1
        deadline = time.monotonic() + 15
        while workers(server) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert workers(server) == [], "the idle batch worker was not ended"
        assert post(server.base + "/v1/score/batch").status_code == 200
        second = workers(server)
        assert len(second) == 1 and second != first


def test_sigkill_of_the_writer_under_load_loses_no_answered_score(scorer_file: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with scenario_server(home, app_command(scorer_file)) as server:
        with Load(server.base, seconds=4) as load:
            time.sleep(1.5)
            writers = children(server.process.pid)  # the score-log writer
            assert writers
            for pid in writers:
                os.kill(pid, signal.SIGKILL)
            time.sleep(1.5)
        answered = list(load.answered)
        missing = set(answered) - logged_request_ids(home, len(answered))
        assert "starting a new one" in server.log_text()
    assert len(answered) > 50
    assert not missing, f"{len(missing)} of {len(answered)} answered scores missing from the log"


def test_database_down_then_sigterm_spills_and_replays(scorer_file: Path, tmp_path: Path) -> None:
    """The score-log database refuses connections for the whole run: the stop still comes within its grace
    (exit 0), the answered scores stay in the spool, and the next start, with the database back, writes them."""
    home = tmp_path / "home"
    down = f"postgresql+psycopg://leadscore:x@127.0.0.1:{free_port()}/scores"
    with scenario_server(
        home, app_command(scorer_file), LEADSCORE_SCORE_LOG_URL=down, LEADSCORE_SCORE_LOG_STOP_SECONDS="1"
    ) as server:
        with Load(server.base, seconds=2) as load:
            time.sleep(2)
        began = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=20) == 0, server.log_text()
        assert time.monotonic() - began < 10
    answered = list(load.answered)
    assert len(answered) > 50 and list((home / "spool").rglob("*.ready"))
    with scenario_server(home, app_command(scorer_file)):  # the database is back (SQLite here)
        missing = set(answered) - logged_request_ids(home, len(answered))
    assert not missing, f"{len(missing)} of {len(answered)} answered scores missing from the log"
    assert not list((home / "spool").rglob("*.ready"))
