"""A real scoring server for the scenario tests: ``python -m tests.scenario_app <scorer file> <port>``.

It runs the server ``leadscore serve`` runs (:func:`serving.server.serve` with :func:`serving.run.server_options`,
settings from ``LEADSCORE_*``), serving a saved scorer instead of a registry version, so a scenario needs no
registry.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from leadscore.models.scorer import Scorer
from leadscore.serving.app import create_app
from leadscore.serving.run import server_options
from leadscore.serving.server import serve
from leadscore.serving.settings import ServingSettings
from leadscore.serving.state import StaticLoader


def main() -> None:
    path, port = Path(sys.argv[1]), int(sys.argv[2])
    settings = ServingSettings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, StaticLoader(Scorer.load(path), "lead-scoring", "1"))
    serve(app, "127.0.0.1", port, server_options(settings), settings.drain_seconds)


if __name__ == "__main__":
    main()
