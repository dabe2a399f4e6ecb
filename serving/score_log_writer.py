"""The score log's writer process (``python -m serving.score_log_writer``, started by :class:`ScoreLog`).

Input (stdin), pickled: its settings, then lists of rows, then ``{"stop": seconds}`` (or the end of the
input: the API's process is gone). It writes rows in batches of ``batch_rows``, one transaction each, in
the order received. When the database fails, the batch goes back to the front of the queue and the next
try waits a growing pause (up to ``RETRY_MAX_SECONDS``) while rows keep coming in (past ``max_queued``,
new ones are dropped). After the stop it keeps trying until the stop's deadline. Output (stdout), a line
per event: ``written N`` or ``dropped N``. Errors go to stderr as log lines that never hold a row's data.

It ignores SIGINT and SIGTERM: a Ctrl-C in a terminal, or a service manager, signals the whole process
group, and the API's process, which stops it through its input once its last rows are handed over,
would otherwise lose them.
"""

from __future__ import annotations

import logging
import pickle
import queue
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any, BinaryIO

from leadscore.serving.score_log import open_engine, write_batch

log = logging.getLogger("leadscore.serving.score_log")
RETRY_MIN_SECONDS = 0.25
RETRY_MAX_SECONDS = 30.0
ORPHAN_STOP_SECONDS = 30.0  # to write what it holds when its input ends without a stop


def _read(source: BinaryIO, inbox: queue.Queue[Any]) -> None:
    """Pass each message on, up to the stop (the end of the input is a stop too)."""
    while True:
        try:
            message = pickle.load(source)
        except (EOFError, OSError, pickle.UnpicklingError):
            inbox.put({"stop": ORPHAN_STOP_SECONDS})
            return
        inbox.put(message)
        if isinstance(message, dict):
            return


def _messages(inbox: queue.Queue[Any], wait: float | None) -> Iterator[Any]:
    """What has come, waiting at most ``wait`` seconds (None: until something comes) for the first."""
    try:
        yield inbox.get(timeout=wait) if wait is None or wait > 0 else inbox.get_nowait()
        while True:
            yield inbox.get_nowait()
    except queue.Empty:
        return


def _report(what: str, n: int) -> None:
    sys.stdout.write(f"{what} {n}\n")
    sys.stdout.flush()


def run(source: BinaryIO) -> None:
    """Write what comes in ``source`` until its stop (see the module's docstring)."""
    config = pickle.load(source)
    logging.basicConfig(level=config["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = open_engine(config["url"])
    inbox: queue.Queue[Any] = queue.Queue()
    threading.Thread(target=_read, args=(source, inbox), daemon=True).start()
    rows: deque[dict[str, Any]] = deque()
    deadline: float | None = None
    failures, retry_at = 0, 0.0  # no write is tried before retry_at (after a failure)
    while True:
        wait = 0.0 if deadline is not None else max(retry_at - time.monotonic(), 0.0) if rows else None
        for message in _messages(inbox, wait):
            if isinstance(message, dict):
                deadline = time.monotonic() + message["stop"]
                continue
            room = max(config["max_queued"] - len(rows), 0)
            rows.extend(message[:room])
            if len(message) > room:
                _report("dropped", len(message) - room)
        while rows and time.monotonic() >= retry_at:
            batch = [rows.popleft() for _ in range(min(config["batch_rows"], len(rows)))]
            try:
                write_batch(engine, batch)
            except Exception as exc:  # noqa: BLE001 - keep the rows and try again
                rows.extendleft(reversed(batch))
                failures += 1
                retry_at = time.monotonic() + min(RETRY_MIN_SECONDS * 2 ** (failures - 1), RETRY_MAX_SECONDS)
                log.error(
                    "score log write of %d rows failed (attempt %d): %s", len(batch), failures, type(exc).__name__
                )
                break
            failures = 0
            _report("written", len(batch))
        if deadline is not None:
            if not rows:
                break
            if retry_at > deadline:
                log.error("score log: %d rows not written before the stop deadline", len(rows))
                _report("dropped", len(rows))
                break
            time.sleep(max(retry_at - time.monotonic(), 0.0))
    engine.dispose()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    run(sys.stdin.buffer)
