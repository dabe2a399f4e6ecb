"""The score log on a real PostgreSQL server, through the same SQLAlchemy code as SQLite: rows in order,
several API processes writing to one log without loss or duplicates, and a real outage (the server
stopped, then started again) ridden out."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from leadscore.serving.score_log import open_engine
from leadscore.serving.spool import SpooledScoreLog
from tests.factories import score_rows
from tests.postgres import PostgresServer, postgres_bin, postgres_server

pytestmark = pytest.mark.integration


def _stored(url: str, column: str = "request_id") -> list[Any]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [r[0] for r in conn.execute(text(f"SELECT {column} FROM score_log ORDER BY id"))]
    finally:
        engine.dispose()


def _log(url: str, folder: Path, **kw: Any) -> SpooledScoreLog:
    """The score log as the API runs it: a spool in ``folder`` and its writer process."""
    log = SpooledScoreLog(url, folder, **kw)
    log.start()
    return log


def _commit(log: SpooledScoreLog, rows: list[dict[str, Any]]) -> None:
    asyncio.run(log.commit(rows))


def _until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_rows_arrive_in_order_with_their_values(postgres: PostgresServer, tmp_path: Path) -> None:
    url = postgres.create_database("scores_order")
    log = _log(url, tmp_path / "spool", flush_seconds=0.05, batch_rows=7)
    rows = score_rows(50)
    for first in range(0, 50, 5):
        _commit(log, rows[first : first + 5])
    log.close()
    assert log.written == 50
    assert _stored(url) == [r["request_id"] for r in rows]
    scored_at = _stored(url, "scored_at")[0]
    assert scored_at.tzinfo is not None and abs((scored_at - rows[0]["scored_at"]).total_seconds()) < 1e-3


def test_replicas_starting_together_create_the_table_once_without_errors(postgres: PostgresServer) -> None:
    """Eight openers released at once on fresh databases: without a lock, PostgreSQL's catalog refuses all
    but one CREATE TABLE (a duplicate key, or a relation that already exists)."""
    for attempt in range(3):
        url = postgres.create_database(f"scores_race{attempt}")
        errors: list[str] = []
        barrier = threading.Barrier(8)

        def open_at_once(url: str = url, errors: list[str] = errors, barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            try:
                open_engine(url).dispose()
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")

        threads = [threading.Thread(target=open_at_once) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert _stored(url) == []


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from tests.factories import score_rows
    from tests.test_score_log_postgres import _commit, _log

    url, name, n, start_at, folder = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
    time.sleep(max(start_at - time.time(), 0))  # all start at once: they race to create the table
    log = _log(url, Path(folder), flush_seconds=0.02, batch_rows=50)
    for first in range(0, n, 10):
        _commit(log, score_rows(10, first=first, prefix=name + "-"))
    log.close()
    print(log.written)
    """
)


def test_several_api_processes_write_to_one_log_without_loss_or_duplicates(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    """Four processes, each with its own spool and writer process, start together on a database without the table
    (each creates it if missing) and append 600 rows each."""
    url = postgres.create_database("scores_shared")
    start_at = str(time.time() + 8)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, f"p{k}", "600", start_at, str(tmp_path / f"spool-{k}")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for k in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0] * 4, [err.decode()[-2000:] for _, err in outputs]
    assert [int(out) for out, _ in outputs] == [600] * 4
    stored = _stored(url)
    assert len(stored) == 2400 and len(set(stored)) == 2400
    for k in range(4):  # each process's rows in its own order
        mine = [r for r in stored if r.startswith(f"p{k}-")]
        assert mine == [f"p{k}-{i}" for i in range(600)]


@pytest.mark.slow
def test_rows_appended_while_the_server_is_down_arrive_once_it_is_back(tmp_path: Path) -> None:
    """A server of this test's own is stopped (connections refused), rows keep coming, the server starts
    again: every row arrives once, in order."""
    if postgres_bin() is None:
        pytest.skip("PostgreSQL is not installed (initdb/pg_ctl not found)")
    with postgres_server() as server:
        url = server.url()
        log = _log(url, tmp_path / "spool", flush_seconds=0.05, batch_rows=20)
        _commit(log, score_rows(30))
        _until(lambda: log.written == 30)
        server.stop()
        _commit(log, score_rows(40, first=30))
        time.sleep(1.0)  # several failed attempts
        assert log.written == 30
        server.start()
        _until(lambda: log.written == 70)
        log.close()
        assert log.written == 70
        assert _stored(url) == [f"r{i}" for i in range(70)]
