"""Where MLflow keeps runs and models: typed settings read from ``LEADSCORE_*`` environment variables."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class MlflowSettings(BaseSettings):
    """``LEADSCORE_TRACKING_URI`` points at an ``mlflow server``; unset, an embedded SQLite store in ``LEADSCORE_HOME``."""

    model_config = SettingsConfigDict(env_prefix="LEADSCORE_", extra="ignore")

    home: Path = Field(default=Path(".leadscore"), description="Folder of the embedded store, caches and logs.")
    tracking_uri: str | None = Field(default=None, description="MLflow tracking (and registry) URI.")
    model_name: str = Field(default="lead-scoring", min_length=1)
    experiment: str | None = Field(
        default=None,
        min_length=1,
        description="Experiment of training runs; unset: one per input contract, named from the mapping.",
    )

    @property
    def resolved_tracking_uri(self) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    @property
    def artifact_location(self) -> str | None:
        """Artifact root for new experiments of the embedded store (a server chooses its own)."""
        return None if self.tracking_uri else (self.home / "mlartifacts").resolve().as_uri()


class LoopSettings(MlflowSettings):
    """Where the score log and the events are (the same ``LEADSCORE_*`` variables the API reads)."""

    score_log_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the score log (default: sqlite:///<home>/scores.db)."
    )
    lead_hash_key: SecretStr | None = Field(default=None, description="HMAC key the lead ids are hashed with.")

    @property
    def resolved_score_log_url(self) -> str:
        return self.score_log_url or f"sqlite:///{(self.home / 'scores.db').resolve()}"

    def hasher(self) -> Callable[[str], str]:
        """The API's lead hash: HMAC-sha256 under the configured key, else under the home's key file."""
        from leadscore.models.store import lead_hash_key, lead_hasher

        return lead_hasher(lead_hash_key(self.home, self.lead_hash_key))


@lru_cache
def get_mlflow_settings() -> MlflowSettings:
    return MlflowSettings()
