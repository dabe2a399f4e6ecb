"""Outcome events in (``POST /v1/events``) and SLA tracking (``GET /v1/sla/overdue``, Prometheus gauges).

Events are stored in the score log's database (:mod:`models.outcomes`), the lead id hashed with the
score log's key. Sending an event again with the same ``event_id`` changes nothing (it is counted as a
duplicate); events may arrive in any order, what happened when is their ``occurred_at``. Fields the
caller adds beyond the schema (notes, names) are dropped unread: no free text is stored.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, status
from fastapi.exceptions import RequestValidationError
from prometheus_client.core import GaugeMetricFamily
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import and_, case, exists, func, select
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from leadscore.models.store import (
    HANDLED_KINDS,
    EventKind,
    create_events_table,
    outcome_events,
    store_events,
)
from leadscore.serving.deps import State, require_key
from leadscore.serving.score_log import open_engine, score_log_table
from leadscore.serving.state import AppState

MAX_EVENTS = 1000
_OPENING = threading.Lock()
Kind = EventKind
_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]*$"

router = APIRouter(prefix="/v1", tags=["outcomes"], dependencies=[Depends(require_key)])


class OutcomeEvent(BaseModel):
    """One thing that happened to a scored lead."""

    model_config = ConfigDict(extra="ignore")

    event_id: str = Field(
        min_length=1, max_length=128, pattern=_ID, description="Idempotency key: the same key is stored once."
    )
    lead_id: str = Field(min_length=1, max_length=200, description="The lead id sent for scoring (stored hashed).")
    kind: Kind
    occurred_at: AwareDatetime = Field(description="When it happened (with a time zone).")
    actor: str = Field(min_length=1, max_length=128, pattern=_ID, description="Rep or queue id.")
    reason: str | None = Field(default=None, max_length=64, description="Rejected: one of LEADSCORE_REJECTION_REASONS.")
    reengage_on: date | None = Field(default=None, description="Recycled: the date to re-engage.")
    amount: float | None = Field(
        default=None, ge=0, allow_inf_nan=False, description="Opportunity created (required) or won: the amount."
    )


class EventBatch(BaseModel):
    events: list[OutcomeEvent] = Field(min_length=1, max_length=MAX_EVENTS)


class EventsStored(BaseModel):
    received: int
    stored: int = Field(description="New events written.")
    duplicates: int = Field(description="Events whose event_id was already stored (nothing changed).")


class OverdueLead(BaseModel):
    request_id: str
    tier: str
    queue: str | None
    scored_at: datetime
    due_at: datetime


class OverdueList(BaseModel):
    as_of: datetime
    count: int = Field(description="Overdue scores in all; `overdue` lists the first `limit` of them.")
    overdue: list[OverdueLead]


def events_engine(state: AppState) -> Engine:
    """The score log's database with the events table (opened once per app)."""
    with _OPENING:
        engine = getattr(state, "events_engine", None)
        if engine is None:
            engine = open_engine(state.settings.resolved_score_log_url)
            create_events_table(engine)
            state.events_engine = engine  # type: ignore[attr-defined]
    return engine


def _parse(body: Any) -> tuple[list[OutcomeEvent], bool]:
    """One event, or ``{"events": [...]}``: the events, and whether it was a batch (422 with the field path)."""
    batch = isinstance(body, dict) and "events" in body
    try:
        if batch:
            return EventBatch.model_validate(body).events, True
        return [OutcomeEvent.model_validate(body)], False
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        ) from None


def _check_kinds(events: Sequence[OutcomeEvent], reasons: Sequence[str], batch: bool) -> None:
    """The fields each kind needs: a listed reason (rejected only), a date (recycled), an amount (opportunity)."""
    errors = []
    for i, e in enumerate(events):
        at = ("body", "events", i) if batch else ("body",)
        if e.kind == "rejected" and e.reason not in reasons:
            what = "a rejected event needs a reason" if e.reason is None else "not a configured reason"
            errors.append(((*at, "reason"), f"{what}: one of {', '.join(reasons)}", e.reason))
        elif e.kind != "rejected" and e.reason is not None:
            errors.append(((*at, "reason"), f"a {e.kind} event takes no reason", e.reason))
        if e.kind == "recycled" and e.reengage_on is None:
            errors.append(((*at, "reengage_on"), "a recycled event needs the date to re-engage", None))
        if e.kind == "opportunity_created" and e.amount is None:
            errors.append(((*at, "amount"), "an opportunity_created event needs an amount", None))
    if errors:
        raise RequestValidationError(
            [{"type": "value_error", "loc": loc, "msg": msg, "input": v} for loc, msg, v in errors]
        )


def _rows(state: AppState, events: Sequence[OutcomeEvent]) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "event_key": e.event_id,
            "lead_hash": state.hash_lead(e.lead_id),
            "kind": e.kind,
            "occurred_at": e.occurred_at.astimezone(UTC),
            "actor": e.actor,
            "reason": e.reason,
            "reengage_on": e.reengage_on,
            "amount": e.amount,
            "received_at": now,
        }
        for e in events
    ]


@router.post(
    "/events",
    response_model=EventsStored,
    status_code=status.HTTP_200_OK,
    responses={401: {"description": "Missing or invalid API key."}, 422: {"description": "Invalid event."}},
)
async def post_events(
    state: State,
    body: Annotated[Any, Body(description='One OutcomeEvent, or {"events": [OutcomeEvent, ...]} (at most 1000).')],
) -> Any:
    """Record outcome events (one, or ``{"events": [...]}``): idempotent by event_id, any order."""
    events, batch = _parse(body)
    _check_kinds(events, state.settings.rejection_reasons, batch)
    rows = _rows(state, events)
    stored, duplicates = await run_in_threadpool(lambda: store_events(events_engine(state), rows))
    return {"received": len(rows), "stored": stored, "duplicates": duplicates}


