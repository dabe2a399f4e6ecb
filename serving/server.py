"""The HTTP server around the app: uvicorn with a bounded cost per client, and a stop that drains.

**Per connection** (:class:`GuardedHttp`, uvicorn's httptools protocol with deadlines added):

- at most ``max_connections`` are open. One more is taken in place of the oldest connection that is not
  serving a request (idle, or still sending its headers or body), which is closed; when every open
  connection is serving a request, the new one is closed as soon as it is accepted. So slow or idle
  clients can never keep a new client (a probe, a caller) out;
- a request's headers must be complete within ``header_timeout_seconds`` of its first byte (of the
  connection, for the first request), and its body within ``body_timeout_seconds`` of its headers;
  past either, the connection is closed (the app sees a client gone: 499);
- while an answer waits for its client (it fills the client's socket), the client must take some of it
  within each ``body_timeout_seconds``: past that (a stalled reader), the connection is closed and the rest of
  the answer dropped, so a reader that stalls never holds the request, nor the work it was admitted for, for
  longer;
- an idle keep-alive connection is closed after ``keep_alive_seconds`` (uvicorn's own timer).
- a scoring request that admission control refuses (:class:`serving.admission.Admission`) is answered 503
  as soon as its headers are parsed, without starting the app (a refused batch's body is not read: its
  connection is closed), so refusing costs little next to the work admitted;
- a liveness probe (``GET /healthz``, one whole request without a body) is answered by the protocol as it
  arrives, with the bytes the app's route would send (:data:`serving.routes_health.LIVE`), without starting
  the app: the probe is answered within the event loop's turn however busy the app is, and counted in the
  metrics as the route would be.

Closed connections are counted in ``GuardedHttp.closed`` and in ``/metrics``
(``leadscore_connections_closed_total`` by reason), and logged as a warning at most once every
``LOG_EVERY_SECONDS``. The process's open-files limit is raised to its hard limit at start, so the cap,
not the operating system, is what refuses a client.

**The stop** (:class:`DrainingServer`): on SIGTERM (or a first SIGINT) ``on_drain`` is called (``/readyz``
answers 503 from then on) and the server keeps serving for at least ``drain_seconds`` and until no
request is in flight; then uvicorn's stop runs (in-flight requests get ``stop_seconds``), the app's
lifespan ends (the score log is flushed) and the process exits with status 0.

**Several workers** (:func:`serve_workers`): uvicorn's supervisor, with each worker process running a
:class:`DrainingServer`. SIGTERM (or SIGINT) to the parent is passed to every worker, each drains as above
(its ``/readyz`` answers 503, what it has in flight is answered and spooled) and exits 0; then the parent
exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import resource
import signal
import time
from collections.abc import Callable, Generator
from types import FrameType
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.supervisors import multiprocess

from leadscore.serving.admission import SCORE_PATH, SHED_CLOSE, SHED_KEEP_ALIVE, Admission
from leadscore.serving.metrics import Metrics
from leadscore.serving.middleware import CUT_OFF
from leadscore.serving.routes_health import LIVE

log = logging.getLogger("leadscore.serving")
LOG_EVERY_SECONDS = 10.0


def raise_open_files_limit(wanted: int) -> int:
    """Raise the soft open-files limit toward ``wanted`` (not past the hard limit); the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


