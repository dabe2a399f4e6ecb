"""Reading the loop report's rows: the score log and the outcome events, by table name (reflection).

The report never imports the API's code: the score log's table is reflected from the database, the
events table is :data:`leadscore.models.store.outcome_events`.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
from sqlalchemy import MetaData, Table, select
from sqlalchemy.engine import Engine

from leadscore.models.store import has_table, outcome_events

SCORE_COLUMNS = ("request_id", "lead_hash", "probability", "score", "tier", "queue", "sla_hours", "scored_at")


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
    query = select(*(table.c[n] for n in names)).where(table.c.scored_at >= since, table.c.scored_at < until)
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=names)
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
    query = select(e.lead_hash, e.kind, e.occurred_at, e.actor, e.reason, e.amount).where(e.occurred_at >= since)
    with engine.connect() as conn:
        frame = pd.DataFrame(conn.execute(query).all(), columns=names)
    frame["amount"] = pd.to_numeric(frame["amount"], errors="coerce")
    return frame
