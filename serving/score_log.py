"""The score log: every score appended to a SQL table by a writer process, in batches.

Rows hold a hash of the lead id (never the id, an email or a name), the model version, the answer and
the time. ``append`` never blocks the request path and wakes nothing (a deque append). Every
``flush_seconds`` a sender thread hands what has gathered to the writer process
(:mod:`serving.score_log_writer`), which writes it in batches, keeps rows through a database outage
(retrying with a growing pause) and reports what it wrote; ``close`` hands over what is left and waits
for it to be written.

The writing happens in another process because any second thread of the API's process that takes the
GIL, even briefly, delays its event loop; the only thread the score log adds to the API's process is
the sender, which wakes once every ``flush_seconds`` (``bench/bench_score_log.py`` measures the cost).
"""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

from sqlalchemy import (
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Engine, make_url

from leadscore.models.store import ADDED_SCORE_LOG_COLUMNS, CREATE_LOCK_KEY, lead_hasher, metadata, score_log_table

__all__ = ["ScoreLog", "lead_hasher", "open_engine", "score_log_table", "write_batch"]

log = logging.getLogger("leadscore.serving.score_log")
WRITER_MODULE = "leadscore.serving.score_log_writer"
_CREATE_LOCK_KEY = CREATE_LOCK_KEY  # the advisory lock under which PostgreSQL's tables are created


def _sqlite_wal(connection: Any, record: Any) -> None:
    """Write-ahead log with ``synchronous=NORMAL``: a commit appends to the log without an fsync, and readers
    are not blocked. Committed rows survive a crash of the process; a power cut can lose the last fraction
    of a second."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def open_engine(url: str) -> Engine:
    """An engine for the score log, its table created (SQLite: the file's folder too, and write-ahead logging)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_wal)
    if parsed.get_backend_name() == "postgresql":
        # Replicas starting together would race to create the table (a duplicate-key error in PostgreSQL's
        # catalog): one creates it under a transaction-scoped advisory lock while the others wait, then see it.
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CREATE_LOCK_KEY})
            metadata.create_all(conn)
    else:
        metadata.create_all(engine)
    _add_missing_columns(engine)
    return engine


def _add_missing_columns(engine: Engine) -> None:
    """Add the nullable closed-loop columns to a score log created without them."""
    present = {c["name"] for c in inspect(engine).get_columns("score_log")}
    missing = [c for c in ADDED_SCORE_LOG_COLUMNS if c not in present]
    if not missing:
        return
    with engine.begin() as conn:
        for name in missing:
            kind = score_log_table.c[name].type.compile(dialect=engine.dialect)
            conn.execute(
                text(f"ALTER TABLE score_log ADD COLUMN IF NOT EXISTS {name} {kind}")
                if engine.dialect.name == "postgresql"
                else text(f"ALTER TABLE score_log ADD COLUMN {name} {kind}")
            )


def write_batch(engine: Engine, batch: list[dict[str, Any]]) -> None:
    """Insert ``batch`` in one transaction: all of it or none."""
    with engine.begin() as conn:
        conn.execute(score_log_table.insert(), batch)


def _close_pipes(writer: subprocess.Popen[bytes]) -> None:
    """Close a finished writer's pipes (what a dead writer's input still buffers is lost with it)."""
    for pipe in (writer.stdin, writer.stdout):
        if pipe is not None:
            with suppress(OSError):
                pipe.close()


