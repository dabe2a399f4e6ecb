"""MLflow registry helpers: register versions, move aliases (with history), resolve and cache model files.

Only MLflow is imported here, so the scoring service can use it without the training stack
(logging the model is :mod:`models.packaging`)."""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from leadscore.models.settings import MlflowSettings

MODEL_PATH = "model"
HISTORY_SUFFIX = "-alias-history"
CHECKSUM_TAG = "leadscore.sha256."  # + a file name: the model version tag holding that file's SHA-256
CHECKSUMS_FILE = "sha256.json"  # in a cached folder: the registered checksums its files were verified against
_log = logging.getLogger(__name__)


class ChecksumMismatch(ValueError):
    """A model file's bytes do not match the SHA-256 recorded when its version was registered."""


def sha256_file(path: Path) -> str:
    """The hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def checksum_tags(files: Mapping[str, Path]) -> dict[str, str]:
    """Model version tags recording each file's SHA-256 (``leadscore.sha256.<file name>``)."""
    return {f"{CHECKSUM_TAG}{name}": sha256_file(path) for name, path in files.items()}


def recorded_checksums(client: MlflowClient, name: str, version: str, files: Sequence[str]) -> dict[str, str]:
    """The SHA-256 registered for each of ``files`` of a model version; refuses a version that records none."""
    tags = client.get_model_version(name, version).tags or {}
    missing = [file for file in files if f"{CHECKSUM_TAG}{file}" not in tags]
    if missing:
        raise ChecksumMismatch(
            f"models:/{name}/{version} records no sha256 for {', '.join(missing)}: it was registered by a leadscore "
            "whose API loaded pickles, and it is refused; register it again in the serving form with "
            f"`leadscore convert-model --model-uri models:/{name}/{version}` (a trusted, one-off step) or train anew"
        )
    return {file: tags[f"{CHECKSUM_TAG}{file}"] for file in files}


def _mismatched(folder: Path, expected: Mapping[str, str]) -> list[str]:
    """The files of ``folder`` whose bytes do not match ``expected`` (a missing file counts)."""
    return [f for f, digest in expected.items() if not (folder / f).is_file() or sha256_file(folder / f) != digest]


def verified_cached(cache_dir: Path, name: str, version: str, files: Sequence[str]) -> Path:
    """The cached folder of a version, after checking its files against the checksums verified at download.

    For a cold start without the registry. A file that does not match is refused, naming it.
    """
    folder = cached_folder(cache_dir, name, version)
    try:
        expected = json.loads((folder / CHECKSUMS_FILE).read_text(encoding="utf-8"))
        expected = {file: str(expected[file]) for file in files}
    except (OSError, ValueError, KeyError, TypeError):
        raise ChecksumMismatch(f"{folder}: no verified checksums for {', '.join(files)}; not served") from None
    bad = _mismatched(folder, expected)
    if bad:
        raise ChecksumMismatch(f"{folder / bad[0]}: does not match the sha256 registered for it; not served")
    return folder


def configure(settings: MlflowSettings) -> MlflowClient:
    """Point MLflow at the configured store (creating the embedded one's folder) and return a client."""
    if not settings.tracking_uri:
        settings.home.mkdir(parents=True, exist_ok=True)
    uri = settings.resolved_tracking_uri
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(client: MlflowClient, name: str, settings: MlflowSettings, tags: dict[str, str] | None = None) -> str:
    """The id of experiment ``name``, created on first use (in the embedded artifact folder when embedded);
    ``tags`` are set on it (an existing experiment gets those it lacks)."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        for key, value in (tags or {}).items():
            if key not in found.tags:
                client.set_experiment_tag(found.experiment_id, key, value)
        return found.experiment_id
    location = f"{settings.artifact_location}/{_folder_name(name)}" if settings.artifact_location else None
    return client.create_experiment(name, artifact_location=location, tags=tags)


def _folder_name(name: str) -> str:
    """An experiment name as a folder name (letters, digits, '-', '_', '.'; the rest '_')."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def register(
    client: MlflowClient,
    info: mlflow.models.model.ModelInfo,
    name: str,
    run_id: str,
    tags: dict[str, str],
    description: str | None = None,
) -> str:
    """Create a new version of registered model ``name`` from a logged model; returns the version number as text."""
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Lead conversion likelihood (leadscore).")
    version = client.create_model_version(
        name, source=info.model_uri, run_id=run_id, tags=tags, model_id=info.model_id, description=description
    )
    return str(version.version)


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    """The version an alias points at, or None when it is not set (or the model does not exist)."""
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


@dataclass(frozen=True)
class AliasMove:
    alias: str
    from_version: str | None
    to_version: str
    actor: str
    at: str
    reason: str


def move_alias(
    client: MlflowClient, settings: MlflowSettings, name: str, alias: str, version: str, reason: str
) -> AliasMove:
    """Point ``alias`` at ``version`` and record the move (who, when, from, to, why) in the history experiment."""
    move = AliasMove(
        alias=alias,
        from_version=alias_version(client, name, alias),
        to_version=str(version),
        actor=os.environ.get("LEADSCORE_ACTOR") or getpass.getuser(),
        at=datetime.now(UTC).isoformat(timespec="seconds"),
        reason=reason,
    )
    client.set_registered_model_alias(name, alias, str(version))
    history = experiment_id(client, f"{name}{HISTORY_SUFFIX}", settings)
    run = client.create_run(
        history,
        run_name=f"{alias}: {move.from_version or '-'} -> {move.to_version}",
        tags={f"leadscore.{k}": str(v) for k, v in move.__dict__.items() if v is not None},
    )
    client.set_terminated(run.info.run_id)
    return move


