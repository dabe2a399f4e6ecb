"""The score log keeps every score through a database outage (while its queue has room) and never blocks a stop."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy.exc import OperationalError

from serving.score_log import ScoreLog


def _rows(n: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {"request_id": f"r{i}", "lead_hash": f"{i:064x}", "model_name": "m", "model_version": "1",
         "probability": 0.1, "score": 10, "tier": "C", "scored_at": now}
        for i in range(n)
    ]


class Outage:
    """The real engine behind a gate that is down for the first ``failures`` transactions (or for good)."""

    def __init__(self, engine: Any, failures: float) -> None:
        self.engine, self.failures = engine, failures

    def begin(self) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise OperationalError("INSERT", {}, ConnectionError("database unavailable"))
        return self.engine.begin()

    def dispose(self) -> None:
        self.engine.dispose()


def _stored(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT request_id FROM score_log ORDER BY id")]


def test_rows_written_during_an_outage_arrive_in_order_once_it_ends(tmp_path: Path) -> None:
    dropped: list[int] = []
    log = ScoreLog(f"sqlite:///{tmp_path / 'scores.db'}", flush_seconds=0.05, batch_rows=4, on_drop=dropped.append)
    log.start()
    log._engine = Outage(log._engine, failures=3)
    log.append(_rows(10))
    deadline = time.monotonic() + 10
    while log.written < 10 and time.monotonic() < deadline:
        time.sleep(0.05)
    log.close()
    assert _stored(tmp_path / "scores.db") == [f"r{i}" for i in range(10)]
    assert log._engine.failures == 0 and not dropped


def test_a_stop_during_a_lasting_outage_ends_in_time_and_counts_what_it_could_not_write(tmp_path: Path) -> None:
    dropped: list[int] = []
    log = ScoreLog(f"sqlite:///{tmp_path / 'scores.db'}", flush_seconds=0.05, on_drop=dropped.append)
    log.start()
    log._engine = Outage(log._engine, failures=float("inf"))
    log.append(_rows(7))
    began = time.monotonic()
    log.close(timeout=1.0)
    assert time.monotonic() - began < 3 and sum(dropped) == 7 and _stored(tmp_path / "scores.db") == []


class FailsMidBatch:
    """The real engine, whose first transaction loses its connection at the second insert of a batch's parts."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.armed, self.lost = engine, True, False

    @contextmanager
    def begin(self) -> Iterator[Any]:
        with self.engine.begin() as conn:
            if not self.armed:
                yield conn
                return
            self.armed = False
            inserts = []

            def execute(*args: Any) -> Any:
                inserts.append(args)
                if len(inserts) == 2:
                    self.lost = True
                    raise OperationalError("INSERT", {}, ConnectionError("connection lost"))
                return conn.execute(*args)

            yield SimpleNamespace(execute=execute)

    def dispose(self) -> None:
        self.engine.dispose()


def test_a_batch_written_in_parts_is_still_all_or_nothing(tmp_path: Path) -> None:
    """The writer hands the GIL to the event loop between parts of a batch; a failure in a later part keeps
    none of the earlier ones, and the whole batch arrives once, in order, when the database answers again."""
    from serving.score_log import YIELD_ROWS

    log = ScoreLog(f"sqlite:///{tmp_path / 'scores.db'}", flush_seconds=0.05, batch_rows=500, on_drop=lambda n: None)
    log.start()
    log._engine = FailsMidBatch(log._engine)
    rows = 2 * YIELD_ROWS + 20
    log.append(_rows(rows))
    deadline = time.monotonic() + 10
    while log.written < rows and time.monotonic() < deadline:
        time.sleep(0.05)
    log.close()
    assert log._engine.lost  # the batch went in parts, and one failed after another had gone in
    assert _stored(tmp_path / "scores.db") == [f"r{i}" for i in range(rows)]
