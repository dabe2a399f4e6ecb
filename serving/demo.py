"""Score one lead over real HTTP: start the app on a free local port, POST the OpenAPI example, stop."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx

from leadscore.serving.settings import ServingSettings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def score_one_over_http(settings: ServingSettings | None = None, timeout: float = 120.0) -> dict[str, Any]:
    """Start the API in this process (default settings: the embedded store in LEADSCORE_HOME), score the example lead."""
    import uvicorn

    from leadscore.serving.app import create_app
    from leadscore.serving.run import server_options

    settings = settings or ServingSettings()
    port = _free_port()
    options = server_options(settings) | {"log_level": "warning"}
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, **options))
    thread = threading.Thread(target=server.run, name="leadscore-demo-server", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or not thread.is_alive():
                    raise RuntimeError(f"the scoring API at {base} did not become ready within {timeout:.0f}s")
                time.sleep(0.2)
            spec = client.get("/openapi.json").json()
            example = spec["paths"]["/v1/score"]["post"]["requestBody"]["content"]["application/json"]["examples"][
                "full"
            ]["value"]
            headers = {"X-API-Key": settings.api_keys[0].get_secret_value()} if settings.api_keys else {}
            response = client.post("/v1/score", json=example, headers=headers)
            response.raise_for_status()
            return response.json()
    finally:
        server.should_exit = True
        thread.join(30)
