"""The score log's durable hand-over: a local append-only spool, written before each answer.

**Invariant**: a score is answered only once its row is written to the spool file; a row leaves the
spool only once the database committed it. A written row is the kernel's, not the process's: neither a
crash of the API (SIGKILL), nor of the writer process, nor a database outage followed by a stop loses an
answered score; what is in the spool is written on the next start. Against a crash of the machine
(power cut), the open segment is fsynced every ``segment_seconds`` (so at most that much is at risk, as
with the SQLite score log's ``synchronous=NORMAL``); with ``fsync_each`` (``LEADSCORE_SCORE_LOG_FSYNC``)
every answer waits for an fsync instead.

**Layout** (``<home>/spool/<n>/``, one folder per API process, taken under an exclusive lock ``api.lock``,
the lowest free ``n`` first, so a restarted process takes over the folder of the one before):
segments ``<seq>.open`` (being appended), ``<seq>.part`` (a batch's rows being written) and ``<seq>.ready``
(complete, to be written). A segment is a
series of frames, each a 4-byte big-endian length and a list of rows (the row dicts as given: a new field
flows through unchanged), encoded by :func:`serving.frames.encode_rows`: ``marshal`` (which builds plain values and
can never run code) with each timezone-aware ``datetime`` carried as its UTC microseconds, or a pickle
when a row holds a value marshal cannot write. A torn last frame (a crash during a write) is ignored: its rows
were never fsynced, so never answered.

**Writes** (:meth:`Spool.append`): one ``write`` of the request's rows, on the event loop (a write to
the page cache). With ``fsync_each``, a group commit instead: rows appended while an fsync is under way
wait for the next one, so concurrent requests share one ``write`` + ``fsync`` (in a thread, off the loop). A segment
becomes ready when it holds ``segment_rows`` rows or is ``segment_seconds`` old (checked by
:class:`SpooledScoreLog` every ``segment_seconds``), and at the stop. A batch's rows are written by the batch
worker process instead, as a segment of their own, ready before the batch is answered (the API reserves its
number, :meth:`Spool.reserve_segment`; the worker writes it, :func:`serving.frames.write_segment_file`, fsynced
first with ``fsync_each``), so the API process never copies them.

**Writer** (:mod:`serving.spool_writer`, a separate process, one per folder under ``writer.lock``): it
writes the ready segments in one transaction, then deletes them (a crash between the two writes their rows
again on the next try: at least once, never lost), at most one such round per ``segment_seconds`` unless
more is ready than a transaction takes. A writer that dies is started again.
At the stop, the writer has ``stop_seconds`` to write what is ready; what it could not write stays on
disk for the next start.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import pickle
import select
import subprocess
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from leadscore.features.files import fsync_folder
from leadscore.serving.frames import _LENGTH, PART, READY, decode_rows, frame
from leadscore.serving.score_log import open_engine

log = logging.getLogger("leadscore.serving.score_log")
WRITER_MODULE = "leadscore.serving.spool_writer"
OPEN = ".open"


def read_segment(path: Path) -> list[dict[str, Any]]:
    """The rows of a segment, in order (a torn last frame is left out)."""
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    at = 0
    while at + _LENGTH.size <= len(data):
        (length,) = _LENGTH.unpack_from(data, at)
        end = at + _LENGTH.size + length
        if end > len(data):
            break
        try:
            rows.extend(decode_rows(data[at + _LENGTH.size : end]))
        except Exception:  # noqa: BLE001 - a frame cut by a crash: its rows were never answered
            break
        at = end
    return rows


def ready_segments(folder: Path) -> list[Path]:
    """Complete segments, oldest first."""
    return sorted(folder.glob(f"*{READY}"))


def take_folder(root: Path) -> tuple[Path, int]:
    """The lowest-numbered spool folder under ``root`` no other API process holds; returns it and its lock."""
    root.mkdir(parents=True, exist_ok=True)
    for n in range(10_000):
        folder = root / str(n)
        folder.mkdir(exist_ok=True)
        fd = os.open(folder / "api.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return folder, fd
    raise RuntimeError(f"no free spool folder under {root}")


class Spool:
    """The API's side: append rows durably (group commits), seal segments for the writer."""

    def __init__(
        self, folder: Path, segment_rows: int = 500, segment_seconds: float = 0.5, fsync_each: bool = False
    ) -> None:
        self.folder, self.segment_rows, self.segment_seconds = folder, segment_rows, segment_seconds
        self.fsync_each = fsync_each
        self._lock = threading.Lock()  # the write thread and the sealing check
        self._fd: int | None = None
        self._path: Path | None = None
        self._opened_at = 0.0
        self._rows = 0
        self._seq = 0
        self._frames: list[bytes] = []
        self._counts: list[int] = []
        self._waiters: list[asyncio.Future[None]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._pending_sync: list[Path] = []

    def open(self) -> None:
        """Seal what a previous process left being appended, remove the batch segments it left half written
        (their batches were never answered), and continue the numbering."""
        seqs = [int(p.stem) for p in self.folder.glob("*.*") if p.stem.isdigit()]  # the numbers left parts held too
        for part in self.folder.glob(f"*{PART}"):
            part.unlink()
        for left in sorted(self.folder.glob(f"*{OPEN}")):
            left.rename(left.with_suffix(READY))
        self._seq = max(seqs, default=0) + 1
        fsync_folder(self.folder)

    async def append(self, rows: list[dict[str, Any]]) -> None:
        """Return once ``rows`` are written (and fsynced, with ``fsync_each``); raises OSError when they
        could not be."""
        if not rows:
            return
        if not self.fsync_each:
            self._write(frame(rows), len(rows))
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._frames.append(frame(rows))
        self._counts.append(len(rows))
        self._waiters.append(waiter)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        await asyncio.shield(waiter)  # a caller that goes away does not take its rows' write with it

    async def _flush(self) -> None:
        try:
            while self._frames:
                frames, counts, waiters = self._frames, self._counts, self._waiters
                self._frames, self._counts, self._waiters = [], [], []
                try:
                    await asyncio.to_thread(self._write, b"".join(frames), sum(counts))
                except OSError as exc:
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                    continue
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(None)
        finally:
            self._flusher = None

    def _write(self, data: bytes, rows: int) -> None:
        with self._lock:
            if self._fd is None:
                self._path = self.folder / f"{self._seq:012d}{OPEN}"
                self._seq += 1
                self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                self._opened_at = time.monotonic()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            if self.fsync_each:
                os.fsync(self._fd)
            self._rows += rows
            if self._rows >= self.segment_rows:
                self._seal()

    def reserve_segment(self) -> Path:
        """A new segment's ``<seq>.part`` path, for a batch's rows, written by the batch worker process
        (:func:`serving.frames.write_segment_file`); once written, :meth:`segment_written` takes it into the
        spool's durability. Callable from any thread: the lock is held only to take a number, so the event
        loop's appends go on meanwhile. A ``.part`` a crash left is removed at the next start (:meth:`open`):
        its batch was never answered."""
        with self._lock:
            seq = self._seq
            self._seq += 1
        return self.folder / f"{seq:012d}{PART}"

    def segment_written(self, part: Path) -> None:
        """Make the segment reserved as ``part`` (:meth:`reserve_segment`), since published ready whole by
        :func:`serving.frames.write_segment_file`, as durable as the rest: its folder entry fsynced now with
        ``fsync_each``, else with the sealed segments'."""
        if self.fsync_each:
            fsync_folder(self.folder)
        else:
            with self._lock:
                self._pending_sync.append(part.with_suffix(READY))

    def seal_if_old(self) -> None:
        """Hand the open segment to the writer when it is ``segment_seconds`` old, else fsync it (the
        fsync on a duplicate descriptor, outside the lock, so appends go on meanwhile)."""
        with self._lock:
            if self._fd is None:
                return
            if time.monotonic() - self._opened_at >= self.segment_seconds:
                self._seal()
                return
            fd = os.dup(self._fd)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def seal(self) -> None:
        with self._lock:
            if self._fd is not None:
                self._seal()

    def _seal(self) -> None:
        """Close the open segment and rename it ready (the writer syncs nothing it reads: a sealed segment
        is complete in the page cache, which the writer reads)."""
        assert self._fd is not None and self._path is not None
        if not self.fsync_each:
            self._pending_sync.append(self._path.with_suffix(READY))
        os.close(self._fd)
        self._path.rename(self._path.with_suffix(READY))
        self._fd, self._path, self._rows = None, None, 0

    def sync_sealed(self) -> None:
        """fsync the segments sealed since the last call, and the folder (run off the event loop)."""
        with self._lock:
            paths, self._pending_sync = self._pending_sync, []
        for path in paths:
            with suppress(FileNotFoundError):  # already written and deleted by the writer
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        fsync_folder(self.folder)


class SpooledScoreLog:
    """The score log with a durable hand-over: ``await commit(rows)`` before answering.

    ``written`` counts the rows the writer reported committed. No row is dropped: rows not yet written stay
    on disk (``leadscore_score_log_dropped_total`` stays 0).
    """

    def __init__(
        self,
        url: str,
        root: Path,
        flush_seconds: float = 0.5,
        batch_rows: int = 500,
        stop_seconds: float = 10.0,
        fsync_each: bool = False,
        priority: str = "idle",
        cpus: frozenset[int] | None = None,
    ) -> None:
        self.fsync_each = fsync_each
        self.priority = priority  # the writer's CPU priority (serving.priority.helper_priority)
        self.cpus = cpus  # the CPUs it runs on (serving.priority.place_process; None: any)
        self.url, self.root, self.flush_seconds = url, root, flush_seconds
        self.batch_rows, self.stop_seconds = batch_rows, stop_seconds
        self.written = 0
        self.spool: Spool | None = None
        self._lock_fd: int | None = None
        self._writer: subprocess.Popen[bytes] | None = None
        self._report = b""
        self._stop = threading.Event()
        self._watch: threading.Thread | None = None

    def start(self) -> None:
        """Take a spool folder, seal what was left in it, start the writer (which writes it) and the watcher.

        The database is not needed to start (the writer waits for it); a malformed URL fails here."""
        make_url(self.url)
        try:  # create the table now when the database is there (readers may look before the first write)
            open_engine(self.url).dispose()
        except OperationalError as exc:
            log.warning(
                "score log database unavailable at start (%s): scores are spooled meanwhile", type(exc).__name__
            )
        folder, self._lock_fd = take_folder(self.root)
        self.spool = Spool(folder, self.batch_rows, self.flush_seconds, self.fsync_each)
        self.spool.open()
        self._writer = self._start_writer()
        self._watch = threading.Thread(target=self._watch_loop, name="score-log-spool", daemon=True)
        self._watch.start()

    async def commit(self, rows: list[dict[str, Any]]) -> None:
        """Return once ``rows`` are durable (on disk in the spool)."""
        assert self.spool is not None
        await self.spool.append(rows)

    def batch_segment(self) -> tuple[Path, bool]:
        """A new segment's ``.part`` path for a batch's rows, and whether it is to be fsynced: the batch worker
        writes it (:func:`serving.frames.write_segment_file`), then :meth:`segment_written` makes it durable.
        Callable from any thread."""
        assert self.spool is not None
        return self.spool.reserve_segment(), self.spool.fsync_each

    def segment_written(self, part: Path) -> None:
        """The batch's segment reserved as ``part`` is published whole (:meth:`Spool.segment_written`); from any
        thread."""
        assert self.spool is not None
        self.spool.segment_written(part)

    def _start_writer(self) -> subprocess.Popen[bytes]:
        assert self.spool is not None
        writer = subprocess.Popen(
            [sys.executable, "-P", "-m", WRITER_MODULE], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert writer.stdin is not None and writer.stdout is not None
        config = {
            "url": self.url,
            "folder": str(self.spool.folder),
            "batch_rows": self.batch_rows,
            "poll_seconds": min(0.05, self.flush_seconds),
            "group_seconds": self.flush_seconds,
            "priority": self.priority,
            "cpus": sorted(self.cpus) if self.cpus else None,
            "log_level": logging.getLogger("leadscore").getEffectiveLevel(),
        }
        pickle.dump(config, writer.stdin)
        writer.stdin.flush()
        os.set_blocking(writer.stdout.fileno(), False)
        return writer

    def _watch_loop(self) -> None:
        """Seal old segments (fsync the open one and those sealed since), read the writer's reports, start a
        new writer when it died."""
        while not self._stop.wait(self.flush_seconds):
            try:
                assert self.spool is not None and self._writer is not None
                self.spool.seal_if_old()
                self.spool.sync_sealed()
                self._read_reports(self._writer)
                if self._writer.poll() is not None:
                    log.error("score log writer exited with %s; starting a new one", self._writer.returncode)
                    self._read_reports(self._writer, final=True)
                    self._writer = self._start_writer()
            except Exception as exc:  # noqa: BLE001 - keep watching (rows wait on disk meanwhile)
                log.error("score log spool check failed: %s", type(exc).__name__)

    def _read_reports(self, writer: subprocess.Popen[bytes], final: bool = False) -> int:
        """Count the rows the writer reports written; returns the bytes read."""
        out = writer.stdout
        assert out is not None
        try:
            chunk = out.read() if final else os.read(out.fileno(), 65536)
        except (BlockingIOError, ValueError, OSError):
            chunk = b""
        self._report += chunk or b""
        *lines, self._report = self._report.split(b"\n")
        for line in lines:
            what, _, count = line.decode().partition(" ")
            if what == "written":
                self.written += int(count)
        return len(chunk or b"")

    def close(self, timeout: float | None = None) -> None:
        """Seal the open segment, let the writer write what is ready for at most ``stop_seconds``, stop it.
        What it could not write stays in the spool for the next start."""
        if self._watch is None:
            return
        self._stop.set()
        self._watch.join()
        self._watch = None
        assert self.spool is not None and self._writer is not None
        self.spool.seal()
        self.spool.sync_sealed()
        seconds = self.stop_seconds if timeout is None else timeout
        writer = self._writer
        if writer.poll() is None:
            with suppress(OSError):
                assert writer.stdin is not None
                pickle.dump({"stop": seconds}, writer.stdin)
                writer.stdin.close()
        # its reports are read meanwhile: a writer blocked on a full pipe would be killed with rows committed
        # and their segments not yet deleted (written again at the next start)
        deadline = time.monotonic() + seconds + 5
        while writer.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.error("score log writer did not stop within %.0fs; stopping it (its rows stay spooled)", seconds)
                writer.kill()
                break
            select.select([writer.stdout], [], [], min(remaining, 0.1))
            if not self._read_reports(writer):
                time.sleep(0.01)  # nothing new (or the end of its output): its exit comes next
        writer.wait()
        self._read_reports(writer, final=True)
        for pipe in (writer.stdin, writer.stdout):
            if pipe is not None:
                with suppress(OSError):
                    pipe.close()
        left = sum(len(read_segment(p)) for p in ready_segments(self.spool.folder))
        if left:
            log.warning(
                "score log: %d rows stay in the spool %s; they are written at the next start", left, self.spool.folder
            )
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
