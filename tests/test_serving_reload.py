"""Following the alias: a new version is loaded and warmed beside the old one, then swapped; a bad one is refused."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import pytest
from fastapi.testclient import TestClient

from leadscore.models.scorer import Scorer
from leadscore.serving.app import create_app
from leadscore.serving.settings import ServingSettings
from leadscore.serving.state import LoadedModel


class Broken:
    """A scorer that loads but cannot score (fails warm-up)."""

    metadata: ClassVar[dict[str, Any]] = {}

    def score_records(self, *args: Any, **kwargs: Any) -> Any:
        raise ValueError("feature count mismatch")


class MovingAlias:
    """A registry stand-in whose alias the test moves."""

    def __init__(self, scorer: Any) -> None:
        self.target, self.loads = "1", []
        self.versions: dict[str, Any] = {"1": scorer, "2": copy.deepcopy(scorer), "3": Broken(), "4": scorer}

    def load_initial(self) -> LoadedModel:
        return self.load_version(self.target)

    def target_version(self) -> str | None:
        if self.target == "down":
            raise ConnectionError("registry unreachable")
        return self.target

    def load_version(self, version: str) -> LoadedModel:
        self.loads.append(version)
        if version == "missing":
            raise FileNotFoundError("no artifact")
        return LoadedModel(self.versions[version], "m", version, "registry")


@pytest.fixture
def moving(scorer: Scorer) -> MovingAlias:
    return MovingAlias(scorer)


@pytest.fixture
def client(tmp_path: Path, moving: MovingAlias) -> TestClient:
    settings = ServingSettings(home=tmp_path, poll_seconds=0, score_log_flush_seconds=0.05)
    with TestClient(create_app(settings, moving)) as c:
        yield c


def version(client: TestClient) -> str:
    return client.post("/v1/score", json={"lead_id": "x"}).json()["model"]["version"]


def test_a_moved_alias_is_followed(client: TestClient, moving: MovingAlias) -> None:
    state = client.app.state.leadscore
    assert version(client) == "1"
    assert state.check_for_new_version() is False  # unchanged: nothing loaded
    moving.target = "2"
    assert state.check_for_new_version() is True
    assert version(client) == "2"
    info = client.get("/v1/model").json()
    assert info["version"] == "2" and info["last_reload_at"] and info["last_checked_at"]
    assert moving.loads == ["1", "2"]
    assert 'leadscore_model_info{name="m",source="registry",version="2"} 1.0' in client.get("/metrics").text
    assert 'version="1"' not in client.get("/metrics").text.split("leadscore_model_info")[-1]


@pytest.mark.parametrize(
    ("bad", "error"), [("3", "ValueError"), ("missing", "FileNotFoundError")], ids=["fails-warm-up", "fails-to-load"]
)
def test_a_version_that_fails_is_refused_and_the_old_keeps_serving(
    client: TestClient, moving: MovingAlias, bad: str, error: str
) -> None:
    state = client.app.state.leadscore
    moving.target = bad
    assert state.check_for_new_version() is False
    assert version(client) == "1"
    info = client.get("/v1/model").json()
    assert info["version"] == "1" and info["last_reload_error"].startswith(f"version {bad} refused: {error}")
    assert state.check_for_new_version() is False and moving.loads.count(bad) == 1  # not retried on every poll
    assert 'leadscore_model_reloads_total{result="refused"} 1.0' in client.get("/metrics").text
    moving.target = "4"  # the next good version is taken, and the error clears
    assert state.check_for_new_version() is True
    assert version(client) == "4" and client.get("/v1/model").json()["last_reload_error"] is None


def test_an_unreachable_registry_keeps_the_current_version(client: TestClient, moving: MovingAlias) -> None:
    moving.target = "down"
    assert client.app.state.leadscore.check_for_new_version() is False
    assert version(client) == "1" and client.get("/readyz").status_code == 200


def test_the_poller_runs_in_the_background(tmp_path: Path, moving: MovingAlias) -> None:
    import time

    settings = ServingSettings(home=tmp_path, poll_seconds=0.05, score_log_flush_seconds=0.05)
    with TestClient(create_app(settings, moving)) as c:
        assert version(c) == "1"
        moving.target = "2"
        deadline = time.monotonic() + 5
        while version(c) != "2" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert version(c) == "2"
