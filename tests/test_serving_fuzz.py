"""Property-based fuzzing of the scoring routes from the OpenAPI document: callers never reach a 5xx."""

from __future__ import annotations

import json

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadscore.serving.app import create_app
from leadscore.serving.settings import ServingSettings
from leadscore.serving.state import StaticLoader


@pytest.fixture(scope="module")
def app(scorer, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("fuzz")
    application = create_app(
        ServingSettings(home=home, poll_seconds=0, max_batch=20, max_body_bytes=64 * 1024), StaticLoader(scorer)
    )
    with TestClient(application):  # runs the lifespan: the model is loaded and warm
        yield application


@pytest.mark.parametrize("path", ["/v1/score", "/v1/score/batch", "/v1/model"])
def test_schema_driven_requests_never_get_a_5xx(app, path: str) -> None:
    """Schemathesis generates valid and invalid requests from the OpenAPI document (its Python API, bounded)."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operation = next(r.ok() for r in schema.get_all_operations() if r.ok().path == path)
    statuses: list[int] = []

    @settings(max_examples=40, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def check(case) -> None:
        response = case.call()
        statuses.append(response.status_code)
        assert response.status_code < 500, response.text

    check()
    assert statuses and 200 in statuses  # the generated requests really reach scoring


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
lead_keys = st.sampled_from(
    [
        "lead_id",
        "source",
        "employees",
        "annual_revenue",
        "is_mql",
        "activities",
        "engagement",
        "attributes",
        "created_at",
        "title",
    ]
)
leads = st.dictionaries(lead_keys, json_values, max_size=8) | st.fixed_dictionaries(
    {"lead_id": st.text(min_size=1, max_size=10)},
    optional={
        "engagement": st.dictionaries(st.text(max_size=30), st.floats()),
        "attributes": st.dictionaries(st.text(max_size=30), json_values),
    },
)


@settings(max_examples=120, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(body=leads | json_values)
def test_arbitrary_json_never_gets_a_5xx(app, body) -> None:
    """Lead-shaped and arbitrary JSON (including NaN/Infinity tokens) to both scoring routes."""
    client = TestClient(app)  # the module fixture's lifespan already holds the model
    for path in ("/v1/score", "/v1/score/batch"):
        payload = (
            {"leads": [body]} if path.endswith("batch") and isinstance(body, dict) and body.get("lead_id") else body
        )
        response = client.post(
            path, content=json.dumps(payload, allow_nan=True), headers={"content-type": "application/json"}
        )
        assert response.status_code < 500, (path, response.text)
