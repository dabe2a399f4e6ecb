"""Validation, shed load, the stop, registry errors and privacy defaults, in process (issue 15, items 2 and 4-7)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from leadscore.features.schema import MAX_ENGAGEMENT_KEYS
from leadscore.models.scorer import Scorer
from leadscore.serving.admission import BATCH_PATH, Admission
from leadscore.serving.app import create_app
from leadscore.serving.privacy import KEY_FILE, check_bind, lead_hash_key
from leadscore.serving.registry_errors import (
    CONNECTION_REFUSED,
    NO_ALIAS,
    NO_SUCH_VERSION,
    TIMEOUT,
    registry_error_kind,
)
from leadscore.serving.schemas import EXAMPLE_LEAD
from leadscore.serving.settings import ServingSettings
from leadscore.serving.state import StaticLoader


def make_settings(tmp_path: Path, **kw: Any) -> ServingSettings:
    values: dict[str, Any] = {"home": tmp_path / "home", "poll_seconds": 0, "score_log_flush_seconds": 0.05, **kw}
    return ServingSettings(**values)


@pytest.fixture
def client(tmp_path: Path, scorer: Scorer) -> TestClient:
    with TestClient(create_app(make_settings(tmp_path), StaticLoader(scorer, "lead-scoring", "7"))) as c:
        yield c


def lead(**kw: Any) -> dict[str, Any]:
    return {**copy.deepcopy(EXAMPLE_LEAD), **kw}


def post_raw(client: TestClient, text: str, path: str = "/v1/score") -> Any:
    return client.post(path, content=text.encode(), headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("employees", "12"),
        ("employees", True),
        ("annual_revenue", "1e6"),
        ("manual_score", False),
        ("is_mql", "yes"),
        ("is_mql", 1),
    ],
)
def test_numbers_are_numbers_and_booleans_booleans(client: TestClient, field: str, value: Any) -> None:
    response = client.post("/v1/score", json=lead(**{field: value}))
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", field]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_naming_the_field(client: TestClient, token: str) -> None:
    for field in ("employees", "manual_score"):
        response = post_raw(client, f'{{"lead_id": "L-1", "{field}": {token}}}')
        assert response.status_code == 422, response.text
        assert response.json()["detail"][0]["loc"] == ["body", field]
    response = post_raw(client, f'{{"lead_id": "L-1", "engagement": {{"web_visit_7d": {token}}}}}')
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "engagement", "<key>"]


def test_a_batch_is_validated_as_fastapi_validates_a_body(client: TestClient) -> None:
    """A batch body is read off the event loop (serving.batch), with the same 422s as a FastAPI body: field
    paths with the lead's index in the whole batch (past the first chunk too), NaN refused naming the field,
    invalid JSON and a wrong shape refused; a batch over the limit is 413 before its leads are validated."""
    leads = [lead(lead_id=f"L-{i}") for i in range(130)]
    leads[0]["employees"] = "12"
    leads[121]["manual_score"] = True
    response = client.post("/v1/score/batch", json={"leads": leads})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [
        ["body", "leads", 0, "employees"],
        ["body", "leads", 121, "manual_score"],
    ]
    response = post_raw(client, '{"leads": [{"lead_id": "L-1", "employees": NaN}]}', "/v1/score/batch")
    assert response.status_code == 422 and response.json()["detail"][0]["loc"] == ["body", "leads", 0, "employees"]
    response = post_raw(client, '{"leads": [', "/v1/score/batch")
    assert response.status_code == 422 and response.json()["detail"][0]["type"] == "json_invalid"
    for shape in ("", "[]", '{"leads": []}', '{"leads": {}}', '{"leads": [{"lead_id": "x"}], "more": 1}'):
        response = post_raw(client, shape, "/v1/score/batch")
        assert response.status_code == 422, shape
        assert response.json()["detail"][0]["loc"][0] == "body" and "more" not in response.text
    too_many = json.dumps({"leads": [{"lead_id": i} for i in range(1001)]})  # invalid leads, but too many first
    assert post_raw(client, too_many, "/v1/score/batch").status_code == 413


def test_integers_are_numbers_too(client: TestClient) -> None:
    assert client.post("/v1/score", json=lead(employees=12, manual_score=0)).status_code == 200


def test_dicts_are_bounded(client: TestClient) -> None:
    big = {f"feature_{i}": 1.0 for i in range(MAX_ENGAGEMENT_KEYS + 1)}
    response = client.post("/v1/score", json=lead(engagement=big))
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "engagement"]
    response = client.post("/v1/score", json=lead(attributes={f"a{i}": "x" for i in range(60_000)}))
    assert response.status_code in (413, 422)
    response = client.post("/v1/score", json=lead(engagement={"k" * 500: 1.0}))
    assert response.status_code == 422


def test_no_name_the_caller_chose_is_echoed_in_errors(client: TestClient) -> None:
    response = client.post("/v1/score", json=lead(secret_field_name_xyz=1))
    assert response.status_code == 422
    assert "secret_field_name_xyz" not in response.text
    assert response.json()["detail"][0]["loc"] == ["body", "<unknown field>"]
    response = client.post("/v1/score", json=lead(engagement={"private_key_abc": "x"}))
    assert response.status_code == 422 and "private_key_abc" not in response.text


def test_openapi_states_the_bounds_the_server_enforces(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    occurred = schemas["Activity"]["properties"]["occurred_at"]
    assert occurred["x-minimum"].startswith("1900-01-01") and occurred["x-exclusiveMaximum"].startswith("2200-01-01")
    lead_props = schemas["LeadRecord"]["properties"]
    engagement = next(s for s in lead_props["engagement"]["anyOf"] if s.get("type") == "object")
    assert engagement["maxProperties"] == MAX_ENGAGEMENT_KEYS
    assert engagement["additionalProperties"]["type"] == "number"
    attributes = next(s for s in lead_props["attributes"]["anyOf"] if s.get("type") == "object")
    assert attributes["maxProperties"]
    assert "ignored" in schemas["Activity"]["properties"]["type"]["description"]


def test_an_unknown_activity_type_is_accepted_and_ignored(client: TestClient) -> None:
    base = client.post("/v1/score", json=lead(activities=[])).json()
    odd = client.post(
        "/v1/score", json=lead(activities=[{"type": "carrier_pigeon", "occurred_at": "2026-09-22T10:00:00Z"}])
    ).json()
    assert odd["probability"] == base["probability"]


def test_readyz_is_503_while_draining(client: TestClient) -> None:
    assert client.get("/readyz").status_code == 200
    client.app.state.draining = True
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["status"] == "stopping"
    assert client.get("/healthz").status_code == 200


def test_scoring_past_the_work_bound_is_shed_with_retry_after(tmp_path: Path, scorer: Scorer) -> None:
    app = create_app(make_settings(tmp_path, max_inflight_leads=50), StaticLoader(scorer, "lead-scoring", "7"))
    with TestClient(app) as c:
        admission = _admission(app)
        admission.inflight = 40  # work already in flight
        body = json.dumps({"leads": [lead(lead_id=f"L-{i}") for i in range(20)]})
        response = c.post(BATCH_PATH, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert c.post("/v1/score", json=lead()).status_code == 200  # one lead still fits
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200
        assert 'leadscore_shed_requests_total{route="/v1/score/batch"} 1.0' in c.get("/metrics").text
        admission.inflight = 0
        response = c.post(BATCH_PATH, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 200
        assert admission.inflight == 0


def _admission(app: Any) -> Admission:
    if app.middleware_stack is None:
        app.middleware_stack = app.build_middleware_stack()
    layer = app.middleware_stack
    while not isinstance(layer, Admission):
        layer = layer.app
    return layer


def test_a_lead_hash_key_is_made_once_in_the_home_and_kept(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    first = lead_hash_key(settings)
    path = settings.home / KEY_FILE
    assert len(first) == 64 and path.stat().st_mode & 0o777 == 0o600
    assert lead_hash_key(settings) == first  # the next start reads it
    assert lead_hash_key(make_settings(tmp_path, lead_hash_key="configured-key")) == b"configured-key"


def test_listening_beyond_loopback_without_keys_needs_the_flag(tmp_path: Path) -> None:
    open_settings = make_settings(tmp_path)
    for host in ("127.0.0.1", "localhost", "::1"):
        check_bind(host, open_settings, allow_without_keys=False)
    for host in ("0.0.0.0", "::", "192.0.2.7"):
        with pytest.raises(PermissionError, match="without API keys"):
            check_bind(host, open_settings, allow_without_keys=False)
        check_bind(host, open_settings, allow_without_keys=True)
        check_bind(host, make_settings(tmp_path, api_keys="k1"), allow_without_keys=False)


def test_serve_refuses_a_public_address_without_keys(tmp_path: Path) -> None:
    import subprocess
    import sys

    leadscore = str(Path(sys.executable).parent / "leadscore")
    env = {"PATH": "/usr/bin:/bin", "LEADSCORE_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [leadscore, "serve", "--host", "0.0.0.0", "--port", "9"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "without API keys" in done.stderr


def test_registry_failures_are_told_apart() -> None:
    from mlflow.exceptions import MlflowException

    assert registry_error_kind(ConnectionRefusedError(111, "Connection refused")) == CONNECTION_REFUSED
    wrapped = MlflowException("API request to http://x failed with exception ConnectionError(... Connection refused)")
    assert registry_error_kind(wrapped) == CONNECTION_REFUSED
    assert registry_error_kind(MlflowException("API request ... ReadTimeoutError: Read timed out")) == TIMEOUT
    assert registry_error_kind(MlflowException("Registered model alias champion not found.")) == NO_ALIAS
    missing = MlflowException("Model Version (name=lead-scoring, version=9) not found", "RESOURCE_DOES_NOT_EXIST")
    assert registry_error_kind(missing) == NO_SUCH_VERSION


def test_registry_down_while_polling_is_reported_as_such(tmp_path: Path, scorer: Scorer) -> None:
    class DownRegistry(StaticLoader):
        def target_version(self) -> str | None:
            raise MlflowException("API request to http://127.0.0.1:9 failed: Connection refused")

    from mlflow.exceptions import MlflowException

    with TestClient(create_app(make_settings(tmp_path), DownRegistry(scorer, "lead-scoring", "7"))) as c:
        assert not c.app.state.leadscore.check_for_new_version()
        info = c.get("/v1/model").json()
        assert info["last_poll_error"].startswith("connection_refused: MlflowException")
        assert info["last_checked_at"] is not None and info["last_reload_error"] is None
        assert 'leadscore_registry_errors_total{kind="connection_refused"} 1.0' in c.get("/metrics").text


def test_json_nested_deeper_than_the_interpreter_goes_is_a_422_not_a_500(client: TestClient) -> None:
    deep = "[" * 5000 + "]" * 5000
    for path, body in (
        ("/v1/score", '{"lead_id": "x", "attributes": ' + deep + "}"),
        ("/v1/score/batch", '{"leads": [' + deep + "]}"),
    ):
        response = client.post(path, content=body, headers={"content-type": "application/json"})
        assert response.status_code == 422, (path, response.text)
        assert response.json()["detail"][0]["type"] == "json_invalid"


def test_a_batch_streamed_without_its_size_weighs_the_most_a_batch_may(tmp_path: Path, scorer: Scorer) -> None:
    app = create_app(make_settings(tmp_path, max_batch=300), StaticLoader(scorer, "lead-scoring", "7"))
    admission = _admission(app)
    chunked = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    assert admission.weight("POST", BATCH_PATH, chunked) == 300
    assert admission.weight("POST", BATCH_PATH, [(b"content-length", b"2000")]) == 10
    assert admission.weight("POST", "/v1/score", chunked) == 1
