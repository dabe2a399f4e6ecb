"""The scoring routes' lean handler answers exactly as FastAPI's own handler does (which serves whenever
the app holds dependency overrides): the same statuses, bodies and error paths, for good and bad requests."""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
from fastapi.testclient import TestClient

from leadscore.serving import deps
from leadscore.serving.routes_scoring import router
from leadscore.serving.schemas import EXAMPLE_LEAD, MINIMAL_LEAD

HEADERS = {"X-Request-Id": "route-test", "Content-Type": "application/json"}


def _lead(**kw: Any) -> dict[str, Any]:
    return {**copy.deepcopy(EXAMPLE_LEAD), **kw}


REQUESTS: list[tuple[str, str, Any]] = [
    ("/v1/score", "", _lead()),
    ("/v1/score", "", MINIMAL_LEAD),
    ("/v1/score", "?explain=false", _lead()),
    ("/v1/score", "?explain=0", _lead()),
    ("/v1/score", "?explain=maybe", _lead()),
    ("/v1/score", "", b""),
    ("/v1/score", "", b"{not json"),
    ("/v1/score", "", b"[1, 2]"),
    ("/v1/score", "", b'{"lead_id": "x", "employees": NaN}'),
    ("/v1/score", "", b'{"lead_id": "x", "employees": Infinity}'),
    ("/v1/score", "", _lead(employees="12")),
    ("/v1/score", "", _lead(employees=True)),
    ("/v1/score", "", _lead(is_mql="yes")),
    ("/v1/score", "", _lead(unknown_field=1)),
    ("/v1/score", "", {"employees": 10}),
    ("/v1/score", "", _lead(activities=[{"type": "email_open", "occurred_at": "1899-12-31T23:59:59Z"}])),
    ("/v1/score", "", _lead(activities=[{"type": "email_open", "occurred_at": "not a date"}])),
    ("/v1/score", "", _lead(engagement={f"k{i}": 1 for i in range(5000)})),
    ("/v1/score/batch", "", {"leads": [_lead(), MINIMAL_LEAD]}),
    ("/v1/score/batch", "?explain=false", {"leads": [_lead(), MINIMAL_LEAD]}),
    ("/v1/score/batch", "", {"leads": [_lead(), {"lead_id": 5}]}),
    ("/v1/score/batch", "", {"leads": "no"}),
    ("/v1/score/batch", "", b"{"),
]


def _answer(client: TestClient, path: str, query: str, body: Any) -> tuple[int, Any]:
    content = body if isinstance(body, bytes) else None
    response = client.post(path + query, headers=HEADERS, content=content, json=None if content is not None else body)
    answer = response.json()
    for item in [answer, *(answer.get("results") or [])] if isinstance(answer, dict) else []:
        item.pop("scored_at", None)  # the moment of scoring, which differs between two calls
    return response.status_code, answer


def test_single_leads_take_the_lean_handler() -> None:
    (route,) = [r for r in router.routes if r.path == "/v1/score"]
    assert route.get_route_handler().__qualname__.startswith("_lean_handler")


def test_the_lean_handler_answers_as_fastapis_own(client: TestClient) -> None:
    lean = [_answer(client, *request) for request in REQUESTS]
    client.app.dependency_overrides[deps.scoring_access] = deps.scoring_access  # FastAPI's handler serves
    try:
        standard = [_answer(client, *request) for request in REQUESTS]
    finally:
        client.app.dependency_overrides.clear()
    statuses = {status for status, _ in lean}
    assert 200 in statuses and 422 in statuses
    for request, one, other in zip(REQUESTS, lean, standard, strict=True):
        assert _same(one, other), (request[:2], one, other)


def _same(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-6 (a lead's recency moves with the clock between the two calls)."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def test_batches_are_scored_one_at_a_time(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from leadscore.serving.batch import BatchWorker

    running, most, lock = [0], [0], threading.Lock()
    real = BatchWorker.score

    def counted(self: BatchWorker, *args: Any) -> Any:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            time.sleep(0.05)
            return real(self, *args)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(BatchWorker, "score", counted)
    statuses: list[int] = []

    def send() -> None:
        statuses.append(client.post("/v1/score/batch", json={"leads": [_lead(), MINIMAL_LEAD]}).status_code)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 4
    assert most[0] == 1  # one batch at a time in the worker; the others wait their turn
