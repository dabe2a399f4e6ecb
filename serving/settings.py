"""Serving settings: typed, read from ``LEADSCORE_*`` environment variables; nothing happens at import."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from leadscore.models.settings import MlflowSettings
from leadscore.models.store import DEFAULT_REJECTION_REASONS
from leadscore.serving.priority import parse_cpus


class ServingSettings(MlflowSettings):
    """What the scoring API serves and how (``LEADSCORE_ALIAS``, ``LEADSCORE_API_KEYS``, ...)."""

    alias: str = Field(default="champion", min_length=1, description="Registry alias to serve and follow.")
    cache_dir: Path | None = Field(default=None, description="Local model cache (default: <home>/cache).")
    poll_seconds: float = Field(
        default=30.0, ge=0, description="How often to check the alias for a new version; 0 = never."
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list, description="Accepted API keys, comma-separated; empty = no authentication."
    )
    max_batch: int = Field(default=1000, ge=1, le=100_000, description="Most leads in one batch request.")
    max_body_bytes: int = Field(default=2 * 1024 * 1024, ge=1024, description="Largest request body accepted.")
    batch_worker_idle_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Stop the batch worker process after this long without a batch (its memory goes back to the "
        "system; the next batch starts a new one); 0 = never.",
    )
    helper_priority: Literal["idle", "nice", "normal"] = Field(
        default="idle",
        description="CPU priority of the batch worker and the score-log writer: idle (SCHED_IDLE and nice 19, the "
        "event loop first, bar a scheduler tick at worst), nice (nice 19 alone: a small share even on cores that are always busy) or normal.",
    )
    helper_cpus: str = Field(
        default="auto",
        description="CPUs of the batch worker and the score-log writer, the API process keeping the others: auto "
        "(with one worker on a machine of 2 to 4 CPUs, the last CPU for the API and the others for the helpers; "
        "else no placement), all (no placement), or a CPU list such as 0 or 0,2-3.",
    )
    score_log_url: str | None = Field(
        default=None, description="SQLAlchemy URL of the score log (default: sqlite:///<home>/scores.db)."
    )
    score_log_flush_seconds: float = Field(
        default=0.5,
        gt=0,
        le=60,
        description="The open spool segment is sealed at the first look (one each this long) after it is this "
        "old; the writer writes what is ready in one transaction once in this time, unless more is ready than a "
        "transaction takes (a score reaches the database within about three times this).",
    )
    score_log_batch_rows: int = Field(default=500, ge=1, description="Rows written per batch at most.")
    score_log_fsync: bool = Field(
        default=False,
        description="fsync the spool before each answer (survives a power cut, at a cost in throughput); "
        "otherwise it is fsynced every score_log_flush_seconds (an answered score survives any process crash).",
    )
    score_log_stop_seconds: float = Field(
        default=5.0,
        ge=0,
        le=60,
        description="At the stop, most time spent writing spooled scores; the rest is written at the next start.",
    )
    score_log_queue_rows: int = Field(
        default=200_000,
        ge=1,
        description="Scores held in memory before new ones are dropped (by the API and by its score-log writer, each).",
    )
    lead_hash_key: SecretStr | None = Field(
        default=None, description="Optional HMAC key for hashing lead ids in the score log."
    )
    rejection_reasons: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_REJECTION_REASONS),
        min_length=1,
        description="Reasons a rejected lead may carry, comma-separated (outcome events).",
    )
    max_connections: int = Field(
        default=1000,
        ge=1,
        description="Open connections at most; one more is closed at once (the open-files limit is raised to fit).",
    )
    header_timeout_seconds: float = Field(
        default=5.0, gt=0, description="Most time from a request's first byte to the end of its headers."
    )
    body_timeout_seconds: float = Field(
        default=15.0,
        gt=0,
        description="Most time from the end of a request's headers to the end of its body, and for a client to take "
        "some of an answer that waits for it.",
    )
    keep_alive_seconds: int = Field(default=5, ge=1, description="An idle keep-alive connection is closed after this.")
    max_inflight_leads: int = Field(
        default=2048,
        ge=2,
        description="Scoring work admitted at once, in leads (a batch weighs its leads), single leads' share "
        "included; past it, scoring requests get 503 with Retry-After.",
    )
    max_inflight_single_leads: int = Field(
        default=32,
        ge=1,
        description="Single-lead requests admitted at once (they are scored on the event loop): this share of "
        "LEADSCORE_MAX_INFLIGHT_LEADS is kept for them, batches never take it; past it, single-lead requests get "
        "503 with Retry-After, so an admitted one waits for a few scoring turns at most.",
    )
    drain_seconds: float = Field(
        default=3.0,
        ge=0,
        le=60,
        description="After SIGTERM: /readyz answers 503 at least this long (and until in-flight work is done), "
        "then the server stops.",
    )
    stop_seconds: int = Field(default=20, ge=1, description="Most time the stop waits for in-flight requests.")
    load_before_listening: bool = Field(
        default=False,
        description="Load the first model before taking connections (set for each of several workers, so none "
        "answers 503 while the others serve); otherwise the server listens at once and /readyz says why not ready.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    access_log: bool = Field(default=False, description="uvicorn's per-request access log (off: no per-request I/O).")

    @model_validator(mode="after")
    def _single_share_leaves_room_for_batches(self) -> ServingSettings:
        if self.max_inflight_single_leads >= self.max_inflight_leads:
            raise ValueError(
                f"LEADSCORE_MAX_INFLIGHT_SINGLE_LEADS ({self.max_inflight_single_leads}) must be less than "
                f"LEADSCORE_MAX_INFLIGHT_LEADS ({self.max_inflight_leads}): it is the single leads' share of it"
            )
        return self

    @field_validator("rejection_reasons", mode="before")
    @classmethod
    def _split_reasons(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [r.strip() for r in value.split(",") if r.strip()]
        return value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [k.strip() for k in value.split(",") if k.strip()]
        return value

    @field_validator("helper_cpus")
    @classmethod
    def _cpu_list(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("auto", "all"):
            parse_cpus(value)  # ValueError: "not a CPU list: ..."
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @property
    def placed_helper_cpus(self) -> frozenset[int] | None:
        """The CPUs the helpers are placed on: the list given (or set by ``leadscore serve`` for ``auto``, see
        :func:`serving.priority.split_cpus`); None for ``auto`` and ``all``, the scheduler's choice."""
        return None if self.helper_cpus in ("auto", "all") else parse_cpus(self.helper_cpus)

    @property
    def resolved_cache_dir(self) -> Path:
        return self.cache_dir if self.cache_dir is not None else self.home / "cache"

    @property
    def resolved_score_log_url(self) -> str:
        return self.score_log_url or f"sqlite:///{(self.home / 'scores.db').resolve()}"

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}@{self.alias}"


@lru_cache
def get_serving_settings() -> ServingSettings:
    return ServingSettings()