def alias_history(client: MlflowClient, name: str) -> list[dict[str, Any]]:
    """Recorded alias moves of a registered model, newest first."""
    found = client.get_experiment_by_name(f"{name}{HISTORY_SUFFIX}")
    if found is None:
        return []
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time DESC"], max_results=1000)
    return [
        {k.removeprefix("leadscore."): v for k, v in r.data.tags.items() if k.startswith("leadscore.")} for r in runs
    ]


def resolve_version(client: MlflowClient, model_uri: str) -> tuple[str, str]:
    """``models:/name@alias`` or ``models:/name/version`` -> (name, version)."""
    if not model_uri.startswith("models:/"):
        raise ValueError(
            f"model URI {model_uri!r} is not of the form models:/<name>@<alias> or models:/<name>/<version>"
        )
    rest = model_uri.removeprefix("models:/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        version = alias_version(client, name, alias)
        if version is None:
            raise LookupError(f"{model_uri}: registered model {name!r} has no alias {alias!r}")
        return name, version
    name, _, version = rest.partition("/")
    if not version.isdigit():
        raise ValueError(f"model URI {model_uri!r}: expected models:/<name>/<version number>")
    return name, version


def cached_folder(cache_dir: Path, name: str, version: str) -> Path:
    """Where a downloaded version of a registered model is cached: ``<cache_dir>/<name>/<version>/``."""
    return Path(cache_dir) / name / str(version)


def cached_versions(cache_dir: Path, name: str, files: Sequence[str]) -> list[str]:
    """Versions of ``name`` whose cached folder holds ``files``, oldest first."""
    folder = Path(cache_dir) / name
    found = [p.name for p in folder.glob("*") if p.name.isdigit() and all((p / f).is_file() for f in files)]
    return sorted(found, key=int)


def fetch_files(client: MlflowClient, model_uri: str, cache_dir: Path, files: Sequence[str]) -> tuple[Path, str, str]:
    """Download (once) the named files of a registered model version, verified; returns (folder, name, version).

    Each file's SHA-256 must equal the one recorded at registration (:func:`recorded_checksums`), checked
    at every download and every cache hit. A cached file that does not match is fetched again; a
    download that does not match is tried once more, then refused with :class:`ChecksumMismatch` naming
    the file, and nothing is cached. Versions are cached under ``cache_dir/<name>/<version>/``; a
    download goes to a temporary folder first and is renamed into place, so a cached version is always
    complete and verified.
    """
    name, version = resolve_version(client, model_uri)
    expected = recorded_checksums(client, name, version, files)
    target = cached_folder(cache_dir, name, version)
    if all((target / file).is_file() for file in files):
        bad = _mismatched(target, expected)
        if not bad:
            return target, name, version
        _log.warning(
            "cached %s of %s version %s does not match its registered sha256: fetching it again",
            ", ".join(bad),
            name,
            version,
        )
    for attempt in (1, 2):
        try:
            _download(client, name, version, target, files, expected)
            break
        except ChecksumMismatch:
            if attempt == 2:
                raise
    return target, name, version


def _carry_over(target: Path, ready: Path, files: Sequence[str]) -> dict[str, str]:
    """Copy into ``ready`` the files of an existing cached folder that this download did not ask for and that
    still match the checksums they were verified against; returns those checksums."""
    try:
        before = json.loads((target / CHECKSUMS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    kept = {}
    for file, digest in before.items() if isinstance(before, dict) else ():
        if file not in files and (target / file).is_file() and sha256_file(target / file) == digest:
            shutil.copy2(target / file, ready / file)
            kept[file] = str(digest)
    return kept


def _download(
    client: MlflowClient, name: str, version: str, target: Path, files: Sequence[str], expected: Mapping[str, str]
) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{version}-"))
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{name}/{version}",
                dst_path=str(staging / "download"),
                tracking_uri=client.tracking_uri,
            )
        )
        ready = staging / "ready"
        ready.mkdir()
        for file in files:
            found = next(local.rglob(file), None)
            if found is None:
                raise FileNotFoundError(
                    f"models:/{name}/{version} holds no {file}: not a leadscore model (or one packaged before it)"
                )
            shutil.move(found, ready / file)
        bad = _mismatched(ready, expected)
        if bad:
            raise ChecksumMismatch(
                f"models:/{name}/{version}: {bad[0]} as downloaded does not match the sha256 registered for it "
                "(the stored file is damaged or was replaced); refused, nothing cached"
            )
        recorded = {**_carry_over(target, ready, files), **expected}
        (ready / CHECKSUMS_FILE).write_text(json.dumps(recorded, sort_keys=True), encoding="utf-8")
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        try:
            ready.rename(target)
        except OSError:
            if _mismatched(target, expected):  # another process may have cached it meanwhile
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
