"""The drift reference of each model version that scored a window, read from the model registry.

A version's reference is in its serving file's metadata (``drift_reference``, written at training); it is
fetched as the API fetches a version (verified, into ``<home>/cache``). A version that cannot be read,
or that was trained before references were recorded, gets a sentence saying why instead: the report
shows it and goes on.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from leadscore.models import registry
from leadscore.models.drift import is_reference
from leadscore.models.scorer import SCORER_FILE, SERVING_FILES
from leadscore.models.serving_form import load_scorer
from leadscore.models.settings import MlflowSettings

NOT_RECORDED = "none recorded with this version (trained before leadscore recorded holdout references)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def fetch_references(settings: MlflowSettings, labels: Iterable[str]) -> dict[str, dict[str, Any] | str]:
    """``{"name/version": reference or why there is none}`` for each label."""
    labels = sorted(set(labels))
    if not settings.tracking_uri and not (settings.home / "mlflow.db").is_file():
        where = settings.resolved_tracking_uri
        return dict.fromkeys(labels, f"no model registry at {where} (set LEADSCORE_TRACKING_URI)")
    client = registry.configure(settings)
    out: dict[str, dict[str, Any] | str] = {}
    for label in labels:
        name, _, version = label.rpartition("/")
        if not name or not version.isdigit():
            out[label] = "not a registered model version"
            continue
        try:
            folder, _, _ = registry.fetch_files(
                client, f"models:/{name}/{version}", settings.home / "cache", SERVING_FILES
            )
            reference = load_scorer(folder / SCORER_FILE).metadata.get("drift_reference")
        except Exception as exc:  # noqa: BLE001 - the report goes on without this reference, saying why
            out[label] = f"could not be read from the registry ({_first_line(exc)})"
            continue
        out[label] = reference if is_reference(reference) else NOT_RECORDED
    return out
