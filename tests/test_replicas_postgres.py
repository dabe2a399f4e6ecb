"""Several API replicas on shared infrastructure: an `mlflow server` backed by PostgreSQL, and one score log
in PostgreSQL that two real `leadscore serve` processes write to, each from a home folder of its own (as
on two machines). Every answered score is logged once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from leadscore.models.settings import MlflowSettings
from leadscore.serving.schemas import EXAMPLE_LEAD
from leadscore.training.promote import promote
from leadscore.training.train import TrainOptions, train
from tests.postgres import PostgresServer
from tests.test_serving_integration import leadscore_serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("server_settings", ["postgresql"], indirect=True)
def test_two_replicas_log_every_answered_score_once_in_one_postgresql_log(
    server_settings: MlflowSettings, crm_folder: Path, postgres: PostgresServer, tmp_path: Path
) -> None:
    server_settings.home.mkdir(parents=True, exist_ok=True)
    trained = train(TrainOptions(data=crm_folder, n_estimators=40, min_conversions=40), server_settings)
    promote(server_settings)
    log_url = postgres.create_database("replicas_score_log")
    homes = [tmp_path / "replica-a", tmp_path / "replica-b"]
    answered: list[str] = []
    failures: list[str] = []

    def drive(base: str, prefix: str) -> None:  # bounded: 300 requests or 20 s
        deadline = time.monotonic() + 20
        with httpx.Client(base_url=base, timeout=5) as http:
            for i in range(300):
                if time.monotonic() > deadline:
                    return
                response = http.post("/v1/score", json={**EXAMPLE_LEAD, "lead_id": f"{prefix}-{i}"})
                if response.status_code == 200:
                    answered.append(response.json()["request_id"])
                else:
                    failures.append(f"{response.status_code}: {response.text[:200]}")

    for home in homes:
        home.mkdir()
    replica_a = server_settings.model_copy(update={"home": homes[0]})
    replica_b = server_settings.model_copy(update={"home": homes[1]})
    with (
        leadscore_serve(replica_a, server_settings.tracking_uri, LEADSCORE_SCORE_LOG_URL=log_url) as base_a,
        leadscore_serve(replica_b, server_settings.tracking_uri, LEADSCORE_SCORE_LOG_URL=log_url) as base_b,
    ):
        threads = [threading.Thread(target=drive, args=(base, name)) for base, name in ((base_a, "a"), (base_b, "b"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    assert failures == []
    assert len(answered) == 600
    engine = create_engine(log_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT request_id, model_version FROM score_log")).all()
    finally:
        engine.dispose()
    logged = [r[0] for r in rows]
    assert len(logged) == len(set(logged)) == 600  # none lost, none twice
    assert set(logged) == set(answered)
    assert {r[1] for r in rows} == {trained.version}
    assert not any((home / "scores.db").exists() for home in homes)  # the shared log, not a local one
