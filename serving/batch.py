"""A batch request scored in the batch worker process: the API's side.

The event loop receives the body and sends the answer; in between, the batch thread (:func:`batch_executor`,
one thread) hands the body to the worker process (:mod:`serving.batch_worker`) and waits for its answer
bytes, holding the interpreter lock only to copy them; the worker writes the batch's score-log rows to the
spool itself, as a segment whose number the API reserved (:meth:`serving.spool.Spool.reserve_segment`). So the event loop never shares
the lock with a batch being parsed and scored, and a batch uses a core the event loop does not.

:class:`BatchWorker` starts the worker with the first batch (a server that is sent no batch never pays for
it), sends it each model version the first time a batch is scored with it, and scores one batch at a time
(the others wait their turn, within admission control's bound); after ``LEADSCORE_BATCH_WORKER_IDLE_SECONDS``
without a batch it is ended (:meth:`BatchWorker.stop_if_idle`), giving its memory back. The worker's answers become what FastAPI
would answer for a body declared as :class:`serving.schemas.BatchRequest`: ``RequestValidationError`` (422,
the same errors and field paths), 413 past ``max_batch`` leads. A worker that dies (killed, out of memory)
fails the batch it was scoring with 503 and ``Retry-After``, is logged, and is started again with the next
batch. Each batch is scored by the version its request was admitted with.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import HTTPException, status
from fastapi.exceptions import RequestValidationError

from leadscore.serving.batch_work import ScoredBatch
from leadscore.serving.batch_worker import receive, send

if TYPE_CHECKING:
    from leadscore.serving.scoring import LoadedModel

log = logging.getLogger("leadscore.serving.batch")
WORKER_MODULE = "leadscore.serving.batch_worker"
WORKER_FAILED = "the batch could not be scored; retry later"
REPLY_SECONDS = 120.0  # longest a batch may take in the worker before the worker is taken for hung


class BatchFailed(RuntimeError):
    """The worker could not score a batch for a reason that is not the batch's (the API answers 500)."""


class SegmentNotWritten(OSError):
    """The worker scored a batch but could not write its score-log segment (the API answers 503)."""


def batch_executor(threads: int) -> ThreadPoolExecutor:
    """The threads that hand batches to the worker and wait for it (without the interpreter lock meanwhile)."""
    return ThreadPoolExecutor(threads, thread_name_prefix="leadscore-batch")


async def in_batch_thread(executor: ThreadPoolExecutor, job: Callable[[], ScoredBatch]) -> ScoredBatch:
    """``job()`` on a batch thread; a caller cancelled meanwhile (its client went away) still waits for the job
    to end before it is cancelled, so the work admitted stays counted until it is done."""
    future = asyncio.get_running_loop().run_in_executor(executor, job)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


