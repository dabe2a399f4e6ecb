"""Test factories: seeded synthetic data, fitted artifacts, and a real ``mlflow server`` process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leadscore.features.build import CrmTables, build_crm_frame
from leadscore.features.mapping import default_crm_mapping
from leadscore.serving.settings import ServingSettings
from leadscore.training.synthetic import generate_crm, write_crm
from leadscore.training.train import FitResult, TrainOptions, fit


def make_crm(n: int = 6000, seed: int = 7) -> CrmTables:
    """Seeded synthetic CRM tables (small: tests stay fast)."""
    return generate_crm(n, seed=seed)


def write_crm_folder(folder: Path, n: int = 6000, seed: int = 7) -> Path:
    write_crm(make_crm(n, seed), folder)
    return folder


def fit_crm(tables: CrmTables, **options: object) -> FitResult:
    """Fit model and baselines on CRM tables with the default mapping (few trees: fast)."""
    mapping = default_crm_mapping()
    tf = build_crm_frame(tables, mapping, source="test")
    opts = {"n_estimators": 60, "min_conversions": 40, **options}
    return fit(tf, TrainOptions(data=Path("."), **opts))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@contextmanager
def mlflow_server(root: Path, backend_store_uri: str | None = None) -> Iterator[str]:
    """A real ``mlflow server`` on 127.0.0.1 (a SQLite backend under ``root`` unless ``backend_store_uri`` is
    given, e.g. PostgreSQL; proxied artifacts under ``root``); yields its URI."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        backend_store_uri or f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        (root / "artifacts").as_uri(),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    log = (root / "server.log").open("w")
    process = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        # MLflow 3's job runner (huey consumers, for GenAI jobs leadscore does not use) would keep five
        # processes polling for the whole session.
        env={**os.environ, "PYTHONUNBUFFERED": "1", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{uri}/health", timeout=90, process=process)
        yield uri
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def make_settings(tmp_path: Path, **kw: Any) -> ServingSettings:
    """Serving settings for an app in a test: a home under ``tmp_path``, no polling, a quick score-log flush."""
    values: dict[str, Any] = {"home": tmp_path / "home", "poll_seconds": 0, "score_log_flush_seconds": 0.05, **kw}
    return ServingSettings(**values)


def score_rows(n: int, first: int = 0, prefix: str = "r") -> list[dict[str, Any]]:
    """``n`` score-log rows (request ids ``prefix`` + ``first`` ..), all scored now."""
    now = datetime.now(UTC)
    return [
        {
            "request_id": f"{prefix}{i}",
            "lead_hash": f"{i:064x}",
            "model_name": "m",
            "model_version": "1",
            "probability": 0.25,
            "score": 40,
            "tier": "B",
            "scored_at": now,
        }
        for i in range(first, first + n)
    ]


def thread_policies(pid: int) -> list[int]:
    """The scheduling policy of each thread of process ``pid`` (Linux; a thread that ends meanwhile is left out)."""
    policies = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            policies.append(os.sched_getscheduler(int(task.name)))
        except ProcessLookupError:
            continue
    return policies
