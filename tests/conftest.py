"""Shared fixtures: seeded synthetic data, one fitted model, and one real mlflow server per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from leadscore.features.build import CrmTables
from leadscore.models.scorer import Scorer
from leadscore.models.settings import MlflowSettings, get_mlflow_settings
from leadscore.serving.app import create_app
from leadscore.serving.settings import ServingSettings
from leadscore.serving.state import StaticLoader
from leadscore.training.train import FitResult
from tests.factories import fit_crm, make_crm, make_settings, mlflow_server, write_crm_folder
from tests.postgres import PostgresServer, postgres_bin, postgres_server

SHARED = Path(__file__).resolve().parents[2] / "shared"
X_EDUCATION = SHARED / "datasets" / "x-education-leads" / "Leads.csv"


@pytest.fixture(scope="session")
def crm_tables() -> CrmTables:
    return make_crm()


@pytest.fixture(scope="session")
def crm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_crm_folder(tmp_path_factory.mktemp("crm"))


@pytest.fixture(scope="session")
def fitted(crm_tables: CrmTables) -> FitResult:
    """One fitted model (with baselines) on the session's synthetic data."""
    return fit_crm(crm_tables)


@pytest.fixture(scope="session")
def scorer(fitted: FitResult) -> Scorer:
    """The serving form of ``fitted``'s model (what the API loads)."""
    return fitted.artifact.scorer()


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real `mlflow server` process on 127.0.0.1 for the whole session."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """A real PostgreSQL server on 127.0.0.1 for the whole session (``.ci/run`` installs it where missing)."""
    if postgres_bin() is None:
        reason = "PostgreSQL is not installed (initdb/pg_ctl not found; Debian: apt-get install postgresql)"
        if os.environ.get("CI"):
            pytest.fail(reason + ": CI must run the PostgreSQL tests")
        pytest.skip(reason)
    with postgres_server() as server:
        yield server


@pytest.fixture(scope="session")
def mlflow_pg_uri(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real `mlflow server` on 127.0.0.1 whose backend store is the session's PostgreSQL."""
    backend = postgres.create_database("mlflow")
    with mlflow_server(tmp_path_factory.mktemp("mlflow-pg-server"), backend_store_uri=backend) as uri:
        yield uri


@pytest.fixture
def server_settings(tmp_path: Path, request: pytest.FixtureRequest) -> MlflowSettings:
    """Settings pointing at the session's server, with a registered-model name of this test's own.

    The server's backend store is SQLite, or PostgreSQL for tests parametrized with
    ``pytest.mark.parametrize("server_settings", ["sqlite", "postgresql"], indirect=True)``.
    """
    backend = getattr(request, "param", "sqlite")
    uri = request.getfixturevalue("mlflow_pg_uri" if backend == "postgresql" else "mlflow_uri")
    name = "t-" + "".join(ch if ch.isalnum() else "-" for ch in request.node.name)[:60]
    return MlflowSettings(tracking_uri=uri, home=tmp_path / "home", model_name=name, experiment=name)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An embedded store of this test's own (LEADSCORE_HOME in a temporary folder, no tracking server)."""
    home = tmp_path / "home"
    monkeypatch.setenv("LEADSCORE_HOME", str(home))
    monkeypatch.delenv("LEADSCORE_TRACKING_URI", raising=False)
    get_mlflow_settings.cache_clear()
    yield home
    get_mlflow_settings.cache_clear()


@pytest.fixture
def x_education() -> Path:
    if not X_EDUCATION.exists():
        pytest.skip(f"real dataset not present: {X_EDUCATION} (the shared/ folder beside the project is absent)")
    return X_EDUCATION


@pytest.fixture
def settings(tmp_path: Path) -> ServingSettings:
    """The serving settings of :func:`client`'s app (:func:`tests.factories.make_settings`)."""
    return make_settings(tmp_path)


@pytest.fixture
def client(settings: ServingSettings, scorer: Scorer) -> Iterator[TestClient]:
    """The scoring API in process, serving the session's fitted model as lead-scoring version 7."""
    with TestClient(create_app(settings, StaticLoader(scorer, "lead-scoring", "7"))) as c:
        yield c
