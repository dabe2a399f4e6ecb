"""The scoring API through the app, with an in-memory fitted artifact (no network, no registry)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import sqlite3
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from leadscore.features.schema import LeadRecord
from leadscore.models.scorer import Scorer
from leadscore.serving.app import create_app
from leadscore.serving.deps import BAD_KEY, NOT_READY, uuid7_hex
from leadscore.serving.schemas import EXAMPLE_LEAD, BatchResponse, ModelInfo, ScoreResponse
from leadscore.serving.settings import ServingSettings
from leadscore.serving.state import LoadedModel, StaticLoader
from leadscore.training.train import FitResult
from tests.factories import make_settings


def lead(**kw: Any) -> dict[str, Any]:
    return {**copy.deepcopy(EXAMPLE_LEAD), **kw}


def score_log_rows(settings: ServingSettings) -> list[tuple]:
    db = settings.home / "scores.db"
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "select request_id, lead_hash, model_name, model_version, probability, score, tier, scored_at from score_log"
        ).fetchall()


def test_score_answers_the_contract(client: TestClient) -> None:
    response = client.post("/v1/score", json=lead())
    assert response.status_code == 200, response.text
    body = ScoreResponse.model_validate(response.json())
    assert body.lead_id == EXAMPLE_LEAD["lead_id"]
    assert 0 <= body.probability <= 1 and 0 <= body.score <= 100
    assert body.tier in {"A", "B", "C", "D"} and body.queue
    assert body.model.name == "lead-scoring" and body.model.version == "7"
    assert body.request_id and body.scored_at.tzinfo is not None
    assert body.reasons is not None
    assert (
        1 <= len(body.reasons.positive) + len(body.reasons.negative)
        and len(body.reasons.positive) <= 3
        and len(body.reasons.negative) <= 3
    )
    for reason in body.reasons.positive:
        assert reason.contribution > 0 and reason.label
    for reason in body.reasons.negative:
        assert reason.contribution < 0 and reason.label
    assert "email" not in response.text and "Jane" not in response.text


def test_request_ids_are_the_callers_short_token_or_new_and_distinct(client: TestClient) -> None:
    made = {client.post("/v1/score", json=lead()).json()["request_id"] for _ in range(20)}
    assert len(made) == 20 and all(len(r) == 32 and int(r, 16) >= 0 for r in made)
    assert (
        client.post("/v1/score", json=lead(), headers={"X-Request-Id": "crm-42_a"}).json()["request_id"] == "crm-42_a"
    )
    for bad in ("x" * 65, "a b", "a/b"):
        assert client.post("/v1/score", json=lead(), headers={"X-Request-Id": bad}).json()["request_id"] not in made | {
            bad
        }


def test_new_request_ids_are_uuid7_in_time_order() -> None:
    """Time-ordered ids keep the score log's request_id index appending (README: score log)."""
    moments = [1_700_000_000_000_000_000 + k * 1_000_000 for k in range(50)]  # one millisecond apart
    ids = [uuid7_hex(ns) for ns in moments]
    assert ids == sorted(ids) and len(set(ids)) == 50
    for made, ns in zip(ids, moments, strict=True):
        parsed = uuid.UUID(made)
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122 and len(made) == 32
        assert int(made[:12], 16) == ns // 1_000_000
    before = time.time_ns() // 1_000_000
    assert before <= int(uuid7_hex()[:12], 16) <= time.time_ns() // 1_000_000


def test_sla_and_queue_follow_the_models_routing_policy(client: TestClient, fitted: FitResult) -> None:
    body = client.post("/v1/score", json=lead()).json()
    tier = {t.name: t for t in fitted.artifact.routing.tiers}[body["tier"]]
    assert (body["queue"], body["sla_hours"]) == (tier.queue, tier.sla_hours)


def test_the_same_lead_gets_the_same_answer_as_batch_scoring_code(client: TestClient, scorer: Scorer) -> None:
    from datetime import UTC, datetime

    from leadscore.features.online import lead_feature_record

    body = client.post("/v1/score", json=lead()).json()
    expected = scorer.score_records([lead_feature_record(LeadRecord.model_validate(lead()), datetime.now(UTC))])[0]
    assert body["probability"] == pytest.approx(expected["probability"], abs=1e-3)  # engagement ages by seconds only


