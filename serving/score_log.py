"""The score log's database: the ``score_log`` table (SQLAlchemy Core; SQLite or PostgreSQL) and its engine.

Rows hold a hash of the lead id (never the id, an email or a name), the model version, the answer and
the time. The API does not write them here itself: it appends them to a local spool before answering,
and the spool's writer process writes them in batches (:mod:`serving.spool`, :mod:`serving.spool_writer`).
"""

from __future__ import annotations

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

__all__ = ["lead_hasher", "open_engine", "score_log_table", "write_batch"]

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