class BatchWorker:
    """The batch worker process of one API process; :meth:`score` is called on the batch thread.

    A batch not answered within ``reply_seconds`` (sending it included) is taken for a hung worker: a watchdog
    kills the worker and the batch gets 503. After :meth:`close` (the API stops), batches get 503 and no worker is started again.
    """

    def __init__(
        self,
        lead_hash_key: bytes | None,
        log_level: int | None = None,
        reply_seconds: float = REPLY_SECONDS,
        priority: str = "idle",
        cpus: frozenset[int] | None = None,
    ) -> None:
        self.lead_hash_key = lead_hash_key
        self.priority = priority  # the worker's CPU priority (serving.priority.helper_priority)
        self.cpus = cpus  # the CPUs it runs on (serving.priority.place_process; None: any)
        self.log_level = logging.getLogger("leadscore").getEffectiveLevel() if log_level is None else log_level
        self.reply_seconds = reply_seconds
        # -P: the worker's imports come from the installation, never from the working directory
        self.command = [sys.executable, "-P", "-m", WORKER_MODULE]
        self.process: subprocess.Popen[bytes] | None = None
        self.started = 0  # worker processes started so far
        self._model: LoadedModel | None = None  # the version the worker holds
        self._lock = threading.Lock()
        self._closed = False
        self._last_batch = time.monotonic()  # when the last batch was answered (or this was made)

    def score(
        self,
        body: bytes,
        max_batch: int,
        model: LoadedModel,
        request_id: str,
        log_id: str | None,
        explain: bool,
        segment: tuple[Path, bool] | None = None,
    ) -> ScoredBatch:
        """The batch scored by ``model``: its answer bytes and score-log frames (raises the 422, 413 or 503 FastAPI
        answers, or :class:`BatchFailed`). With ``segment`` (a spool segment's ``.part`` path and whether to
        fsync it), the worker writes the rows there as a segment, ready before this returns, and the frames come
        back empty; :class:`SegmentNotWritten` when it could not be written (nothing of it is left). A segment
        the worker had not finished when the exchange failed is removed; one it had published ready (the worker
        died before its reply) stays: its rows are logged though the batch is answered 503 (at least once)."""
        with self._lock:
            if self._closed:
                raise _unavailable()
            hung = threading.Event()
            watchdog: threading.Timer | None = None
            try:
                process = self._running()
                assert process.stdin is not None and process.stdout is not None
                watchdog = threading.Timer(self.reply_seconds, _kill_hung, (process, hung))
                watchdog.daemon = True
                watchdog.start()
                if self._model is not model:
                    send(process.stdin, ("model", model.scorer, model.name, model.version))
                    self._model = model
                part = None if segment is None else (str(segment[0]), segment[1])
                send(process.stdin, ("batch", body, max_batch, request_id, log_id, explain, part))
                reply = receive(process.stdout)
            except Exception as exc:  # noqa: BLE001 - any failure of the exchange: this worker is done
                self._discard(f"no answer within {self.reply_seconds:g} s" if hung.is_set() else type(exc).__name__)
                if segment is not None:
                    with suppress(OSError):
                        segment[0].unlink()
                raise _unavailable() from None
            finally:
                if watchdog is not None:
                    watchdog.cancel()
                self._last_batch = time.monotonic()
        kind, detail = reply
        if kind == "ok":
            return detail  # type: ignore[no-any-return]
        if kind == "invalid":
            raise RequestValidationError(detail)
        if kind == "too_big":
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=detail)
        if kind == "not_recorded":
            raise SegmentNotWritten(detail)
        raise BatchFailed(f"the batch worker failed: {detail}")

    def close(self, timeout: float = 10.0) -> None:
        """End the worker (through its input) once its batch in hand is answered, waiting ``timeout`` at most for
        each; then kill it. No worker is started after this."""
        got = self._lock.acquire(timeout=timeout)
        try:
            self._closed = True
            process, self.process, self._model = self.process, None, None
        finally:
            if got:
                self._lock.release()
        if process is None:
            return
        if not got:  # a batch still in hand: it gets 503
            process.kill()
        _end(process, timeout, close_output=got)

    def stop_if_idle(self, idle_seconds: float, timeout: float = 10.0) -> bool:
        """End the worker when no batch was handed to it for ``idle_seconds``, so its memory goes back to the
        system (the next batch starts a new one); True when it was ended. A batch in hand is never waited for:
        then nothing is done."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            process = self.process
            if process is None or time.monotonic() - self._last_batch < idle_seconds:
                return False
            self.process, self._model = None, None
        finally:
            self._lock.release()
        _end(process, timeout, close_output=True)
        log.info("batch worker stopped after %.0f s without a batch; the next batch starts a new one", idle_seconds)
        return True

    def _running(self) -> subprocess.Popen[bytes]:
        if self.process is not None and self.process.poll() is None:
            return self.process
        if self.process is not None:
            self._discard("it exited")
        process = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        self.process, self._model = process, None
        self.started += 1
        assert process.stdin is not None
        send(
            process.stdin,
            {
                "lead_hash_key": self.lead_hash_key,
                "log_level": self.log_level,
                "priority": self.priority,
                "cpus": sorted(self.cpus) if self.cpus else None,
                "parent": os.getpid(),
            },
        )
        return process

    def _discard(self, why: str) -> None:
        """Forget a worker that failed (killed if still running); the next batch starts a new one."""
        process, self.process, self._model = self.process, None, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait()
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with suppress(OSError):
                    pipe.close()
        log.error(
            "batch worker failed (%s; exit status %s); a new one starts with the next batch", why, process.returncode
        )


def _end(process: subprocess.Popen[bytes], timeout: float, close_output: bool) -> None:
    """End a worker through its input (it finishes the batch in hand first), killing it after ``timeout``."""
    with suppress(OSError):
        assert process.stdin is not None
        process.stdin.close()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if close_output and process.stdout is not None:
        process.stdout.close()


def _kill_hung(process: subprocess.Popen[bytes], hung: threading.Event) -> None:
    """The watchdog of a batch past its time: the worker is killed, so its pipes end and the batch thread goes on."""
    hung.set()
    with suppress(OSError):
        process.kill()


def _unavailable() -> HTTPException:
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=WORKER_FAILED, headers={"Retry-After": "1"})
