"""Reading the loop report's rows: the score log and the outcome events, by table name (reflection).

The report never imports the API's code: the score log's table is reflected from the database, the
events table is :data:`leadscore.models.store.outcome_events`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import MetaData, String, Table, select, type_coerce
from sqlalchemy.engine import Engine
from sqlalchemy.sql import ColumnElement

from leadscore.models.store import has_table, outcome_events

SCORE_COLUMNS = (
    "request_id",
    "lead_hash",
    "model_name",
    "model_version",
    "probability",
    "score",
    "tier",
    "queue",
    "sla_hours",
    "scored_at",
)


def _raw_time(engine: Engine, column: ColumnElement) -> ColumnElement:
    """A time column as the database gives it: SQLite's text, parsed by pandas in one vectorized pass;
    PostgreSQL's driver already gives datetimes."""
    return type_coerce(column, String).label(column.name) if engine.dialect.name == "sqlite" else column


def _frame(engine: Engine, query: Any, names: list[str]) -> pd.DataFrame:
    """The query's rows through the driver's own cursor (plain tuples, no per-row SQLAlchemy processing:
    the time columns come back as SQLite's text or PostgreSQL's datetimes, parsed by the callers)."""
    compiled = query.compile(dialect=engine.dialect)
    params = dict(compiled.params)
    if engine.dialect.name == "sqlite":  # as SQLAlchemy stores DateTime in SQLite: UTC text
        params = {k: _sqlite_time(v) if isinstance(v, datetime) else v for k, v in params.items()}
    args: Any = [params[k] for k in compiled.positiontup] if compiled.positional else params
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute(str(compiled), args)
        rows = cursor.fetchall()
        cursor.close()
    finally:
        raw.close()
    return pd.DataFrame.from_records(rows, columns=names, coerce_float=True)


def _sqlite_time(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def score_log(engine: Engine) -> Table:
    if not has_table(engine, "score_log"):
        raise LookupError(f"no score log in {engine.url.render_as_string(hide_password=True)}")
    return Table("score_log", MetaData(), autoload_with=engine)


def read_scores(engine: Engine, since: datetime, until: datetime, with_inputs: bool = True) -> pd.DataFrame:
    """Scores with ``since <= scored_at < until``; ``model_input`` too when the log has it."""
    table = score_log(engine)
    names = [c for c in SCORE_COLUMNS if c in table.c]
    if with_inputs and "model_input" in table.c:
        names.append("model_input")
    selected = [_raw_time(engine, table.c[n]) if n == "scored_at" else table.c[n] for n in names]
    query = select(*selected).where(table.c.scored_at >= since, table.c.scored_at < until)
    frame = _frame(engine, query, names)
    frame["scored_at"] = pd.to_datetime(frame["scored_at"], utc=True, format="ISO8601")
    for column in ("queue", "sla_hours", "model_input"):
        if column not in frame:
            frame[column] = None
    frame["sla_hours"] = pd.to_numeric(frame["sla_hours"], errors="coerce")
    frame["probability"] = frame["probability"].astype(float)
    return frame


def read_events(engine: Engine, since: datetime) -> pd.DataFrame:
    """Events that happened at or after ``since`` (those of leads scored before cannot count)."""
    e = outcome_events.c
    names = ["lead_hash", "kind", "occurred_at", "actor", "reason", "amount"]
    if not has_table(engine, "outcome_events"):
        return pd.DataFrame(columns=names)
    query = select(e.lead_hash, e.kind, _raw_time(engine, e.occurred_at), e.actor, e.reason, e.amount).where(
        e.occurred_at >= since
    )
    frame = _frame(engine, query, names)
    frame["occurred_at"] = pd.to_datetime(frame["occurred_at"], utc=True, format="ISO8601")
    frame["amount"] = pd.to_numeric(frame["amount"], errors="coerce")
    return frame