def _untouched(as_of: datetime, since: datetime) -> Any:
    """Scores with an SLA made since ``since`` (and not after ``as_of``) with no accept, contact, rejection or
    recycling of the lead at or after the score (a touch before the score does not count)."""
    s, e = score_log_table.c, outcome_events.c
    handled = exists().where(and_(e.lead_hash == s.lead_hash, e.kind.in_(HANDLED_KINDS), e.occurred_at >= s.scored_at))
    return and_(s.sla_hours.is_not(None), s.scored_at >= since, s.scored_at <= as_of, ~handled)


def _past_due(sla_hours: float, as_of: datetime) -> Any:
    """A score of ``sla_hours`` whose SLA ended before ``as_of``: ``scored_at + sla_hours < as_of``, written as a
    comparison with a bound time so that every database evaluates it alike."""
    s = score_log_table.c
    return and_(s.sla_hours == sla_hours, s.scored_at < as_of - timedelta(hours=sla_hours))


def _sla_lengths(conn: Any, as_of: datetime, since: datetime) -> list[float]:
    """The SLA lengths (hours) of the scores in the window: a handful (one per routing tier, as configured
    over time)."""
    s = score_log_table.c
    window = and_(s.sla_hours.is_not(None), s.scored_at >= since, s.scored_at <= as_of)
    return [hours for (hours,) in conn.execute(select(s.sla_hours).distinct().where(window))]


def overdue(engine: Engine, as_of: datetime, lookback_hours: float, limit: int) -> list[dict[str, Any]]:
    """The ``limit`` overdue scores due first (oldest due first): request id, tier, queue, scored_at and due_at.
    The database finds and orders them, SLA length by SLA length; at most ``limit`` rows of each come back."""
    since = as_of - timedelta(hours=lookback_hours)
    s = score_log_table.c
    found = []
    with engine.connect() as conn:
        for hours in _sla_lengths(conn, as_of, since):
            query = (
                select(s.request_id, s.tier, s.queue, s.scored_at)
                .where(_untouched(as_of, since), _past_due(hours, as_of))
                .order_by(s.scored_at)
                .limit(limit)
            )
            for row in conn.execute(query):
                scored_at = _aware(row.scored_at)
                found.append(
                    {
                        "request_id": row.request_id,
                        "tier": row.tier,
                        "queue": row.queue,
                        "scored_at": scored_at,
                        "due_at": scored_at + timedelta(hours=hours),
                    }
                )
    found.sort(key=lambda r: r["due_at"])
    return found[:limit]


def overdue_counts(engine: Engine, as_of: datetime, lookback_hours: float) -> dict[str, int]:
    """How many scores :func:`overdue` would list, by queue (``""`` for none), counted by the database."""
    since = as_of - timedelta(hours=lookback_hours)
    s = score_log_table.c
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        lengths = _sla_lengths(conn, as_of, since)
        if not lengths:
            return counts
        due = case(*((_past_due(hours, as_of), 1) for hours in lengths), else_=0)
        query = select(s.queue, func.sum(due)).where(_untouched(as_of, since)).group_by(s.queue)
        for queue, n in conn.execute(query):
            if n:
                counts[queue or ""] = counts.get(queue or "", 0) + int(n)
    return counts


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive datetimes (stored in UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@router.get("/sla/overdue", response_model=OverdueList)
async def get_overdue(
    state: State,
    lookback_hours: Annotated[float, Query(gt=0, le=24 * 90, description="Look at scores this recent.")] = 24 * 14,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> Any:
    """Scored leads past their tier's SLA with no touch yet: request id, tier, queue and due time."""
    now = datetime.now(UTC)
    engine = events_engine(state)

    def read() -> tuple[list[dict[str, Any]], int]:
        return overdue(engine, now, lookback_hours, limit), sum(overdue_counts(engine, now, lookback_hours).values())

    found, count = await run_in_threadpool(read)
    return {"as_of": now, "count": count, "overdue": found}


class OverdueCollector:
    """``leadscore_sla_overdue_leads{queue}``: overdue scores of the last 14 days by queue.

    Read from the database at a scrape, at most once every ``max_age`` seconds (scrapes in between, and
    scrapes that come together, share one query). ``/metrics`` collects on a worker thread, so the query
    never runs on the event loop that scores.
    """

    def __init__(self, state_of: Any, lookback_hours: float = 24 * 14, max_age: float = 5.0) -> None:
        self.state_of, self.lookback_hours, self.max_age = state_of, lookback_hours, max_age
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._read_at = -math.inf

    def describe(self) -> list[Any]:
        return []

    def counts(self, state: AppState) -> dict[str, int]:
        """Overdue scores by queue, read again when the last reading is ``max_age`` seconds old."""
        with self._lock:
            if time.monotonic() - self._read_at >= self.max_age:
                counts = overdue_counts(events_engine(state), datetime.now(UTC), self.lookback_hours)
                self._counts, self._read_at = counts, time.monotonic()
            return self._counts

    def collect(self) -> Any:
        gauge = GaugeMetricFamily(
            "leadscore_sla_overdue_leads", "Scored leads past their SLA without a touch, by queue.", labels=["queue"]
        )
        state = self.state_of()
        if state is not None:
            for queue, n in sorted(self.counts(state).items()):
                gauge.add_metric([queue], n)
        yield gauge


def install(app: Any) -> None:
    """Add the routes and the overdue gauges to ``app``."""
    app.include_router(router)
    app.state.metrics.add_scrape_collector(OverdueCollector(lambda: getattr(app.state, "leadscore", None)))