def test_explain_false_leaves_reasons_out(client: TestClient) -> None:
    body = client.post("/v1/score?explain=false", json=lead()).json()
    assert body["reasons"] is None and body["tier"]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"lead_id": "only-an-id"}, id="only-lead-id"),
        pytest.param(
            {"lead_id": "x", "source": "carrier-pigeon", "industry": "space-mining", "country": "ZZ"},
            id="unknown-categories",
        ),
        pytest.param(
            {"lead_id": "x", "activities": [{"type": "telepathy", "occurred_at": "2026-09-01T00:00:00"}]},
            id="unknown-activity",
        ),
        pytest.param(
            {"lead_id": "x", "engagement": {"pricing_page_view_7d": 3, "not_a_feature": 1}}, id="engagement-dict"
        ),
        pytest.param({"lead_id": "x", "attributes": {"anything": "goes", "n": 3}}, id="attributes"),
    ],
)
def test_missing_fields_and_unknown_categories_are_scored_not_rejected(
    client: TestClient, payload: dict[str, Any]
) -> None:
    response = client.post("/v1/score", json=payload)
    assert response.status_code == 200, response.text
    assert response.json()["lead_id"] == payload["lead_id"]


@pytest.mark.parametrize(
    ("payload", "loc"),
    [
        pytest.param({"source": "inbound"}, ["body", "lead_id"], id="no-lead-id"),
        pytest.param({"lead_id": "x", "employees": -5}, ["body", "employees"], id="negative-employees"),
        pytest.param({"lead_id": "x", "employees": "many"}, ["body", "employees"], id="text-number"),
        pytest.param({"lead_id": "x", "favourite_colour": "red"}, ["body", "<unknown field>"], id="unknown-field"),
        pytest.param(
            {"lead_id": "x", "activities": [{"type": "web_visit", "occurred_at": "soon"}]},
            ["body", "activities", 0, "occurred_at"],
            id="bad-date",
        ),
        pytest.param(
            {"lead_id": "x", "activities": [{"type": "web_visit", "occurred_at": "0001-01-01T00:00:00"}]},
            ["body", "activities", 0, "occurred_at"],
            id="date-out-of-range",
        ),
        pytest.param(
            {"lead_id": "x", "activities": [{"type": "web_visit", "occurred_at": "1900-01-01T03:00:00+05:00"}]},
            ["body", "activities", 0, "occurred_at"],
            id="date-before-1900-in-utc",
        ),
        pytest.param(
            {"lead_id": "x", "activities": [{"type": "web_visit", "occurred_at": "2199-12-31T23:00:00-05:00"}]},
            ["body", "activities", 0, "occurred_at"],
            id="date-after-2200-in-utc",
        ),
    ],
)
def test_invalid_leads_get_422_with_the_field_path(client: TestClient, payload: dict[str, Any], loc: list[Any]) -> None:
    response = client.post("/v1/score", json=payload)
    assert response.status_code == 422
    assert loc in [e["loc"] for e in response.json()["detail"]]
    assert all("input" not in e for e in response.json()["detail"])  # the caller's data is not echoed


def test_malformed_json_is_422_not_500(client: TestClient) -> None:
    response = client.post("/v1/score", content=b'{"lead_id": ', headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_a_body_not_declared_as_json_is_415(client: TestClient) -> None:
    """Only ``application/json`` is read (a browser's cross-site form post, or a body without a content type,
    cannot score leads); the refusal comes before the body is read."""
    body = json.dumps({"lead_id": "x"}).encode()
    for content_type in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        assert client.post("/v1/score", content=body, headers={"content-type": content_type}).status_code == 200
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "", None):
        headers = {} if content_type is None else {"content-type": content_type}
        response = client.post("/v1/score/batch", content=body, headers=headers)
        assert response.status_code == 415, content_type
        assert response.json() == {"detail": "content-type must be application/json"}


def test_batch_answers_in_order_with_one_version(client: TestClient) -> None:
    leads = [lead(lead_id=f"L-{i}", employees=10 * (i + 1)) for i in range(40)]
    response = client.post("/v1/score/batch", json={"leads": leads})
    assert response.status_code == 200, response.text
    body = BatchResponse.model_validate(response.json())
    assert [r.lead_id for r in body.results] == [f"L-{i}" for i in range(40)]
    assert {r.model.version for r in body.results} == {body.model.version}
    single = client.post("/v1/score", json=leads[5]).json()
    assert body.results[5].probability == pytest.approx(single["probability"], abs=1e-3)