class ScoreLog:
    """The API's side of the score log: queue rows, hand them to the writer process, count what it wrote.

    ``written`` and the rows given to ``on_drop`` (queue full, stop deadline, or a writer process that
    died with rows it had not written) are the writer's reports, read by the sender thread and by
    ``close``. A writer process that dies is started again at the next hand-over.
    """

    def __init__(
        self,
        url: str,
        flush_seconds: float = 0.5,
        batch_rows: int = 500,
        max_queued: int = 200_000,
        on_drop: Callable[[int], None] | None = None,
    ) -> None:
        self.url, self.flush_seconds, self.batch_rows, self.max_queued = url, flush_seconds, batch_rows, max_queued
        self._pending: deque[dict[str, Any]] = deque()  # deque: appends and the sender's pops are atomic
        self._on_drop = on_drop or (lambda n: None)
        self._stop = threading.Event()
        self._sender: threading.Thread | None = None
        self._writer: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()  # the sender thread and close() both hand over and read reports
        self._report = b""
        self.written = 0
        self._settled = 0  # rows sent to the current writer that it reported written or dropped
        self._sent = 0  # rows sent to the current writer

    def start(self) -> None:
        """Create the table (a bad URL fails here, in the API's start) and start the writer and the sender."""
        open_engine(self.url).dispose()
        self._writer = self._start_writer()
        self._sender = threading.Thread(target=self._send_every_flush, name="score-log-sender", daemon=True)
        self._sender.start()

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Queue rows for writing; never blocks (past ``max_queued`` rows, rows are dropped and counted)."""
        room = self.max_queued - len(self._pending)
        if room >= len(rows):
            self._pending.extend(rows)
            return
        self._pending.extend(rows[: max(room, 0)])
        self._on_drop(len(rows) - max(room, 0))

    def close(self, timeout: float = 30.0) -> None:
        """Hand over what is queued, let the writer write it (retrying for at most ``timeout`` seconds), stop it.

        Rows a writer did not receive whole because it died during this last hand-over go to a new writer.
        """
        if self._sender is None:
            return
        self._stop.set()
        self._sender.join(timeout)
        if self._sender.is_alive():  # stuck handing over to a writer that does not read: replace it
            log.error("score log writer stopped taking rows; starting a new one for the last hand-over")
            if self._writer is not None:
                self._writer.kill()
            self._sender.join()
        self._sender = None
        with self._lock:
            for last_try in (
                False,
                True,
            ):  # a writer that goes away during the last hand-over: a new one takes its rows
                self._hand_over({"stop": timeout})
                writer, self._writer = self._writer, None
                if writer is None:
                    return
                try:
                    writer.wait(timeout + 10)
                except subprocess.TimeoutExpired:
                    log.error("score log writer did not finish within %.0fs; stopping it", timeout)
                    writer.kill()
                    writer.wait()
                self._read_reports(writer, final=True)
                self._count_lost()
                _close_pipes(writer)
                if not self._pending:
                    return
                if not last_try:
                    log.error("score log writer went away during the last hand-over; starting a new one")
                    self._writer = self._start_writer()
            log.error("score log: %d rows not handed over before the stop", len(self._pending))
            self._on_drop(len(self._pending))
            self._pending.clear()

    def _start_writer(self) -> subprocess.Popen[bytes]:
        """A new writer process; its settings go first on its input (a URL may hold a password: not in argv)."""
        writer = subprocess.Popen([sys.executable, "-m", WRITER_MODULE], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert writer.stdin is not None and writer.stdout is not None
        config = {
            "url": self.url,
            "batch_rows": self.batch_rows,
            "max_queued": self.max_queued,
            "log_level": logging.getLogger("leadscore").getEffectiveLevel(),
        }
        pickle.dump(config, writer.stdin)
        writer.stdin.flush()
        os.set_blocking(writer.stdout.fileno(), False)
        self._report, self._sent, self._settled = b"", 0, 0
        return writer

    def _send_every_flush(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            try:
                with self._lock:
                    self._hand_over(None)
            except Exception as exc:  # noqa: BLE001 - keep handing over (rows wait in the queue meanwhile)
                log.error("score log hand-over failed: %s", type(exc).__name__)

    def _hand_over(self, stop: dict[str, float] | None) -> None:
        """Send the queued rows (and ``stop``) to the writer, starting a new one if it died; read its reports."""
        rows = [self._pending.popleft() for _ in range(len(self._pending))]
        if self._writer is not None:
            self._read_reports(self._writer)
            if self._writer.poll() is not None:
                log.error("score log writer exited with %s; starting a new one", self._writer.returncode)
                self._read_reports(self._writer, final=True)
                self._count_lost()
                _close_pipes(self._writer)
                self._writer = self._start_writer()
        if self._writer is None or (not rows and stop is None):
            return
        stdin = self._writer.stdin
        assert stdin is not None
        delivered = False
        try:
            if rows:
                pickle.dump(rows, stdin, protocol=pickle.HIGHEST_PROTOCOL)
                stdin.flush()
                delivered, self._sent = True, self._sent + len(rows)
            if stop is not None:
                pickle.dump(stop, stdin)
                stdin.close()
        except OSError:  # the writer died: rows it did not receive whole go to the next one
            log.error("score log writer went away during a hand-over")
            if rows and not delivered:
                self._pending.extendleft(reversed(rows))

    def _read_reports(self, writer: subprocess.Popen[bytes], final: bool = False) -> None:
        """Take in the writer's reports: lines ``written N`` and ``dropped N``."""
        out = writer.stdout
        assert out is not None
        try:
            chunk = out.read() if final else os.read(out.fileno(), 65536)
        except BlockingIOError:
            chunk = b""
        self._report += chunk or b""
        *lines, self._report = self._report.split(b"\n")
        for line in lines:
            what, _, count = line.decode().partition(" ")
            n = int(count)
            self._settled += n
            if what == "written":
                self.written += n
            else:
                self._on_drop(n)

    def _count_lost(self) -> None:
        """Rows a writer took but neither wrote nor reported dropped (it died with them): dropped."""
        lost = self._sent - self._settled
        if lost > 0:
            log.error("score log: %d rows lost with a writer process that stopped", lost)
            self._on_drop(lost)
