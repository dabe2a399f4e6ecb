"""Real `leadscore serve` processes against a real `mlflow server`: serve, follow a promotion, survive the registry's absence."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from leadscore.models.settings import MlflowSettings
from leadscore.serving.schemas import EXAMPLE_LEAD
from leadscore.training.promote import promote
from leadscore.training.train import TrainOptions, train
from tests.factories import free_port, wait_http

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LEADSCORE = str(Path(sys.executable).parent / "leadscore")


@contextmanager
def leadscore_serve(
    settings: MlflowSettings,
    tracking_uri: str,
    workers: int = 1,
    stop_group: signal.Signals | None = None,
    **env_vars: str,
) -> Iterator[str]:
    """``leadscore serve`` on a free port, stopped by SIGTERM, or with ``stop_group`` sent to its whole process
    group (as a terminal's Ctrl-C or a service manager does, reaching the score-log writer too)."""
    port = free_port()
    env = {
        **os.environ,
        **env_vars,
        "LEADSCORE_TRACKING_URI": tracking_uri,
        "LEADSCORE_HOME": str(settings.home),
        "LEADSCORE_MODEL_NAME": settings.model_name,
        "LEADSCORE_POLL_SECONDS": "1",
        "LEADSCORE_SCORE_LOG_FLUSH_SECONDS": "0.2",
        "PYTHONUNBUFFERED": "1",
    }
    log = (settings.home / f"serve-{port}.log").open("w")
    command = [LEADSCORE, "serve", "--port", str(port), "--workers", str(workers)]
    process = subprocess.Popen(
        command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=stop_group is not None
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/readyz", timeout=90, process=process)
        yield base
    finally:
        if stop_group is None:
            process.send_signal(signal.SIGTERM)
        else:
            os.killpg(process.pid, stop_group)
        try:
            # uvicorn re-raises the signal after a graceful shutdown, so -15 (-2) is a clean stop too
            assert process.wait(timeout=30) in (0, -signal.SIGTERM, -signal.SIGINT), (
                settings.home / f"serve-{port}.log"
            ).read_text()
        finally:
            if process.poll() is None:
                process.kill()
            log.close()


def options(folder: Path, **kw: object) -> TrainOptions:
    return TrainOptions(data=folder, n_estimators=60, min_conversions=40, **kw)


def test_serve_follows_a_promotion_without_failing_a_request(server_settings: MlflowSettings, crm_folder: Path) -> None:
    server_settings.home.mkdir(parents=True, exist_ok=True)
    first = train(options(crm_folder), server_settings)
    promote(server_settings)
    with leadscore_serve(server_settings, server_settings.tracking_uri) as base:
        with httpx.Client(base_url=base, timeout=5) as http:
            body = http.post("/v1/score", json=EXAMPLE_LEAD).json()
            assert body["model"] == {"name": server_settings.model_name, "version": first.version}
            assert body["reasons"]["positive"] or body["reasons"]["negative"]
            assert http.get("/v1/model").json()["source"] == "registry"

        seen: list[str] = []
        failures: list[str] = []
        stop = threading.Event()

        def load_loop() -> None:  # bounded: at most 4000 requests or 20 s
            deadline = time.monotonic() + 20
            with httpx.Client(base_url=base, timeout=5) as http:
                for i in range(4000):
                    if stop.is_set() or time.monotonic() > deadline:
                        return
                    try:
                        response = http.post("/v1/score", json={**EXAMPLE_LEAD, "lead_id": f"L-{i}"})
                        if response.status_code != 200:
                            failures.append(f"{response.status_code}: {response.text[:200]}")
                        else:
                            seen.append(response.json()["model"]["version"])
                    except httpx.HTTPError as exc:
                        failures.append(repr(exc))
                    time.sleep(0.002)

        second = train(options(crm_folder, seed=1), server_settings)
        loop = threading.Thread(target=load_loop)
        loop.start()
        try:  # the load runs through the promotion and the switch (not through the training before them)
            deadline = time.monotonic() + 10
            while not seen and not failures and time.monotonic() < deadline:
                time.sleep(0.01)
            assert promote(server_settings, tolerance=0.05).promoted
            deadline = time.monotonic() + 15
            while (not seen or seen[-1] != second.version) and time.monotonic() < deadline and loop.is_alive():
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            stop.set()
            loop.join(30)
        assert failures == []
        assert seen[0] == first.version and seen[-1] == second.version
        switch = seen.index(second.version)
        assert set(seen[switch:]) == {second.version}  # once swapped, never back
        with httpx.Client(base_url=base, timeout=5) as http:
            info = http.get("/v1/model").json()
            assert info["version"] == second.version and info["last_reload_error"] is None
            assert f'version="{second.version}"' in http.get("/metrics").text
    # a clean stop flushed every score: none lost
    with sqlite3.connect(server_settings.home / "scores.db") as conn:
        logged = conn.execute("select count(*), count(distinct model_version) from score_log").fetchone()
    assert logged == (len(seen) + 1, 2)

    # The registry is gone: a fresh process serves the cached champion and says so. Stopped by a Ctrl-C
    # to its whole process group, it still logs every score it answered.
    dead = f"http://127.0.0.1:{free_port()}"
    with (
        leadscore_serve(server_settings, dead, stop_group=signal.SIGINT) as base,
        httpx.Client(base_url=base, timeout=5) as http,
    ):
        info = http.get("/v1/model").json()
        assert (info["source"], info["version"]) == ("cache", second.version)
        answers = [http.post("/v1/score", json=EXAMPLE_LEAD).json() for _ in range(30)]
        assert {a["model"]["version"] for a in answers} == {second.version}
    with sqlite3.connect(server_settings.home / "scores.db") as conn:
        ids = {r[0] for r in conn.execute("select request_id from score_log")}
    assert {a["request_id"] for a in answers} <= ids


def test_several_workers_serve_and_metrics_count_every_workers_requests(
    server_settings: MlflowSettings, crm_folder: Path, tmp_path: Path
) -> None:
    """`--workers 2`: both processes score, and every scrape of /metrics (answered by either) counts all requests."""
    server_settings.home.mkdir(parents=True, exist_ok=True)
    first = train(options(crm_folder), server_settings)
    promote(server_settings)
    shared = tmp_path / "metrics"
    shared.mkdir()
    n = 120
    with leadscore_serve(
        server_settings, server_settings.tracking_uri, workers=2, PROMETHEUS_MULTIPROC_DIR=str(shared)
    ) as base:
        for i in range(n):  # a new connection each time, so the two workers share the requests
            answer = httpx.post(f"{base}/v1/score", json={**EXAMPLE_LEAD, "lead_id": f"W-{i}"}, timeout=5)
            assert answer.status_code == 200 and answer.json()["model"]["version"] == first.version
        writers = {path.stem.rpartition("_")[2] for path in shared.glob("counter_*.db")}
        assert len(writers) == 2, writers  # two worker processes wrote metrics
        line = f'leadscore_http_requests_total{{method="POST",route="/v1/score",status="200"}} {float(n)}'
        for _ in range(8):
            text = httpx.get(f"{base}/metrics", timeout=5).text
            assert line in text, [row for row in text.splitlines() if row.startswith("leadscore_http_requests_total")]
            assert (
                f'leadscore_model_info{{name="{server_settings.model_name}",source="registry",version="{first.version}"}} 1.0'
                in text
            )
