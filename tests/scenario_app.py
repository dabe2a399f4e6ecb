"""A real scoring server for the scenario tests: ``python -m tests.scenario_app <scorer file> [workers] <port>``.

It runs the server ``leadscore serve`` runs (:func:`serving.server.serve`, or :func:`serving.server.serve_workers`
with several workers, with :func:`serving.run.server_options` and, for one worker, the CPU placement of
:func:`serving.run.place_api`; settings from ``LEADSCORE_*``), serving a saved
scorer instead of a registry version, so a scenario needs no registry.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from leadscore.models.scorer import Scorer
from leadscore.serving.app import create_app
from leadscore.serving.run import place_api, server_options, shared_metrics_folder
from leadscore.serving.server import serve, serve_workers
from leadscore.serving.settings import ServingSettings
from leadscore.serving.state import StaticLoader

SCORER_ENV = "LEADSCORE_SCENARIO_SCORER"


def create_scenario_app(settings: ServingSettings | None = None) -> object:
    """The app serving the scorer saved at ``$LEADSCORE_SCENARIO_SCORER`` (each worker process makes its own)."""
    scorer = Scorer.load(Path(os.environ[SCORER_ENV]))
    return create_app(settings or ServingSettings(), StaticLoader(scorer, "lead-scoring", "1"))


def main() -> None:
    path, port = Path(sys.argv[1]), int(sys.argv[-1])
    workers = int(sys.argv[2]) if len(sys.argv) > 3 else 1
    settings = ServingSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ[SCORER_ENV] = str(path)
    if workers > 1:
        with shared_metrics_folder():
            serve_workers(
                "tests.scenario_app:create_scenario_app", "127.0.0.1", port, server_options(settings, workers), workers
            )
        return
    settings = place_api(settings)  # as leadscore serve places one worker and its helpers
    serve(create_scenario_app(settings), "127.0.0.1", port, server_options(settings), settings.drain_seconds)


if __name__ == "__main__":
    main()