def test_a_big_answer_is_sent_in_slices_with_the_loop_turning_between() -> None:
    """PacedJSON (a batch's answer): the whole body, in order, under one Content-Length, in slices of at most
    SLICE_BYTES; other work waiting on the event loop runs between two slices."""
    import asyncio

    from leadscore.serving.asgi import SLICE_BYTES, PacedJSON

    body = bytes(range(256)) * (SLICE_BYTES * 3 // 256 + 7)
    sent: list[dict[str, Any]] = []
    between: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def other_work() -> None:
        while len(sent) < 2:
            await asyncio.sleep(0)
        between.append(len(sent))

    async def main() -> None:
        waiting = asyncio.ensure_future(other_work())
        await PacedJSON(body)({"type": "http"}, None, send)
        await waiting

    asyncio.run(main())
    start, *slices = sent
    assert dict(start["headers"])[b"content-length"] == str(len(body)).encode()
    assert dict(start["headers"])[b"content-type"] == b"application/json"
    assert b"".join(m["body"] for m in slices) == body
    assert len(slices) == 4 and all(len(m["body"]) <= SLICE_BYTES for m in slices)
    assert [m["more_body"] for m in slices] == [True, True, True, False]
    assert between and between[0] < len(sent)  # it ran before the last slice was sent
    empty: list[dict[str, Any]] = []

    async def collect(message: dict[str, Any]) -> None:
        empty.append(message)

    asyncio.run(PacedJSON(b"")({"type": "http"}, None, collect))
    assert [m.get("body") for m in empty[1:]] == [b""] and empty[-1]["more_body"] is False


@pytest.mark.parametrize("fsync", [False, True])
def test_a_batchs_segment_is_as_durable_as_the_fsync_setting_says_before_the_batch_is_answered(
    tmp_path: Path, scorer: Scorer, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    """The route gives the batch worker the segment it reserved and ``LEADSCORE_SCORE_LOG_FSYNC``; before it
    answers, the written segment joins the spool's durability: its folder entry fsynced at once with the
    setting on, else queued with the sealed segments for the next sync."""
    from leadscore.serving import spool

    settings = make_settings(tmp_path, score_log_fsync=fsync, score_log_flush_seconds=60.0)  # no sync by age
    with TestClient(create_app(settings, StaticLoader(scorer))) as c:
        state = c.app.state.leadscore
        given: list[tuple[Path, bool]] = []
        synced: list[Path] = []
        score, fsync_folder = state.batch_worker.score, spool.fsync_folder

        def scored(*args: Any) -> Any:
            given.append(args[-1])
            return score(*args)

        def folder_synced(folder: Path) -> None:
            synced.append(folder)
            fsync_folder(folder)

        monkeypatch.setattr(state.batch_worker, "score", scored)
        monkeypatch.setattr(spool, "fsync_folder", folder_synced)
        response = c.post("/v1/score/batch", json={"leads": [lead(lead_id=f"L-{i}") for i in range(3)]})
        assert response.status_code == 200, response.text
        [(part, told)] = given
        assert told is fsync and part.suffix == ".part" and part.with_suffix(".ready").exists()
        queued = part.with_suffix(".ready") in state.score_log.spool._pending_sync
        assert (queued, synced == [part.parent]) == ((False, True) if fsync else (True, False))


def test_batch_path_of_an_invalid_lead_names_its_index(client: TestClient) -> None:
    response = client.post("/v1/score/batch", json={"leads": [lead(), {"lead_id": ""}]})
    assert response.status_code == 422
    assert ["body", "leads", 1, "lead_id"] in [e["loc"] for e in response.json()["detail"]]


@pytest.mark.parametrize(
    "moment", ["1900-01-01T00:00:00-05:00", "1900-01-01T00:00:00", "2199-12-31T23:59:59Z", "2199-12-31T23:00:00"]
)
def test_activity_times_just_inside_the_range_are_scored(client: TestClient, moment: str) -> None:
    response = client.post("/v1/score", json=lead(activities=[{"type": "web_visit", "occurred_at": moment}]))
    assert response.status_code == 200, response.text


def test_batch_path_of_an_activity_time_out_of_range_names_both_indexes(client: TestClient) -> None:
    bad = lead(
        activities=[
            {"type": "web_visit", "occurred_at": "2026-01-01T00:00:00Z"},
            {"type": "web_visit", "occurred_at": "1850-06-01T00:00:00Z"},
        ]
    )
    response = client.post("/v1/score/batch", json={"leads": [lead(), bad]})
    assert response.status_code == 422
    assert ["body", "leads", 1, "activities", 1, "occurred_at"] in [e["loc"] for e in response.json()["detail"]]


def test_batch_over_the_limit_is_413(tmp_path: Path, scorer: Scorer) -> None:
    with TestClient(create_app(make_settings(tmp_path, max_batch=5), StaticLoader(scorer))) as c:
        assert c.post("/v1/score/batch", json={"leads": [{"lead_id": str(i)} for i in range(5)]}).status_code == 200
        response = c.post("/v1/score/batch", json={"leads": [{"lead_id": str(i)} for i in range(6)]})
    assert response.status_code == 413
    assert response.json()["detail"] == "batch of 6 leads exceeds the limit of 5"


def test_oversized_body_is_413_by_content_length_and_by_stream(tmp_path: Path, scorer: Scorer) -> None:
    big = json.dumps(
        {"lead_id": "x", "campaign": "y" * 150, "attributes": {f"k{i}": "v" * 50 for i in range(100)}}
    ).encode()
    assert len(big) > 4096
    with TestClient(create_app(make_settings(tmp_path, max_body_bytes=4096), StaticLoader(scorer))) as c:
        declared = c.post("/v1/score", content=big, headers={"content-type": "application/json"})

        def chunks():  # no Content-Length: the streamed size is what counts
            for i in range(0, len(big), 1000):
                yield big[i : i + 1000]

        streamed = c.post("/v1/score", content=chunks(), headers={"content-type": "application/json"})
        small = c.post("/v1/score", json={"lead_id": "x"})
    assert declared.status_code == 413 and streamed.status_code == 413
    assert declared.json()["detail"].startswith("request body too large")
    assert streamed.json()["detail"].startswith("request body too large")
    assert small.status_code == 200


def test_api_keys_are_required_when_configured(tmp_path: Path, scorer: Scorer) -> None:
    with TestClient(create_app(make_settings(tmp_path, api_keys="k1,k2"), StaticLoader(scorer))) as c:
        missing = c.post("/v1/score", json={"lead_id": "x"})
        wrong = c.post("/v1/score", json={"lead_id": "x"}, headers={"X-API-Key": "nope"})
        header = c.post("/v1/score", json={"lead_id": "x"}, headers={"X-API-Key": "k2"})
        bearer = c.post("/v1/score", json={"lead_id": "x"}, headers={"Authorization": "Bearer k1"})
        model = c.get("/v1/model")
        health = c.get("/healthz")
    assert missing.status_code == wrong.status_code == model.status_code == 401
    assert missing.json() == {"detail": BAD_KEY}
    assert header.status_code == bearer.status_code == 200
    assert health.status_code == 200


class SlowLoader(StaticLoader):
    """Fails the first load (no model yet), then succeeds on the next attempt."""

    def __init__(self, artifact: Any) -> None:
        super().__init__(artifact, "lead-scoring", "3")
        self.calls = 0

    def load_initial(self) -> LoadedModel:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("registry down")
        return super().load_initial()


def test_startup_moves_what_it_loaded_out_of_the_collectors_sight(settings: ServingSettings, scorer: Scorer) -> None:
    """A full garbage collection walks only what requests made since, not the libraries and the model."""
    import gc

    gc.unfreeze()
    try:
        with TestClient(create_app(settings, StaticLoader(scorer, "lead-scoring", "7"))) as started:
            assert started.get("/readyz").status_code == 200
            assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()


def test_503_until_a_model_is_ready(tmp_path: Path, scorer: Scorer) -> None:
    loader = SlowLoader(scorer)
    with TestClient(create_app(make_settings(tmp_path), loader)) as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        scored = c.post("/v1/score", json={"lead_id": "x"})
        assert ready.status_code == 503 and ready.json()["status"].startswith(NOT_READY)
        assert ready.json()["status"] == f"{NOT_READY}: connection_refused"  # why, as a kind only
        assert scored.status_code == 503 and scored.json() == {"detail": NOT_READY}
        c.app.state.leadscore.check_for_new_version()  # what the poller does
        assert c.get("/readyz").json()["status"] == "ready"
        assert c.post("/v1/score", json={"lead_id": "x"}).status_code == 200


def test_model_endpoint_describes_the_serving_version(client: TestClient, fitted: FitResult) -> None:
    body = ModelInfo.model_validate(client.get("/v1/model").json())
    assert (body.name, body.version, body.alias, body.source) == ("lead-scoring", "7", "champion", "static")
    assert body.trained_at == fitted.artifact.metadata["trained_at"]
    assert body.training_window and body.holdout_window
    assert 0.5 < body.metrics["roc_auc"] <= 1
    assert [t.name for t in body.tiers] == ["A", "B", "C", "D"]
    assert body.tiers[0].min_probability >= body.tiers[1].min_probability
    assert body.feature_columns == fitted.artifact.metadata["feature_columns"]
    assert body.last_reload_error is None


def test_metrics_count_requests_tiers_and_model(client: TestClient) -> None:
    tier = client.post("/v1/score", json=lead()).json()["tier"]
    client.post("/v1/score", json={})
    text = client.get("/metrics").text
    assert 'leadscore_http_requests_total{method="POST",route="/v1/score",status="200"} 1.0' in text
    assert 'leadscore_http_requests_total{method="POST",route="/v1/score",status="422"} 1.0' in text
    assert 'leadscore_http_request_duration_seconds_count{route="/v1/score",status="200"} 1.0' in text
    assert f'leadscore_scores_total{{tier="{tier}"}} 1.0' in text
    assert 'leadscore_model_info{name="lead-scoring",source="static",version="7"} 1.0' in text


def test_metrics_count_a_batchs_scores_by_tier(client: TestClient) -> None:
    leads = [{"lead_id": f"L-{i}"} for i in range(10)] + [lead(lead_id=f"M-{i}") for i in range(20)]
    answers = client.post("/v1/score/batch", json={"leads": leads}).json()["results"]
    expected = Counter(answer["tier"] for answer in answers)
    assert len(expected) > 1, "the batch spans several tiers"
    text = client.get("/metrics").text
    for tier, count in expected.items():
        assert f'leadscore_scores_total{{tier="{tier}"}} {float(count)}' in text


def test_score_log_holds_hashed_ids_only(settings: ServingSettings, client: TestClient) -> None:
    secret_id = "lead-42@acme.example"
    first = client.post("/v1/score", json=lead(lead_id=secret_id), headers={"X-Request-ID": "req-1"}).json()
    client.post("/v1/score/batch", json={"leads": [lead(lead_id=f"b{i}") for i in range(3)]})
    deadline = time.monotonic() + 5
    while len(rows := score_log_rows(settings)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(rows) == 4
    request_id, lead_hash, name, version, probability, score, tier, _scored_at = rows[0]
    # Without LEADSCORE_LEAD_HASH_KEY, a key made once in the home hashes lead ids and callers' request ids.
    key = (settings.home / "lead-hash.key").read_bytes()
    assert first["request_id"] == "req-1" and request_id == hmac.new(key, b"req-1", hashlib.sha256).hexdigest()
    assert lead_hash == hmac.new(key, secret_id.encode(), hashlib.sha256).hexdigest()
    assert lead_hash != hashlib.sha256(secret_id.encode()).hexdigest()
    assert (name, version, tier, score) == ("lead-scoring", "7", first["tier"], first["score"])
    assert probability == pytest.approx(first["probability"])
    raw = (settings.home / "scores.db").read_bytes()
    for secret in (secret_id.encode(), b"jane.doe@example.com", b"Jane Doe", b"L-2026-000123"):
        assert secret not in raw


def test_score_log_is_flushed_on_shutdown(tmp_path: Path, scorer: Scorer) -> None:
    settings = make_settings(
        tmp_path, score_log_flush_seconds=60, score_log_batch_rows=100_000
    )  # nothing flushes on its own
    with TestClient(create_app(settings, StaticLoader(scorer))) as c:
        for i in range(5):
            c.post("/v1/score", json={"lead_id": f"x{i}"})
        c.post("/v1/score/batch", json={"leads": [{"lead_id": f"y{i}"} for i in range(50)]})
        assert not (settings.home / "scores.db").exists() or len(score_log_rows(settings)) == 0
    assert len(score_log_rows(settings)) == 55


def test_no_lead_data_in_server_logs(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    client.post("/v1/score", json=lead(lead_id="secret-lead-id"))
    client.post("/v1/score", json={"lead_id": "secret-lead-id", "employees": -1})
    assert "secret-lead-id" not in caplog.text and "jane" not in caplog.text.lower()


def test_a_server_fault_is_a_stable_500_without_the_leads_data(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import leadscore.serving.batcher as batcher
    from leadscore.serving.batch import BatchWorker

    def broken(model: Any, leads: list[LeadRecord], *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"boom with {leads[0].lead_id}")  # the message quotes caller data

    def broken_batch(self: BatchWorker, body: bytes, *args: Any) -> Any:
        raise RuntimeError(f"boom with {body.decode()}")

    monkeypatch.setattr(batcher, "score_leads", broken)
    monkeypatch.setattr(BatchWorker, "score", broken_batch)
    for path, payload in (
        ("/v1/score", {"lead_id": "secret-lead-id"}),
        ("/v1/score/batch", {"leads": [{"lead_id": "secret-lead-id"}]}),
    ):
        response = client.post(path, json=payload)
        assert response.status_code == 500 and response.json() == {"detail": "internal server error"}
    assert "RuntimeError" in caplog.text and "secret-lead-id" not in caplog.text
    metrics = client.get("/metrics").text
    assert 'leadscore_http_requests_total{method="POST",route="/v1/score",status="500"} 1.0' in metrics


def test_concurrent_requests_see_one_version_each_across_a_swap(client: TestClient, scorer: Scorer) -> None:
    state = client.app.state.leadscore
    seen: list[str] = []

    def hammer() -> None:
        for _ in range(30):
            r = client.post("/v1/score", json={"lead_id": "x"})
            assert r.status_code == 200
            seen.append(r.json()["model"]["version"])

    thread = threading.Thread(target=hammer)
    thread.start()
    state.install(LoadedModel(scorer, "lead-scoring", "8", "registry"))
    thread.join()
    assert set(seen) <= {"7", "8"}
    assert client.post("/v1/score", json={"lead_id": "x"}).json()["model"]["version"] == "8"


def test_the_openapi_document_carries_working_examples_for_each_scoring_route(client: TestClient) -> None:
    """README: /docs has a complete example lead for each scoring route, and a routing team can send it as is."""
    doc = client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert set(doc["components"]["securitySchemes"]) == {"APIKeyHeader"}
    assert "Bearer" in doc["components"]["securitySchemes"]["APIKeyHeader"]["description"]
    for path, answer in (("/v1/score", "ScoreResponse"), ("/v1/score/batch", "BatchResponse")):
        operation = doc["paths"][path]["post"]
        body = operation["requestBody"]["content"]["application/json"]
        assert body["schema"]["$ref"].removeprefix("#/components/schemas/") in schemas
        assert [p["name"] for p in operation["parameters"]] == ["explain"]
        assert "X-Request-Id" in operation["description"]
        assert operation["security"] == [{"APIKeyHeader": []}]
        responses = operation["responses"]
        assert responses["200"]["content"]["application/json"]["schema"]["$ref"] == f"#/components/schemas/{answer}"
        for status in ("401", "413", "422", "503"):
            ref = responses[status]["content"]["application/json"]["schema"]["$ref"]
            assert ref.removeprefix("#/components/schemas/") in schemas and responses[status]["description"]
        for example in body["examples"].values():
            response = client.post(path, json=example["value"])
            assert response.status_code == 200, (path, response.text)
    full = doc["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]["examples"]["full"]["value"]
    assert full["activities"] and full["industry"]  # complete: firmographics and engagement
    batch_examples = doc["paths"]["/v1/score/batch"]["post"]["requestBody"]["content"]["application/json"]["examples"]
    assert set(batch_examples) == {"two"}


def test_error_answers_match_their_documented_schemas(tmp_path: Path, scorer: Scorer) -> None:
    """401, 413, 422 and 503 answer the bodies the OpenAPI document names for them."""
    from leadscore.serving.schemas import ErrorDetail, ValidationErrors

    loader = SlowLoader(scorer)  # no model until the first poll
    with TestClient(create_app(make_settings(tmp_path, api_keys="k", max_batch=1), loader)) as c:
        key = {"X-API-Key": "k"}
        unauthorized = c.post("/v1/score", json=lead())
        not_ready = c.post("/v1/score", json=lead(), headers=key)
        c.app.state.leadscore.check_for_new_version()
        too_many = c.post("/v1/score/batch", json={"leads": [lead(), lead()]}, headers=key)
        invalid = c.post("/v1/score", json={"lead_id": 3}, headers=key)
    assert [r.status_code for r in (unauthorized, not_ready, too_many, invalid)] == [401, 503, 413, 422]
    assert unauthorized.headers["www-authenticate"] == "Bearer"
    assert not_ready.headers["retry-after"] == "5"
    for response in (unauthorized, not_ready, too_many):
        ErrorDetail.model_validate(response.json())
    assert ValidationErrors.model_validate(invalid.json()).detail[0].loc == ["body", "lead_id"]


def test_the_scoring_dependencies_can_be_overridden(client: TestClient, scorer: Scorer) -> None:
    """The scoring routes' context (key check, serving model, request id) and the other routes' key check and
    model are FastAPI dependencies: a test replaces them."""
    from leadscore.serving import deps

    app = client.app
    stand_in = LoadedModel(scorer, "stand-in", "42", "static")

    async def refuse() -> None:
        raise HTTPException(403, detail="refused by the override")

    app.dependency_overrides[deps.scoring_access] = lambda: deps.ScoringContext(stand_in, "fixed-id")
    app.dependency_overrides[deps.get_model] = lambda: stand_in
    try:
        single = client.post("/v1/score", json=lead())
        batch = client.post("/v1/score/batch", json={"leads": [lead()]})
        info = client.get("/v1/model")
        app.dependency_overrides[deps.scoring_access] = refuse
        app.dependency_overrides[deps.require_key] = refuse
        refused = client.post("/v1/score", json=lead())
        refused_info = client.get("/v1/model")
    finally:
        app.dependency_overrides.clear()
    assert single.json()["model"] == {"name": "stand-in", "version": "42"} and single.json()["request_id"] == "fixed-id"
    assert batch.json()["model"] == {"name": "stand-in", "version": "42"} and batch.json()["request_id"] == "fixed-id"
    assert batch.json()["results"][0]["model"]["version"] == "42"
    assert info.json()["version"] == "42"
    for response in (refused, refused_info):
        assert response.status_code == 403 and response.json() == {"detail": "refused by the override"}
    assert client.post("/v1/score", json=lead()).json()["model"]["version"] == "7"  # overrides gone


def test_answers_are_written_by_orjson_with_utc_times_ending_in_z(client: TestClient) -> None:
    response = client.post("/v1/score", json=lead())
    assert response.headers["content-type"] == "application/json"
    scored_at = response.json()["scored_at"]
    assert scored_at.endswith("Z") and "+00:00" not in scored_at
    assert b'"scored_at":"' in response.content  # compact: no spaces after separators


def test_a_client_that_disconnects_mid_body_is_counted_as_499_not_500(client: TestClient) -> None:
    """Nobody is left to answer: nothing is sent, and the metrics do not count a server error."""
    import asyncio

    app = client.app
    messages = [
        {"type": "http.request", "body": b'{"lead_id": ', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/score",
        "raw_path": b"/v1/score",
        "root_path": "",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"host", b"test")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    asyncio.run(app(scope, receive, send))
    assert sent == []
    text = client.get("/metrics").text
    assert 'leadscore_http_requests_total{method="POST",route="/v1/score",status="499"} 1.0' in text
    assert 'status="500"' not in text and 'status="400"' not in text


def test_scoring_routes_answer_only_post(client: TestClient) -> None:
    response = client.get("/v1/score")
    assert response.status_code == 405 and response.json() == {"detail": "Method Not Allowed"}


def test_scoring_routes_answer_behind_a_path_prefix_and_count_in_metrics(
    settings: ServingSettings, scorer: Scorer
) -> None:
    """Behind a proxy's prefix (root_path) the scoring routes answer, and metrics name them by route template."""
    with TestClient(create_app(settings, StaticLoader(scorer, "lead-scoring", "7")), root_path="/api") as prefixed:
        assert prefixed.post("/api/v1/score", json=lead()).status_code == 200
        assert prefixed.post("/api/v1/score/batch", json={"leads": [lead()]}).status_code == 200
        assert prefixed.get("/api/v1/score").status_code == 405
        assert prefixed.post("/api/v1/score", content=b"{").status_code == 422
        metrics = prefixed.get("/api/metrics").text
    assert 'leadscore_http_requests_total{method="POST",route="/v1/score",status="200"} 1.0' in metrics
    assert 'leadscore_http_requests_total{method="POST",route="/v1/score",status="422"} 1.0' in metrics
    assert 'leadscore_http_requests_total{method="POST",route="/v1/score/batch",status="200"} 1.0' in metrics


def test_explain_flag_is_validated_like_any_query_parameter(client: TestClient) -> None:
    assert client.post("/v1/score?explain=no", json=lead()).json()["reasons"] is None
    response = client.post("/v1/score?explain=maybe", json=lead())
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["query", "explain"]


def test_concurrent_single_leads_are_scored_together_with_their_own_answers(
    settings: ServingSettings, scorer: Scorer
) -> None:
    """Micro-batching: eight requests in flight at once take one scoring call, and each gets what it gets alone."""
    import asyncio

    import httpx

    leads = [lead(lead_id=f"L-{i}", employees=10 * (i + 1), source=["inbound", "webinar"][i % 2]) for i in range(8)]
    app = create_app(settings, StaticLoader(scorer, "lead-scoring", "7"))

    async def run() -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                together = await asyncio.gather(*(client.post("/v1/score", json=x) for x in leads))
                alone = [await client.post("/v1/score", json=x) for x in leads]
                metrics = (await client.get("/metrics")).text
        return [r.json() for r in together], [r.json() for r in alone], metrics

    together, alone, metrics = asyncio.run(run())
    assert [a["lead_id"] for a in together] == [x["lead_id"] for x in leads]

    def factors(answer: dict[str, Any]) -> list[tuple[str, float]]:  # values like "days since" move with the clock
        return [(f["feature"], f["contribution"]) for side in ("positive", "negative") for f in answer["reasons"][side]]

    for a, b in zip(together, alone, strict=True):
        assert (a["probability"], a["tier"], factors(a)) == (b["probability"], b["tier"], factors(b))
    assert 'leadscore_single_lead_batch_size_bucket{le="8.0"} 9.0' in metrics  # 1 batch of 8 and 8 of 1
    assert "leadscore_single_lead_batch_size_count 9.0" in metrics


def test_lone_requests_are_scored_at_once_until_two_meet_in_one_turn(scorer: Scorer) -> None:
    """After LONE_BATCHES batches of one, a request is answered within its own turn of the loop (no extra turn);
    two requests in one turn bring batching back."""
    import asyncio

    from leadscore.serving.batcher import LONE_BATCHES, MicroBatcher

    model = LoadedModel(scorer, "lead-scoring", "7", "registry")
    leads = [LeadRecord.model_validate(lead(lead_id=f"L-{i}", employees=10 * (i + 1))) for i in range(LONE_BATCHES + 6)]
    sizes: list[int] = []

    async def run() -> tuple[Any, Any]:
        batcher = MicroBatcher(lambda lead_id: lead_id, sizes.append)
        for i in range(LONE_BATCHES):
            await batcher.score(model, leads[i], f"r{i}", True)
        assert not batcher.batching and sizes == [1] * LONE_BATCHES
        step = batcher.score(model, leads[LONE_BATCHES], "at-once", True)
        with pytest.raises(StopIteration) as done:  # finished without waiting for the loop
            step.send(None)
        await asyncio.sleep(0)
        pair = await asyncio.gather(
            *(batcher.score(model, x, "pair", True) for x in leads[LONE_BATCHES + 1 : LONE_BATCHES + 3])
        )
        assert batcher.batching
        three = await asyncio.gather(*(batcher.score(model, x, "three", True) for x in leads[LONE_BATCHES + 3 :]))
        return done.value.value, [*pair, *three]

    first, later = asyncio.run(run())
    assert sizes[LONE_BATCHES:] == [1, 1, 1, 3]  # at once; the pair's first at once, its second queued; three together
    assert first[0]["lead_id"] == f"L-{LONE_BATCHES}" and first[1]["request_id"] == "at-once"
    assert [a["lead_id"] for a, _ in later] == [f"L-{i}" for i in range(LONE_BATCHES + 1, LONE_BATCHES + 6)]


def test_several_workers_get_a_metrics_folder_removed_after_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """`--workers N` without PROMETHEUS_MULTIPROC_DIR: a fresh folder for the run, then gone; a given one is kept."""
    import os
    import tempfile

    from leadscore.serving.run import shared_metrics_folder

    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with shared_metrics_folder():
        folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
        assert folder.is_dir() and not any(folder.iterdir())
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ and not folder.exists()
    given = Path(tempfile.mkdtemp())
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(given))
    with shared_metrics_folder():
        assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == str(given)
    assert given.is_dir()


def test_a_worker_that_died_leaves_no_model_version_in_the_summed_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvicorn restarts a dead worker without telling prometheus_client: the new worker forgets the dead one's
    model version (a live gauge) and keeps its counts. (Each worker is a process: prometheus_client picks its
    multiprocess mode when it is imported.)"""
    import subprocess
    import sys

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    def worker(version: str) -> str:
        code = (
            "from prometheus_client import generate_latest; from leadscore.serving.metrics import Metrics; m = Metrics();"
            f"m.set_model('lead-scoring', {version!r}, 'registry', None); m.observe('/v1/score', 'POST', 200, 0.001);"
            "print(generate_latest(m.exposition()).decode())"
        )
        return subprocess.run(
            [sys.executable, "-c", code],
            check=True,
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        ).stdout

    assert 'version="1"} 1.0' in worker("1")  # this worker dies serving version 1
    text = worker("2")
    assert 'leadscore_model_info{name="lead-scoring",source="registry",version="2"} 1.0' in text
    assert 'version="1"' not in text
    assert 'leadscore_http_requests_total{method="POST",route="/v1/score",status="200"} 2.0' in text
