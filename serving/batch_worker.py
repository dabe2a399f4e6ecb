"""The batch worker process (``python -m leadscore.serving.batch_worker``, started by :class:`serving.batch.BatchWorker`).

Batch requests are parsed, validated, scored and rendered here, in a process of their own, so the API's
event loop never shares its interpreter lock with a batch: health checks and single leads are answered while
big batches run, and the batch uses a core of its own.

Protocol, on stdin and stdout: messages, each a 4-byte big-endian length and a pickle (both ends are
leadscore's own processes, connected by pipes only they hold).

- first in: ``{"lead_hash_key": bytes | None, "log_level": int, "priority": str, "cpus": list[int] | None,
  "parent": int}`` (the CPU priority, :func:`serving.priority.helper_priority`; the CPUs it runs on,
  :func:`serving.priority.place_process`; the API's process id);
- in ``("model", scorer, name, version)``: the version the next batches are scored with (sent once per
  version; it replaces the one before);
- in ``("batch", body, max_batch, request_id, log_id, explain, segment)``; out, one of
  ``("ok", ScoredBatch)``, ``("invalid", errors)`` (422), ``("too_big", detail)`` (413),
  ``("not_recorded", exception type name)`` (its segment could not be written: 503) or
  ``("failed", exception type name)`` (anything else: the API answers 500 and logs it). ``segment`` is
  ``(path, fsync)``: the batch's score-log rows are written there as a spool segment
  (:func:`serving.frames.write_segment_file`) before the reply, whose ``frames`` are then empty; or None: the
  frames come back in the reply.

The end of the input (the API closed it, or is gone) ends the worker; on Linux the worker is also killed
the moment its API ends (:func:`_die_with_parent`). It ignores SIGINT and SIGTERM, as a
signal to the whole process group reaches it too: the API ends it through its input once in-flight batches
are answered. By default it runs at the lowest CPU priority (:func:`serving.priority.helper_priority`:
``SCHED_IDLE`` on Linux), so the API's event loop is scheduled ahead of it (within the limits
:mod:`serving.priority` states). Log lines never hold a lead's data.
"""

from __future__ import annotations

import ctypes
import logging
import os
import pickle
import select
import signal
import struct
import sys
import traceback
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

from leadscore.models.lead_hash import lead_hasher
from leadscore.serving.batch_work import BatchTooBig, InvalidBatch, score_batch_body
from leadscore.serving.frames import write_segment_file
from leadscore.serving.memory import limit_arenas, trim
from leadscore.serving.priority import helper_priority, place_process
from leadscore.serving.scoring import LoadedModel

log = logging.getLogger("leadscore.serving.batch")
LENGTH = struct.Struct(">I")
# After a batch, free heap goes back to the system once no message has come for this long: a steady stream
# of batches reuses the heap (no page faults to map it in again), a pause returns it.
TRIM_AFTER_SECONDS = 1.0
PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent thread ends


def send(out: BinaryIO, message: Any) -> None:
    """Write one message (length, then pickle), all of it (``out`` may be unbuffered: short writes go on)."""
    data = memoryview(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))
    for part in (memoryview(LENGTH.pack(len(data))), data):
        while part:
            written = out.write(part)
            part = part[written if written is not None else len(part) :]
    out.flush()


def _read_exactly(source: BinaryIO, size: int) -> bytes:
    parts: list[bytes] = []
    while size:
        chunk = source.read(size)
        if not chunk:
            raise EOFError
        parts.append(chunk)
        size -= len(chunk)
    return b"".join(parts)


def receive(source: BinaryIO) -> Any:
    """Read one message, nothing beyond it (``source`` may be unbuffered: short reads go on); EOFError at the end of
    the input, or of a message cut short."""
    (length,) = LENGTH.unpack(_read_exactly(source, LENGTH.size))
    return pickle.loads(_read_exactly(source, length))


def waiting(source: BinaryIO, seconds: float) -> bool:
    """Whether a message (or the end of the input) can be read from the unbuffered ``source`` within ``seconds``."""
    return bool(select.select([source], [], [], seconds)[0])


def answer(message: tuple[Any, ...], model: LoadedModel | None, hash_lead: Any) -> tuple[Any, ...]:
    """The reply to one ``("batch", ...)`` message."""
    _, body, max_batch, request_id, log_id, explain, segment = message
    if model is None:
        return ("failed", "NoModel")
    try:
        scored = score_batch_body(body, max_batch, model, request_id, log_id, explain, hash_lead)
        if segment is None or not scored.rows:
            return ("ok", scored)
        try:
            write_segment_file(Path(segment[0]), scored.frames, segment[1])
        except OSError as exc:
            log.error("could not write a batch's score-log segment: %s", type(exc).__name__)
            return ("not_recorded", type(exc).__name__)
        return ("ok", replace(scored, frames=b""))
    except InvalidBatch as exc:
        return ("invalid", exc.errors)
    except BatchTooBig as exc:
        return ("too_big", exc.detail)
    except Exception as exc:  # noqa: BLE001 - answered as a failure; the worker keeps serving
        stack = "".join(traceback.format_tb(exc.__traceback__))  # not the message: it may quote the leads
        log.error("batch failed: %s\n%s", type(exc).__name__, stack)
        return ("failed", type(exc).__name__)


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this process (SIGKILL) when the API's thread that started it ends, with
    the API: a worker never outlives its API, so it never writes a spool segment into a folder another API
    process has taken over since (the worker writes segments whose numbers its API reserved). Elsewhere, the
    end of the input ends the worker after the batch in hand."""
    if not sys.platform.startswith("linux"):
        return
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def run(source: BinaryIO, out: BinaryIO) -> None:
    """Serve messages from ``source`` (unbuffered) until its end; replies to ``out``. Free heap is given back
    to the system when no message comes within ``TRIM_AFTER_SECONDS`` of a batch's reply."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    _die_with_parent()
    limit_arenas()
    try:
        config = receive(source)
    except EOFError:
        return
    if config.get("parent", os.getppid()) != os.getppid():  # the API was gone before the line above took effect
        return
    logging.basicConfig(level=config["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    place_process(config.get("cpus"))
    priority = helper_priority(config["priority"])
    log.debug("batch worker %d started at CPU priority %s", os.getpid(), priority)
    hash_lead = lead_hasher(config["lead_hash_key"])
    model: LoadedModel | None = None
    while True:
        try:
            message = receive(source)
        except EOFError:
            return
        if message[0] == "model":
            model = LoadedModel(*message[1:], source="the API process")
            continue
        reply = answer(message, model, hash_lead)
        try:
            send(out, reply)
        except Exception as exc:  # noqa: BLE001 - a reply that cannot be pickled is a failure of its batch
            send(out, ("failed", type(exc).__name__))
        if not waiting(source, TRIM_AFTER_SECONDS):
            trim()


def main() -> None:
    """The protocol keeps the process's stdout to itself: anything else written to file descriptor 1 (a
    library's print) goes to stderr instead of into the replies."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    run(os.fdopen(os.dup(0), "rb", buffering=0), out)


if __name__ == "__main__":
    main()
