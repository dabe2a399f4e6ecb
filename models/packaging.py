"""Packaging a fitted artifact as an MLflow model (pyfunc + the serving scorer), and loading it back for batch work."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from leadscore.models import registry
from leadscore.models.artifact import ARTIFACT_FILE, ScoringArtifact
from leadscore.models.pyfunc import LeadScoringPyfunc
from leadscore.models.scorer import MODEL_FILES, SCORER_FILE


def log_model(artifact: ScoringArtifact, input_example: pd.DataFrame) -> mlflow.models.model.ModelInfo:
    """Log the artifact as an MLflow pyfunc model of the active run, with signature, input example and its scorer."""
    example = input_example.reset_index(drop=True)
    signature = infer_signature(example, artifact.score_frame(example).reset_index(drop=True))
    with tempfile.TemporaryDirectory() as tmp:
        files = {
            ARTIFACT_FILE: artifact.save(Path(tmp) / ARTIFACT_FILE),
            SCORER_FILE: artifact.scorer().save(Path(tmp) / SCORER_FILE),
        }
        info = mlflow.pyfunc.log_model(
            name=registry.MODEL_PATH,
            python_model=LeadScoringPyfunc(),
            artifacts={name: str(path) for name, path in files.items()},
            signature=signature,
            input_example=example,
            pip_requirements=_requirements(),
        )
    return info


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"{p}=={version(p)}" for p in ("lightgbm", "scikit-learn", "pandas", "numpy", "joblib", "mlflow", "pydantic")
    ]


def fetch_artifact(client: MlflowClient, model_uri: str, cache_dir: Path) -> tuple[ScoringArtifact, str, str]:
    """Download (once, into the cache) and load a registered version's artifact; returns (artifact, name, version)."""
    folder, name, version = registry.fetch_files(client, model_uri, cache_dir, MODEL_FILES)
    return ScoringArtifact.load(folder / ARTIFACT_FILE), name, version
