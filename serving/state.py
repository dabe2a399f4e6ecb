"""Typed application state: the model that serves (swapped as one reference), how it is loaded, and reloads."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from leadscore.features.files import write_atomic
from leadscore.features.online import lead_feature_record
from leadscore.features.schema import LeadRecord
from leadscore.models.scorer import SCORER_FILE, SERVING_FILES, Scorer
from leadscore.serving.registry_errors import CONNECTION_REFUSED, TIMEOUT, describe, registry_error_kind
from leadscore.serving.schemas import EXAMPLE_LEAD
from leadscore.serving.scoring import LoadedModel as LoadedModel
from leadscore.serving.settings import ServingSettings

if TYPE_CHECKING:
    from leadscore.serving.batch import BatchWorker
    from leadscore.serving.batcher import MicroBatcher
    from leadscore.serving.metrics import Metrics
    from leadscore.serving.spool import SpooledScoreLog

log = logging.getLogger("leadscore.serving")


class ModelLoader(Protocol):
    """Where models come from: the registry in production, an in-memory scorer in tests."""

    def load_initial(self) -> LoadedModel:
        """The model to start with (raise when none is available)."""

    def target_version(self) -> str | None:
        """The version the alias points at now; None when unknown (e.g. registry unreachable)."""

    def load_version(self, version: str) -> LoadedModel:
        """Fetch and load one version."""


class StaticLoader:
    """Serve one in-memory scorer (tests, notebooks); never reloads."""

    def __init__(self, scorer: Scorer, name: str = "in-memory", version: str = "1") -> None:
        self.scorer, self.name, self.version = scorer, name, version

    def load_initial(self) -> LoadedModel:
        return LoadedModel(self.scorer, self.name, self.version, "static")

    def target_version(self) -> str | None:
        return self.version

    def load_version(self, version: str) -> LoadedModel:
        return self.load_initial()


class _NotLoaded:
    """The loader until the real one is built (the registry client is made after the server listens)."""

    def load_initial(self) -> LoadedModel:
        raise RuntimeError("the registry client is not ready yet")

    def target_version(self) -> str | None:
        return None

    def load_version(self, version: str) -> LoadedModel:
        return self.load_initial()


NOT_LOADED: ModelLoader = _NotLoaded()


class RegistryLoader:
    """Resolve ``models:/<name>@<alias>`` in MLflow, cache it locally, fall back to the cache when unreachable.

    Only the serving file (arrays + JSON, never a pickle) is downloaded and loaded; its SHA-256 is checked
    against the one registered with the version at every download and cache hit (:func:`models.registry.fetch_files`).
    """

    def __init__(self, settings: ServingSettings) -> None:
        # A serving process must not hang on an unreachable registry: fail fast, keep serving, retry at the next poll.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        from leadscore.models import registry

        self._registry = registry
        self.settings = settings
        self.cache_dir = settings.resolved_cache_dir
        self.client = registry.configure(settings)

    @property
    def _pointer(self) -> Path:
        return self.cache_dir / self.settings.model_name / f"alias-{self.settings.alias}.json"

    def _remember(self, version: str) -> None:
        """Record the alias target last served, so a cold start without the registry serves the same version."""
        write_atomic(self._pointer, json.dumps({"version": version, "at": datetime.now(UTC).isoformat()}))

    def _fetch(self, model_uri: str) -> tuple[Scorer, str, str]:
        folder, name, version = self._registry.fetch_files(self.client, model_uri, self.cache_dir, SERVING_FILES)
        return Scorer.load(folder / SCORER_FILE), name, version

    def load_initial(self) -> LoadedModel:
        try:  # the alias is resolved here, so a registry that is down is not taken for a missing alias
            target = self.target_version()
            scorer, name, version = self._fetch(f"models:/{self.settings.model_name}/{target}")
        except Exception as exc:
            # the cause in words: an unreachable registry, or a version refused for what its files hold
            refused = isinstance(exc, (self._registry.ChecksumMismatch, ValueError, FileNotFoundError))
            cause = f"{'version refused' if refused else 'registry failed'} ({type(exc).__name__}: {_short(exc)})"
            cached = self._cached_version()
            if cached is None:
                raise RuntimeError(f"{self.settings.model_uri}: {cause}; and no cached version") from exc
            log.warning("%s: serving cached %s version %s", cause, self.settings.model_name, cached)
            folder = self._registry.verified_cached(self.cache_dir, self.settings.model_name, cached, SERVING_FILES)
            return LoadedModel(Scorer.load(folder / SCORER_FILE), self.settings.model_name, cached, "cache")
        self._remember(version)
        return LoadedModel(scorer, name, version, "registry")

    def _cached_version(self) -> str | None:
        versions = self._registry.cached_versions(self.cache_dir, self.settings.model_name, SERVING_FILES)
        try:
            remembered = json.loads(self._pointer.read_text(encoding="utf-8"))["version"]
        except (OSError, ValueError, KeyError, TypeError):
            remembered = None
        if remembered in versions:
            return remembered
        return versions[-1] if versions else None

    def target_version(self) -> str | None:
        """The version the alias points at; a failure (registry down, slow, alias missing) is raised, so the
        poller can tell them apart (:mod:`serving.registry_errors`)."""
        return str(self.client.get_model_version_by_alias(self.settings.model_name, self.settings.alias).version)

    def load_version(self, version: str) -> LoadedModel:
        uri = f"models:/{self.settings.model_name}/{version}"
        scorer, name, got = self._fetch(uri)
        self._remember(got)
        return LoadedModel(scorer, name, got, "registry")


def warm(model: LoadedModel) -> None:
    """Score the example lead once (with reasons): a model that cannot do that is never served."""
    record = lead_feature_record(LeadRecord.model_validate(EXAMPLE_LEAD), datetime.now(UTC))
    (out,) = model.scorer.score_records([record], explain=True)
    if not 0.0 <= out["probability"] <= 1.0:
        raise ValueError(f"warm-up probability {out['probability']!r} is not in [0, 1]")


@dataclass
class AppState:
    """Everything the routes need; ``model`` is replaced as one reference, never mutated."""

    settings: ServingSettings
    loader: ModelLoader
    score_log: SpooledScoreLog
    metrics: Metrics
    hash_lead: Callable[[str], str]
    batcher: MicroBatcher
    batch_worker: BatchWorker
    model: LoadedModel | None = None
    last_checked_at: datetime | None = None
    last_reload_at: datetime | None = None
    last_reload_error: str | None = None
    last_poll_error: str | None = None
    refused_version: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def install(self, model: LoadedModel) -> None:
        """Warm ``model`` (already loaded beside the serving one), then swap it in."""
        warm(model)
        previous = self.model
        self.model = model  # one reference assignment: requests see the old or the new model, never a mix
        self.last_reload_at = datetime.now(UTC)
        self.last_reload_error = None
        self.refused_version = None
        self.metrics.set_model(model.name, model.version, model.source, previous)
        log.info("serving %s version %s (source: %s)", model.name, model.version, model.source)

    def load_initial(self) -> None:
        with self._lock:
            self.install(self.loader.load_initial())

    def check_for_new_version(self) -> bool:
        """One poll: when the alias moved, load + warm the new version and swap; a failure keeps the old one."""
        with self._lock:
            if self.model is None:
                self.install(self.loader.load_initial())
                return True
            self.last_checked_at = datetime.now(UTC)
            try:
                target = self.loader.target_version()
            except Exception as exc:  # noqa: BLE001
                self.poll_failed(exc)
                return False
            self.last_poll_error = None
            if target is None or (target == self.model.version and self.model.source != "cache"):
                return False
            if target == self.refused_version:
                return False
            try:
                self.install(self.loader.load_version(target))
            except Exception as exc:  # noqa: BLE001 - a bad version is refused, the old one keeps serving
                if registry_error_kind(exc) in (CONNECTION_REFUSED, TIMEOUT):  # the registry, not the version
                    self.poll_failed(exc)
                    return False
                self.refused_version = target
                self.last_reload_error = f"version {target} refused: {type(exc).__name__}: {_short(exc)}"
                self.metrics.reload_failed()
                log.error("reload refused, still serving version %s: %s", self.model.version, self.last_reload_error)
                return False
            return True

    def poll_failed(self, exc: BaseException) -> None:
        """Record a failed registry call: its kind in ``last_poll_error``, the log and the metrics."""
        self.last_poll_error = describe(exc)
        self.metrics.registry_errors.labels(registry_error_kind(exc)).inc()
        log.warning("registry check failed: %s", self.last_poll_error)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return text[:300]


def model_info(state: AppState, model: LoadedModel) -> dict[str, Any]:
    meta = model.scorer.metadata
    metrics = dict(meta.get("metrics") or {})
    main = metrics.pop("model", {})
    return {
        "name": model.name,
        "version": model.version,
        "alias": state.settings.alias,
        "source": model.source,
        "loaded_at": model.loaded_at,
        "trained_at": meta.get("trained_at"),
        "target": meta.get("target"),
        "horizon_days": meta.get("horizon_days"),
        "training_window": meta.get("training_window"),
        "holdout_window": meta.get("holdout_window"),
        "metrics": main,
        "baseline_metrics": metrics,
        "tiers": [t.model_dump() for t in model.scorer.routing.tiers],
        "leads_per_week": model.scorer.routing.leads_per_week,
        "feature_columns": list(meta.get("feature_columns") or model.scorer.input_columns),
        "poll_seconds": state.settings.poll_seconds,
        "last_checked_at": state.last_checked_at,
        "last_reload_at": state.last_reload_at,
        "last_reload_error": state.last_reload_error,
        "last_poll_error": state.last_poll_error,
    }