class GuardedHttp(HttpToolsProtocol):
    """uvicorn's httptools protocol with a connection cap and header and body deadlines (class settings)."""

    max_connections = 1000
    header_timeout = 5.0
    body_timeout = 15.0
    closed: dict[str, int] = {"over_cap": 0, "header_timeout": 0, "body_timeout": 0, "send_timeout": 0}  # noqa: RUF012
    _last_log = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_for = ""  # what the armed deadline is for (a reason of ``closed``)
        self._unsent = 0  # bytes of the answer waiting for the client when the send deadline was armed
        self._since = time.monotonic()
        self._serving = False  # between the end of a request's body and the end of its answer
        self._shed = False  # the request being read was refused (answered 503 already)
        self._between = True  # no request is being read (the next byte starts one)
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            victim = min(
                (c for c in self.connections if isinstance(c, GuardedHttp) and c is not self and not c._serving),
                key=lambda c: c._since,
                default=None,
            )
            if victim is None:
                self._close("over_cap")
                return
            victim._close("over_cap")
            self.connections.discard(victim)
        self._arm(self.header_timeout, "header_timeout")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if (
            self._between
            and data.startswith(HEALTH_REQUEST_LINE)
            and (self.cycle is None or self.cycle.response_complete)
            and (close := _one_whole_request_without_body(data)) is not None
        ):
            self._answer_health(close)
            return
        if (
            self._between
            and data.startswith(SINGLE_REQUEST_LINE)
            and (self.cycle is None or self.cycle.response_complete)
            and (admission := Admission.serving) is not None
            and admission.refuses(1, single=True)
            and _one_whole_keep_alive_request(data)
        ):  # refused before parsing: a retry storm of single leads costs a few microseconds a request
            self._unset_keepalive_if_required()
            admission.shed(SCORE_PATH)
            self.transport.write(SHED_KEEP_ALIVE)
            self._since = time.monotonic()
            self._arm(self.header_timeout, "header_timeout")
            return
        super().data_received(data)

    def _answer_health(self, close: bool) -> None:
        """Answer a liveness probe as the route would (then wait for the next request, as after any answer)."""
        began = time.perf_counter()
        self._unset_keepalive_if_required()
        self._disarm()
        defaults = b"".join(name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers)
        self.transport.write(HEALTH_HEAD + defaults + (b"connection: close\r\n" if close else b"") + HEALTH_END)
        self.server_state.total_requests += 1
        if (metrics := Metrics.serving) is not None:
            metrics.observe(HEALTH_PATH, "GET", 200, time.perf_counter() - began)
        if close:
            self.transport.close()
            return
        self._since = time.monotonic()
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def on_message_begin(self) -> None:
        self._between = False
        super().on_message_begin()
        self._arm(self.header_timeout, "header_timeout")

    def on_headers_complete(self) -> None:
        self._shed = False
        admission = Admission.serving
        if admission is not None and (self.cycle is None or self.cycle.response_complete):  # not pipelined
            path = self.url.split(b"?", 1)[0]
            weight = admission.weight(self.parser.get_method(), path, self.headers)
            single = path == b"/v1/score"
            if weight and admission.refuses(weight, single):
                self._shed = True
                admission.shed(path.decode("ascii", "replace"))
                self.transport.write(SHED_KEEP_ALIVE if single else SHED_CLOSE)
                if single and self.parser.should_keep_alive():
                    self._arm(self.body_timeout, "body_timeout")  # the rest of its body, then the next request
                else:
                    self.transport.close()
                return
        super().on_headers_complete()
        self._arm(self.body_timeout, "body_timeout")

    def on_body(self, body: bytes) -> None:
        if not self._shed:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        self._between = True
        if self._shed:  # answered already: the connection waits for its next request
            self._shed = False
            self._since = time.monotonic()
            self._arm(self.header_timeout, "header_timeout")
            return
        super().on_message_complete()
        self._serving = True

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._serving:  # the answer fills the client's socket: it has body_timeout to take some of it
            self._watch_send()

    def _watch_send(self) -> None:
        self._arm(self.body_timeout, "send_timeout")
        self._unsent = self.transport.get_write_buffer_size()

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._deadline_for == "send_timeout":  # room was made (the answer may be complete by now)
            self._disarm()

    def on_response_complete(self) -> None:
        self._serving = False
        self._since = time.monotonic()
        super().on_response_complete()

    def _arm(self, seconds: float, why: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._close, why)
        self._deadline_for = why

    def _disarm(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()
            self._deadline = None
        self._deadline_for = ""

    def _close(self, why: str) -> None:
        self._deadline, self._deadline_for = None, ""
        if why == "send_timeout" and self.transport.get_write_buffer_size() < self._unsent:
            self._watch_send()  # the client took some of its answer meanwhile: it has another body_timeout
            return
        if why == "send_timeout":  # the answer's unsent rest is dropped: close() would wait to flush it
            if self.cycle is not None:
                self.cycle.scope[CUT_OFF] = True  # type: ignore[literal-required]
            self.transport.abort()
        elif self.transport.is_closing():
            return
        else:
            self.transport.close()
        counts = GuardedHttp.closed
        counts[why] += 1
        if (metrics := Metrics.serving) is not None:
            metrics.connection_closed(why)
        now = time.monotonic()
        if now - GuardedHttp._last_log >= LOG_EVERY_SECONDS:
            GuardedHttp._last_log = now
            log.warning(
                "connections closed so far: %d over the cap of %d, %d slow headers, %d slow bodies, %d stalled readers",
                counts["over_cap"],
                self.max_connections,
                counts["header_timeout"],
                counts["body_timeout"],
                counts["send_timeout"],
            )


SINGLE_REQUEST_LINE = b"POST /v1/score HTTP/1.1\r\n"
_HEADER_LINE = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[ \t]*[^\r\n]*")
HEALTH_PATH = "/healthz"
HEALTH_REQUEST_LINE = b"GET /healthz HTTP/1.1\r\n"
_HEALTH_BODY = orjson.dumps(LIVE)
HEALTH_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " + str(len(_HEALTH_BODY)).encode() + b"\r\n"
)
HEALTH_END = b"\r\n" + _HEALTH_BODY


def _one_whole_request_without_body(data: bytes) -> bool | None:
    """Whether the client asked to close the connection, when ``data`` is exactly one complete request head
    without a body, every header line well formed (``name:value``, CRLF-ended) and none announcing a body
    (``Content-Length`` but 0, ``Transfer-Encoding``, ``Expect``) or an ``Upgrade``; else None (the parser then
    reads it, and answers or refuses it as any request)."""
    end = data.find(b"\r\n\r\n")
    if end < 0 or end + 4 != len(data):
        return None
    close = False
    for line in data[:end].split(b"\r\n")[1:]:
        if not _HEADER_LINE.fullmatch(line):
            return None
        name, _, value = line.partition(b":")
        name = name.lower()
        if name in (b"transfer-encoding", b"expect", b"upgrade") or (
            name == b"content-length" and value.strip() != b"0"
        ):
            return None
        if name == b"connection" and b"close" in (token.strip() for token in value.lower().split(b",")):
            close = True
    return close


