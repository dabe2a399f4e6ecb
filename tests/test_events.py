"""Outcome events (POST /v1/events, the events table) and SLA tracking (GET /v1/sla/overdue, the gauges)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select

from leadscore.models.scorer import Scorer
from leadscore.models.store import create_events_table, outcome_events, store_events
from leadscore.serving.app import create_app
from leadscore.serving.routes_events import events_engine, overdue, overdue_counts
from leadscore.serving.schemas import EXAMPLE_LEAD
from leadscore.serving.score_log import open_engine, score_log_table
from leadscore.serving.settings import ServingSettings
from leadscore.serving.state import StaticLoader
from tests.factories import make_settings
from tests.postgres import PostgresServer

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def event(**kw: Any) -> dict[str, Any]:
    return {
        "event_id": "crm-1",
        "lead_id": "L-1",
        "kind": "accepted",
        "occurred_at": "2026-03-02T10:00:00Z",
        "actor": "ae-7",
        **kw,
    }


def stored(settings: ServingSettings) -> list[tuple]:
    with sqlite3.connect(settings.home / "scores.db") as conn:
        return conn.execute("select event_key, lead_hash, kind, actor, reason, amount from outcome_events").fetchall()


def test_an_event_is_stored_once_with_the_lead_hashed(client: TestClient, settings: ServingSettings) -> None:
    first = client.post("/v1/events", json=event())
    again = client.post("/v1/events", json=event())
    assert first.status_code == 200, first.text
    assert first.json() == {"received": 1, "stored": 1, "duplicates": 0}
    assert again.json() == {"received": 1, "stored": 0, "duplicates": 1}
    rows = stored(settings)
    hashed = client.app.state.leadscore.hash_lead("L-1")  # the score log's hash: HMAC under the home's key
    assert hashed != hashlib.sha256(b"L-1").hexdigest()
    assert rows == [("crm-1", hashed, "accepted", "ae-7", None, None)]


def test_a_batch_counts_repeated_keys_as_duplicates(client: TestClient, settings: ServingSettings) -> None:
    client.post("/v1/events", json=event(event_id="a"))
    batch = [
        event(event_id="a"),
        event(event_id="b", kind="opportunity_created", amount=12000),
        event(event_id="b", kind="opportunity_created", amount=12000),
        event(event_id="c", kind="rejected", reason="no_budget"),
    ]
    answer = client.post("/v1/events", json={"events": batch})
    assert answer.json() == {"received": 4, "stored": 2, "duplicates": 2}
    assert sorted(r[0] for r in stored(settings)) == ["a", "b", "c"]


def test_events_out_of_order_are_kept_with_their_own_times(client: TestClient, settings: ServingSettings) -> None:
    won = event(event_id="w", kind="closed_won", amount=5000, occurred_at="2026-04-01T00:00:00Z")
    accepted = event(event_id="x", occurred_at="2026-03-02T10:00:00+01:00")
    assert client.post("/v1/events", json=won).status_code == 200
    assert client.post("/v1/events", json=accepted).status_code == 200
    engine = open_engine(settings.resolved_score_log_url)
    with engine.connect() as conn:
        rows = conn.execute(
            select(outcome_events.c.kind, outcome_events.c.occurred_at).order_by(outcome_events.c.occurred_at)
        ).all()
    assert [r.kind for r in rows] == ["accepted", "closed_won"]
    assert rows[0].occurred_at.replace(tzinfo=UTC) == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # stored in UTC


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        pytest.param(event(kind="rejected"), ["body", "reason"], id="rejected-without-reason"),
        pytest.param(event(kind="rejected", reason="bad lead"), ["body", "reason"], id="bad-lead-is-no-reason"),
        pytest.param(event(reason="no_budget"), ["body", "reason"], id="reason-on-an-acceptance"),
        pytest.param(event(kind="won"), ["body", "kind"], id="unknown-kind"),
        pytest.param(event(occurred_at="2026-03-02T10:00:00"), ["body", "occurred_at"], id="naive-time"),
        pytest.param(event(kind="recycled"), ["body", "reengage_on"], id="recycled-without-date"),
        pytest.param(event(kind="opportunity_created"), ["body", "amount"], id="opportunity-without-amount"),
        pytest.param(event(actor="Jane Doe"), ["body", "actor"], id="actor-not-an-id"),
        pytest.param({"events": []}, ["body", "events"], id="empty-batch"),
        pytest.param({"events": [event(), event(lead_id="")]}, ["body", "events", 1, "lead_id"], id="batch-index"),
    ],
)
def test_invalid_events_are_422_naming_the_field(client: TestClient, payload: dict[str, Any], loc: list[Any]) -> None:
    answer = client.post("/v1/events", json=payload)
    assert answer.status_code == 422
    assert [d["loc"] for d in answer.json()["detail"]] == [loc], answer.json()


def test_a_reason_off_the_configured_list_is_422_at_its_index(tmp_path: Path, scorer: Scorer) -> None:
    settings = make_settings(tmp_path, rejection_reasons="not_icp,no_budget")
    with TestClient(create_app(settings, StaticLoader(scorer))) as c:
        batch = [event(event_id="a", kind="rejected", reason="no_budget"), event(kind="rejected", reason="bad lead")]
        answer = c.post("/v1/events", json={"events": batch})
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"] == ["body", "events", 1, "reason"]
        assert c.post("/v1/events", json=batch[0]).status_code == 200
    assert not (settings.home / "scores.db").exists() or len(stored(settings)) == 1


def test_free_text_sent_with_an_event_is_not_stored(client: TestClient, settings: ServingSettings) -> None:
    answer = client.post("/v1/events", json=event(notes="call Jane Doe on +1 555 0100", email="jane@example.com"))
    assert answer.status_code == 200
    dump = "\n".join(sqlite3.connect(settings.home / "scores.db").iterdump())
    assert "Jane" not in dump and "jane@example.com" not in dump and "L-1" not in dump


def test_the_score_log_keeps_the_model_input_without_ids_or_names(
    client: TestClient, settings: ServingSettings
) -> None:
    lead = {**EXAMPLE_LEAD, "lead_id": "secret-lead-42", "email": "x@example.com", "name": "Jane Doe"}
    assert client.post("/v1/score", json=lead).status_code == 200
    deadline = time.monotonic() + 10
    rows: list[tuple] = []
    while not rows and time.monotonic() < deadline:
        time.sleep(0.05)
        with sqlite3.connect(settings.home / "scores.db") as conn:
            rows = conn.execute("select model_input, queue, sla_hours, tier from score_log").fetchall()
    model_input, queue, sla_hours, tier = rows[0]
    record = json.loads(model_input)
    assert record["source"] == EXAMPLE_LEAD["source"]
    assert "secret-lead-42" not in model_input and "Jane" not in model_input and "x@example" not in model_input
    assert queue and tier and (sla_hours is None or sla_hours > 0)


def _score_row(
    request_id: str,
    lead: str,
    scored_at: datetime,
    sla_hours: float | None,
    queue: str = "sdr",
    hasher: Callable[[str], str] = lambda lead: hashlib.sha256(lead.encode()).hexdigest(),
) -> dict:
    return {
        "request_id": request_id,
        "lead_hash": hasher(lead),
        "model_name": "m",
        "model_version": "1",
        "probability": 0.3,
        "score": 60,
        "tier": "B",
        "scored_at": scored_at,
        "queue": queue,
        "sla_hours": sla_hours,
    }


def _event_row(key: str, lead: str, kind: str, at: datetime) -> dict:
    return {
        "event_key": key,
        "lead_hash": hashlib.sha256(lead.encode()).hexdigest(),
        "kind": kind,
        "occurred_at": at,
        "actor": "sdr-1",
        "reason": None,
        "reengage_on": None,
        "amount": None,
        "received_at": at,
    }


def _sla_fixture(url: str) -> Any:
    engine = open_engine(url)
    create_events_table(engine)
    with engine.begin() as conn:
        conn.execute(
            score_log_table.insert(),
            [
                _score_row("due-later", "a", T0, 24),  # due T0+24h: not yet overdue at T0+24h
                _score_row("overdue", "b", T0 - timedelta(hours=2), 1, queue="account-executive"),
                _score_row("touched", "c", T0 - timedelta(hours=30), 24),
                _score_row("touched-before", "d", T0 - timedelta(hours=30), 24),
                _score_row("nurture", "e", T0 - timedelta(days=5), None, queue="nurture"),
                _score_row("rejected", "f", T0 - timedelta(hours=30), 24),
            ],
        )
    store_events(
        engine,
        [
            _event_row("1", "c", "contacted", T0 + timedelta(hours=1)),  # late, but touched
            _event_row("2", "d", "accepted", T0 - timedelta(hours=40)),  # before this score: not a touch of it
            _event_row("3", "f", "rejected", T0 - timedelta(hours=29)),
        ],
    )
    return engine


def _check_overdue(engine: Any) -> None:
    at_due = overdue(engine, T0 + timedelta(hours=24), 24 * 14, 100)
    assert [r["request_id"] for r in at_due] == ["touched-before", "overdue"]  # oldest due first
    assert at_due[1]["queue"] == "account-executive"
    assert at_due[1]["due_at"] == T0 - timedelta(hours=1)
    after_due = overdue(engine, T0 + timedelta(hours=24, seconds=1), 24 * 14, 100)
    assert [r["request_id"] for r in after_due] == ["touched-before", "overdue", "due-later"]
    # the first due across SLA lengths (24 h and 1 h here), however few are asked for
    assert [r["request_id"] for r in overdue(engine, T0 + timedelta(hours=25), 24 * 14, 1)] == ["touched-before"]
    assert [r["request_id"] for r in overdue(engine, T0 + timedelta(hours=25), 24 * 14, 2)] == [
        "touched-before",
        "overdue",
    ]
    # the gauge's counts, by queue, are those of the list
    assert overdue_counts(engine, T0 + timedelta(hours=24), 24 * 14) == {"sdr": 1, "account-executive": 1}
    assert overdue_counts(engine, T0 + timedelta(hours=24, seconds=1), 24 * 14) == {"sdr": 2, "account-executive": 1}
    assert overdue_counts(engine, T0 + timedelta(hours=24), 1) == {}  # nothing scored within the last hour


def test_overdue_lists_untouched_scores_past_their_sla_on_sqlite(tmp_path: Path) -> None:
    _check_overdue(_sla_fixture(f"sqlite:///{tmp_path / 'scores.db'}"))


@pytest.mark.integration
def test_overdue_and_idempotent_events_on_postgresql(postgres: PostgresServer) -> None:
    url = postgres.create_database("loop_events")
    engine = _sla_fixture(url)
    _check_overdue(engine)
    again = [_event_row("1", "c", "contacted", T0), _event_row("9", "c", "meeting_booked", T0)]
    assert store_events(engine, again) == (1, 1)


def test_overdue_route_and_gauges(client: TestClient, settings: ServingSettings) -> None:
    engine = open_engine(settings.resolved_score_log_url)
    now = datetime.now(UTC)
    hash_lead = client.app.state.leadscore.hash_lead  # the API's hash, as an event posted below gets
    with engine.begin() as conn:
        conn.execute(
            score_log_table.insert(),
            [
                _score_row("late", "g", now - timedelta(hours=3), 1, "account-executive", hash_lead),
                _score_row("later", "i", now - timedelta(hours=30), 24, hasher=hash_lead),
                _score_row("fresh", "h", now, 1, hasher=hash_lead),
            ],
        )
    answer = client.get("/v1/sla/overdue").json()
    assert answer["count"] == 2 and [r["request_id"] for r in answer["overdue"]] == ["later", "late"]  # due first
    assert answer["overdue"][1]["tier"] == "B" and answer["overdue"][1]["queue"] == "account-executive"
    first = client.get("/v1/sla/overdue", params={"limit": 1}).json()
    assert first["count"] == 2 and [r["request_id"] for r in first["overdue"]] == ["later"]  # all counted, one listed
    metrics = client.get("/metrics").text
    assert 'leadscore_sla_overdue_leads{queue="account-executive"} 1.0' in metrics
    assert 'leadscore_sla_overdue_leads{queue="sdr"} 1.0' in metrics
    client.post("/v1/events", json=event(lead_id="g", occurred_at=now.isoformat()))
    assert [r["request_id"] for r in client.get("/v1/sla/overdue").json()["overdue"]] == ["later"]


def test_overdue_gauge_is_exported_with_several_workers(
    tmp_path: Path, scorer: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "prom").mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prom"))
    settings = make_settings(tmp_path)
    engine = open_engine(settings.resolved_score_log_url)
    with engine.begin() as conn:
        conn.execute(score_log_table.insert(), [_score_row("late", "g", datetime.now(UTC) - timedelta(hours=3), 1)])
    with TestClient(create_app(settings, StaticLoader(scorer))) as c:
        assert 'leadscore_sla_overdue_leads{queue="sdr"} 1.0' in c.get("/metrics").text


def test_a_scrape_reads_the_overdue_gauge_off_the_event_loop_and_scoring_goes_on(client: TestClient) -> None:
    """The gauge's query is held in the database for as long as the test likes: a lead is scored meanwhile,
    the query ran where no event loop runs, and a second scrape within a few seconds does not query again."""
    engine = events_engine(client.app.state.leadscore)
    started, release = threading.Event(), threading.Event()
    loops: list[bool] = []

    def held(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "score_log" in statement and "sla_hours" in statement:  # the overdue queries
            try:
                asyncio.get_running_loop()
                loops.append(True)
            except RuntimeError:
                loops.append(False)
            started.set()
            release.wait(10)

    sqlalchemy_event.listen(engine, "before_cursor_execute", held)
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            scrape = pool.submit(client.get, "/metrics")
            assert started.wait(10)
            began = time.monotonic()
            assert client.post("/v1/score", json=EXAMPLE_LEAD).status_code == 200
            assert time.monotonic() - began < 5 and not scrape.done()  # scored while the scrape's query is held
            release.set()
            assert "leadscore_sla_overdue_leads" in scrape.result(10).text
        queried = len(loops)
        assert "leadscore_sla_overdue_leads" in client.get("/metrics").text
    finally:
        release.set()
        sqlalchemy_event.remove(engine, "before_cursor_execute", held)
    assert queried >= 1 and not any(loops)  # every query of the scrape ran off the event loop
    assert len(loops) == queried  # the second scrape read the counts the first one left
