"""How a training run appears in MLflow: one experiment per input contract, readable run names, descriptions, tags.

- experiment: ``--experiment`` (``LEADSCORE_EXPERIMENT``) when given, else one per input contract named
  from the mapping, e.g. ``x-education · opportunity 90d · 3fa2c1d0`` (mapping, target, horizon, the
  contract's fingerprint), tagged ``mlflow.experimentKind = custom_model_development`` so the MLflow 3 UI
  opens on its training runs rather than the GenAI overview (UIs with the GenAI / model-training switch
  follow the link's ``workflowType=machine_learning`` instead: :func:`experiment_url`), and described
  (``mlflow.note.content``);
- run name: data, target and date, e.g. ``Leads.csv · opportunity 90d · 2026-12-01 14:05``;
- model version: a description with data, target, horizon, the chosen model and its holdout AUC
  against each baseline and the findings; tags with the same key figures.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from leadscore.models.selection import cv_words

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CUSTOM_MODEL_DEVELOPMENT = "custom_model_development"
NOTE_TAG = "mlflow.note.content"


def mapping_name(config: Path | None, data: Path) -> str:
    """The mapping's name: its file's stem, or ``crm`` for leadscore's default CRM mapping."""
    if config is not None:
        return Path(config).stem
    return "crm" if Path(data).is_dir() else Path(data).stem


def experiment_name(config: Path | None, data: Path, metadata: dict[str, Any]) -> str:
    """One experiment per input contract: mapping, target, horizon and the contract's fingerprint."""
    return (
        f"{mapping_name(config, data)} · {metadata['target']} {metadata['horizon_days']}d · "
        f"{metadata['contract_fingerprint'][:8]}"
    )


def experiment_tags(metadata: dict[str, Any]) -> dict[str, str]:
    contract = metadata.get("contract") or {}
    features = contract.get("features") or {}
    counts = ", ".join(f"{len(v)} {k}" for k, v in features.items())
    return {
        EXPERIMENT_KIND_TAG: CUSTOM_MODEL_DEVELOPMENT,
        "leadscore.contract": metadata["contract_fingerprint"],
        NOTE_TAG: (
            f"Lead scoring runs of one input contract ({metadata['contract_fingerprint']}): "
            f"{contract.get('form')} data keyed by {contract.get('id')!r}, features {counts}; "
            f"target {metadata['target']} within {metadata['horizon_days']} days."
        ),
    }


def run_name(data: Path, metadata: dict[str, Any], now: datetime | None = None) -> str:
    moment = now or datetime.now(UTC)
    return f"{Path(data).name} · {metadata['target']} {metadata['horizon_days']}d · {moment:%Y-%m-%d %H:%M}"


def version_tags(data: Path, metadata: dict[str, Any]) -> dict[str, str]:
    """Key figures as model version tags (searchable, shown in the registry)."""
    metrics = metadata.get("metrics") or {}
    tags = {
        "leadscore.data": Path(data).name,
        "leadscore.target": str(metadata["target"]),
        "leadscore.horizon_days": str(metadata["horizon_days"]),
        "leadscore.model_kind": str(metadata.get("model_kind")),
        "leadscore.contract": metadata["contract_fingerprint"],
        "leadscore.findings": str(len(metadata.get("findings") or [])),
    }
    for name, values in metrics.items():
        key = "holdout_auc" if name == "model" else f"holdout_auc.{name.replace(':', '.')}"
        tags[f"leadscore.{key}"] = f"{values['roc_auc']:.4f}"
    return tags


def version_description(data: Path, metadata: dict[str, Any]) -> str:
    """A readable model version description: what it learned from and how it compares on its holdout."""
    metrics = metadata.get("metrics") or {}
    model = metrics.get("model", {}).get("roc_auc", float("nan"))
    versus = "; ".join(f"{name} {v['roc_auc']:.4f}" for name, v in metrics.items() if name != "model")
    split = metadata.get("split") or {}
    selection = metadata.get("selection") or {}
    lines = [
        f"Data: {Path(data).name} ({metadata.get('n_train')} training, {metadata.get('n_holdout')} holdout leads; "
        f"{split.get('method')} split{', holdout from ' + str(split['cutoff']) if split.get('cutoff') else ''}).",
        f"Target: {metadata['target']} within {metadata['horizon_days']} days.",
        f"Model: {metadata.get('model_kind')}"
        + (
            f" (chosen by {cv_words(selection.get('cv', '').startswith('time'))}: "
            + ", ".join(f"{n} {c['mean_auc']:.4f}" for n, c in (selection.get("candidates") or {}).items())
            + ")"
            if selection
            else ""
        )
        + ".",
        f"Holdout ROC AUC {model:.4f} vs baselines: {versus or 'none'}.",
        *(metadata.get("findings") or []),
        "Gates: not yet run (leadscore promote).",
    ]
    return "\n".join(lines)


def experiment_url(tracking_uri: str, experiment_id: str) -> str | None:
    """The MLflow UI page of an experiment's training runs (for an ``http(s)`` tracking server).

    MLflow 3 UIs with the GenAI / model-training switch follow the ``workflowType`` query parameter
    over the experiment's kind tag, so the link names it.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return None
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"
