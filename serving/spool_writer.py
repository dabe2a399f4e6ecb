"""The spool's writer process (``python -m leadscore.serving.spool_writer``, started by :class:`SpooledScoreLog`).

Input (stdin), pickled: its settings (a dict), then ``{"stop": seconds}`` (the end of the input is a stop too:
the API's process is gone). It holds ``writer.lock`` in the spool folder (one writer per folder), and
writes the ready segments, oldest first, in one transaction (up to ``GROUP_ROWS`` rows; the segment that
reaches it is the last), then deletes them. Having written all that was ready, it waits out
``group_seconds`` from the round's start (not when stopping), so that segments gather and a busy API's rows
take few transactions: an index leaf that several segments' rows land in is written once. A database
failure is retried after a growing pause. After the stop it keeps going until nothing is ready or the
stop's deadline passes; what is left stays on disk. Output (stdout): a line ``written N`` per transaction,
once its segments are deleted. Log lines never hold a row's data.

By default it runs at the lowest CPU priority (:func:`serving.priority.helper_priority`: ``SCHED_IDLE`` on
Linux; the ``priority`` of its settings): the API's event loop, answering scores and health checks, is
scheduled ahead of it (within the limits :mod:`serving.priority` states), and the rows the writer has not
reached yet wait, durable, in the spool.

It ignores SIGINT and SIGTERM (a signal to the whole process group reaches it too; the API stops it
through its input once the last segment is sealed).
"""

from __future__ import annotations

import fcntl
import logging
import os
import pickle
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from leadscore.serving.priority import helper_priority, place_process
from leadscore.serving.score_log import open_engine, score_log_table
from leadscore.serving.spool import read_segment, ready_segments

log = logging.getLogger("leadscore.serving.score_log")
RETRY_MIN_SECONDS = 0.25
RETRY_MAX_SECONDS = 5.0
ORPHAN_STOP_SECONDS = 30.0
GROUP_ROWS = 10_000  # rows a transaction takes at most (a segment is never split)


def _wait_for_stop(source: BinaryIO, stop: dict[str, float], stopping: threading.Event) -> None:
    try:
        message = pickle.load(source)
        seconds = float(message.get("stop", ORPHAN_STOP_SECONDS)) if isinstance(message, dict) else 0.0
    except (EOFError, OSError, pickle.UnpicklingError):
        seconds = ORPHAN_STOP_SECONDS
    stop["deadline"] = time.monotonic() + seconds
    stopping.set()


def _write_segments(engine: Any, segments: list[Path], batch_rows: int) -> list[tuple[Path, int]]:
    """Insert the rows of ``segments``, oldest first, in one transaction, until ``GROUP_ROWS`` rows are in;
    returns the segments written with their row counts (all or none of them are committed)."""
    written: list[tuple[Path, int]] = []
    total = 0
    with engine.begin() as conn:
        for segment in segments:
            rows = read_segment(segment)
            for at in range(0, len(rows), batch_rows):
                conn.execute(score_log_table.insert(), rows[at : at + batch_rows])
            written.append((segment, len(rows)))
            total += len(rows)
            if total >= GROUP_ROWS:
                break
    return written


def run(source: BinaryIO) -> None:
    config = pickle.load(source)
    logging.basicConfig(level=config["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    place_process(config.get("cpus"))
    priority = helper_priority(config["priority"])
    log.debug("score log writer %d started at CPU priority %s", os.getpid(), priority)
    folder = Path(config["folder"])
    lock = os.open(folder / "writer.lock", os.O_RDWR | os.O_CREAT, 0o600)
    stop: dict[str, float] = {}
    stopping = threading.Event()
    threading.Thread(target=_wait_for_stop, args=(source, stop, stopping), daemon=True).start()
    fcntl.flock(lock, fcntl.LOCK_EX)  # a writer still finishing this folder goes first
    engine = None
    failures = 0
    while True:
        segments = ready_segments(folder)
        deadline = stop.get("deadline")
        if deadline is not None and (not segments or time.monotonic() >= deadline):
            break
        if not segments:
            time.sleep(config["poll_seconds"])
            continue
        began = time.monotonic()
        try:
            if engine is None:
                engine = open_engine(config["url"])
            written = _write_segments(engine, segments, config["batch_rows"])
            for segment, _ in written:
                segment.unlink()
            sys.stdout.write(f"written {sum(rows for _, rows in written)}\n")  # once all are deleted
            sys.stdout.flush()
            failures = 0
            if len(written) == len(segments):  # all that was ready is in: let the next ones gather
                stopping.wait(max(0.0, began + config["group_seconds"] - time.monotonic()))
        except Exception as exc:  # noqa: BLE001 - the rows stay on disk; try again after a pause
            failures += 1
            pause = min(RETRY_MIN_SECONDS * 2 ** (failures - 1), RETRY_MAX_SECONDS)
            log.error("score log write failed (attempt %d): %s; retrying in %.2fs", failures, type(exc).__name__, pause)
            deadline = stop.get("deadline")
            if deadline is None:
                stopping.wait(pause)  # a stop ends the pause: what is ready gets its try before the deadline
            else:
                time.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
    left = len(ready_segments(folder))
    if left:
        log.warning("score log: %d spooled segments not written before the stop; written at the next start", left)
    if engine is not None:
        engine.dispose()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    run(sys.stdin.buffer)
