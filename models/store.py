"""The score log's database: the ``score_log`` and ``outcome_events`` tables, and the lead hash.

The API appends to both (:mod:`serving.score_log`, :mod:`serving.routes_events`); the loop report, the
events export and the hand-off simulation read and fill them; so the tables live here, below both.
The outcome events' invariants:

- one row per idempotency key (``event_key``): a key sent again is a duplicate and changes nothing;
- lead ids are stored only as the same hash the score log uses (:func:`lead_hasher`);
- no free text: a rejection reason is one of a configured list, the actor is an id;
- rows are kept in arrival order, never updated; the order of what happened is ``occurred_at``'s, so
  events that arrive out of order are read in the order they happened.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, Engine, make_url

from leadscore.models.lead_hash import lead_hasher as lead_hasher

log = logging.getLogger("leadscore.store")

EventKind = Literal[
    "accepted",
    "rejected",
    "recycled",
    "contacted",
    "meeting_booked",
    "opportunity_created",
    "closed_won",
    "closed_lost",
]
EVENT_KINDS: tuple[str, ...] = get_args(EventKind)
TOUCH_KINDS = ("accepted", "contacted")  # a lead's first touch, for its SLA
HANDLED_KINDS = ("accepted", "contacted", "rejected", "recycled")  # a lead someone has dealt with
DEFAULT_REJECTION_REASONS = (
    "not_icp",
    "no_budget",
    "no_authority",
    "no_timeline",
    "wrong_contact",
    "duplicate",
)
CREATE_LOCK_KEY = 0x1EAD5C0E  # PostgreSQL advisory lock under which the tables are created (the score log's too)

metadata = MetaData()
score_log_table = Table(
    "score_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(64), nullable=False, index=True),
    Column("lead_hash", String(64), nullable=False, index=True),
    Column("model_name", String(200), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("probability", Float, nullable=False),
    Column("score", Integer, nullable=False),
    Column("tier", String(64), nullable=False),
    Column("scored_at", DateTime(timezone=True), nullable=False),
    # For the closed loop: the tier's queue and SLA, and the model input (JSON of the feature record the
    # model scored: no names, emails or ids). Nullable: rows written before these columns have none.
    Column("queue", String(64), nullable=True),
    Column("sla_hours", Float, nullable=True),
    Column("model_input", Text, nullable=True),
)
ADDED_SCORE_LOG_COLUMNS = ("queue", "sla_hours", "model_input")  # added to a score log created before them
outcome_events = Table(
    "outcome_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_key", String(128), nullable=False, unique=True),
    Column("lead_hash", String(64), nullable=False, index=True),
    Column("kind", String(32), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("reason", String(64), nullable=True),
    Column("reengage_on", Date, nullable=True),
    Column("amount", Float, nullable=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
)


def create_events_table(engine: Engine) -> None:
    """Create the tables that are not there (PostgreSQL: under an advisory lock, replicas may race)."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CREATE_LOCK_KEY})
            metadata.create_all(conn)
    else:
        metadata.create_all(engine)


def _insert_ignoring_duplicates(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert ``rows``, skipping keys already stored; the number inserted."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the two databases leadscore supports
        raise ValueError(f"outcome events: unsupported database {conn.dialect.name!r}")
    statement = insert(outcome_events).on_conflict_do_nothing(index_elements=["event_key"])
    # RETURNING names the rows written (executemany's rowcount is not reliable across drivers).
    return len(conn.execute(statement.returning(outcome_events.c.id), rows).all())


def store_events(engine: Engine, rows: Iterable[dict[str, Any]], chunk: int = 2000) -> tuple[int, int]:
    """Store event rows idempotently, ``chunk`` rows a transaction: (stored, duplicates).

    A key repeated within ``rows`` counts as a duplicate too.
    """
    stored = seen = 0
    batch: list[dict[str, Any]] = []
    keys: set[str] = set()

    def flush() -> int:
        with engine.begin() as conn:
            return _insert_ignoring_duplicates(conn, batch)

    for row in rows:
        seen += 1
        if row["event_key"] in keys:
            continue
        keys.add(row["event_key"])
        batch.append(row)
        if len(batch) >= chunk:
            stored += flush()
            batch = []
    if batch:
        stored += flush()
    return stored, seen - stored


def has_table(engine: Engine, name: str) -> bool:
    return inspect(engine).has_table(name)


KEY_FILE = "lead-hash.key"


def lead_hash_key(home: Path, configured: Any | None) -> bytes:
    """The configured key (a pydantic ``SecretStr``), else the one in ``<home>/lead-hash.key`` (created, once,
    when missing).

    The API and the commands that read or write its database (events import and export, the loop
    report) resolve the key the same way, so one lead gets one hash everywhere.
    """
    if configured is not None:
        return configured.get_secret_value().encode("utf-8")
    path = Path(home) / KEY_FILE
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: of several processes starting together, one creates it and the others read it
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(secrets.token_hex(32))
                out.flush()
                os.fsync(out.fileno())
            log.warning(
                "created a lead-hash key in %s: keep it (score-log hashes made with another key do not match)", path
            )
    key = path.read_text(encoding="ascii").strip()
    if len(key) < 32:
        raise ValueError(f"{path} holds no usable key (delete it to make a new one, or set LEADSCORE_LEAD_HASH_KEY)")
    return key.encode("ascii")


def open_database(url: str) -> Engine:
    """An engine on the score log's database with the events table created (SQLite: its folder too)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    create_events_table(engine)
    return engine
