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
from leadscore.models.scorer import SCORER_FILE, SERVING_FILES, Scorer


def log_model(artifact: ScoringArtifact, input_example: pd.DataFrame) -> mlflow.models.model.ModelInfo:
    """Log the artifact as an MLflow pyfunc model of the active run, with signature, input example and its scorer."""
    return log_model_files(artifact, input_example)[0]


def log_model_files(
    artifact: ScoringArtifact, input_example: pd.DataFrame
) -> tuple[mlflow.models.model.ModelInfo, dict[str, str]]:
    """:func:`log_model`, also returning the checksum tags of the files it logged (:func:`registry.checksum_tags`)."""
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
        checksums = registry.checksum_tags(files)
    return info, checksums


def register_model(
    client: MlflowClient,
    artifact: ScoringArtifact,
    input_example: pd.DataFrame,
    name: str,
    run_id: str,
    tags: dict[str, str],
    description: str | None = None,
) -> str:
    """Log the artifact in the active run and register it as a new version of ``name`` whose tags record
    each model file's SHA-256 (verified at every download and cache hit); returns the version."""
    info, checksums = log_model_files(artifact, input_example)
    return registry.register(client, info, name, run_id, {**tags, **checksums}, description)


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"{p}=={version(p)}" for p in ("lightgbm", "scikit-learn", "pandas", "numpy", "joblib", "mlflow", "pydantic")
    ]


def fetch_artifact(client: MlflowClient, model_uri: str, cache_dir: Path) -> tuple[ScoringArtifact, str, str]:
    """Download (once, into the cache) and load a registered version's artifact; returns (artifact, name, version)."""
    folder, name, version = registry.fetch_files(client, model_uri, cache_dir, (ARTIFACT_FILE,))
    return ScoringArtifact.load(folder / ARTIFACT_FILE), name, version


def fetch_served(client: MlflowClient, model_uri: str, cache_dir: Path) -> tuple[Scorer, str, str]:
    """Download (verified) and load a version's serving file exactly as the API does; returns (scorer, name, version)."""
    folder, name, version = registry.fetch_files(client, model_uri, cache_dir, SERVING_FILES)
    return Scorer.load(folder / SCORER_FILE), name, version


def convert_version(client: MlflowClient, name: str, version: str) -> str:
    """Register again, in the serving form, a version packaged by a leadscore whose API loaded pickles.

    The one-off conversion of an older version: its ``leadscore.joblib`` is unpickled here (so run it only
    on versions you trust, never in the API), its serving file is written as arrays + JSON, and both are
    logged to the version's own run and registered as a new version of ``name`` with checksums, the old
    version's tags and ``leadscore.converted_from``. Aliases do not move; returns the new version.
    """
    old = client.get_model_version(name, str(version))
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}", dst_path=tmp, tracking_uri=client.tracking_uri
            )
        )
        found = next(local.rglob(ARTIFACT_FILE), None)
        if found is None:
            raise FileNotFoundError(f"models:/{name}/{version} holds no {ARTIFACT_FILE}: not a leadscore model")
        artifact = ScoringArtifact.load(found)
        example = pd.read_parquet(client.download_artifacts(old.run_id, "holdout.parquet", tmp))
    tags = {k: v for k, v in (old.tags or {}).items() if not k.startswith(registry.CHECKSUM_TAG)}
    with mlflow.start_run(run_id=old.run_id):
        return register_model(
            client,
            artifact,
            example[artifact.input_columns].head(5),
            name,
            old.run_id,
            {**tags, "leadscore.converted_from": str(version)},
        )