def _one_whole_keep_alive_request(data: bytes) -> bool:
    """``data`` is exactly one complete request with a ``Content-Length`` body, keep-alive by default (no
    ``Connection``, ``Transfer-Encoding`` or ``Expect`` header)."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return False
    head = data[:end].lower()
    if b"\r\nconnection:" in head or b"\r\ntransfer-encoding:" in head or b"\r\nexpect:" in head:
        return False
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return False
    value = head[at + 17 :].split(b"\r\n", 1)[0].strip()
    return value.isdigit() and end + 4 + int(value) == len(data)


def guarded_protocol(max_connections: int, header_timeout: float, body_timeout: float) -> type[GuardedHttp]:
    """A :class:`GuardedHttp` subclass holding these settings (uvicorn builds one protocol per connection)."""
    return type(
        "GuardedHttpConfigured",
        (GuardedHttp,),
        {"max_connections": max_connections, "header_timeout": header_timeout, "body_timeout": body_timeout},
    )


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a drain before the stop, and exit status 0 after a stop by signal."""

    def __init__(self, config: uvicorn.Config, drain_seconds: float, on_drain: Callable[[], None]) -> None:
        super().__init__(config)
        self.drain_seconds, self.on_drain = drain_seconds, on_drain
        self.drain_started: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain_started is None and not self.should_exit:
            self.drain_started = time.monotonic()
            log.info("stop requested: not ready from now on; draining in-flight requests")
            self.on_drain()
            return
        super().handle_exit(sig, frame)  # a second signal: stop now

    async def on_tick(self, counter: int) -> bool:
        if self.drain_started is not None and not self.should_exit:
            drained = time.monotonic() - self.drain_started >= self.drain_seconds and not self.server_state.tasks
            if drained or time.monotonic() - self.drain_started >= self.drain_seconds + (
                self.config.timeout_graceful_shutdown or 0
            ):
                self.should_exit = True
        return await super().on_tick(counter)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Handle SIGINT and SIGTERM as a stop, and do not raise them again afterwards (exit status 0)."""
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def serve(app: Any, host: str, port: int, options: dict[str, Any], drain_seconds: float) -> None:
    """Serve ``app`` in this process until stopped (see the module's docstring)."""
    config = uvicorn.Config(app, host=host, port=port, **options)
    server = DrainingServer(config, drain_seconds, on_drain=lambda: setattr(app.state, "draining", True))
    server.run()


def _mark_draining(config: uvicorn.Config) -> None:
    """Set ``state.draining`` on the app a worker serves (found under uvicorn's wrapping middleware)."""
    app = config.loaded_app
    while app is not None and not hasattr(app, "state"):
        app = getattr(app, "app", None)
    if app is not None:
        app.state.draining = True


class DrainingProcess(multiprocess.Process):
    """A worker process of uvicorn's supervisor whose server is a :class:`DrainingServer` (drain time from
    ``LEADSCORE_DRAIN_SECONDS``)."""

    @property
    def server(self) -> uvicorn.Server:
        if self._server is None:
            from leadscore.serving.settings import get_serving_settings

            drain_seconds = get_serving_settings().drain_seconds
            self._server = DrainingServer(self.config, drain_seconds, on_drain=lambda: _mark_draining(self.config))
        return self._server


def serve_workers(factory: str, host: str, port: int, options: dict[str, Any], workers: int) -> None:
    """Serve the app made by ``factory`` (``"module:function"``) in ``workers`` processes sharing one socket,
    until stopped (see the module's docstring)."""
    config = uvicorn.Config(factory, factory=True, host=host, port=port, workers=workers, **options)
    supervisor = multiprocess.Multiprocess(config, sockets=[config.bind_socket()])
    # The supervisor makes its workers through the module's name ``Process`` (at start and to replace one
    # that died); for this run that name is DrainingProcess.
    made = multiprocess.Process
    multiprocess.Process = DrainingProcess  # type: ignore[misc]
    try:
        supervisor.run()
    finally:
        multiprocess.Process = made  # type: ignore[misc]


class GuardedHttpFromEnv(GuardedHttp):
    """:class:`GuardedHttp` set from ``LEADSCORE_*`` environment settings (worker processes import it by name)."""

    _configured = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        cls = type(self)
        if not cls._configured:
            from leadscore.serving.settings import get_serving_settings

            settings = get_serving_settings()
            cls.max_connections = settings.max_connections
            cls.header_timeout = settings.header_timeout_seconds
            cls.body_timeout = settings.body_timeout_seconds
            cls._configured = True
        super().connection_made(transport)
