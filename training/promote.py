"""Promotion through gates: the candidate moves to ``champion`` only if it is calibrated and not worse.

Both models score the candidate's own holdout (the newest period it was measured on). The first
model of a registered name becomes champion after the calibration gate alone.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

import mlflow
import pandas as pd

from leadscore.features.build import LABEL
from leadscore.models import packaging, registry
from leadscore.models.settings import MlflowSettings
from leadscore.training.metrics import binary_metrics
from leadscore.training.train import CHALLENGER, HOLDOUT_FILE

CHAMPION = "champion"


class GateFailed(RuntimeError):
    """The candidate did not pass the promotion gates; nothing was moved."""

    def __init__(self, result: PromoteResult):
        failed = "; ".join(g.detail for g in result.gates if not g.passed)
        super().__init__(f"version {result.candidate} not promoted: {failed}")
        self.result = result


@dataclass(frozen=True)
class Gate:
    """One promotion check: its name, whether it passed, and the figures it compared, in words."""

    name: str
    passed: bool
    detail: str


@dataclass
class PromoteResult:
    """What ``promote`` decided: the gates, both models' holdout metrics, and notes such as an overlap warning."""

    model_name: str
    candidate: str
    previous_champion: str | None
    promoted: bool
    gates: list[Gate] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return asdict(self)


def candidate_holdout(client: mlflow.MlflowClient, name: str, version: str) -> pd.DataFrame:
    """The holdout rows (features and label) logged by the run that trained ``version``."""
    run_id = client.get_model_version(name, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, HOLDOUT_FILE, tmp)
        return pd.read_parquet(path)


def promote(
    settings: MlflowSettings,
    version: str | None = None,
    tolerance: float = 0.005,
    max_ece: float = 0.05,
) -> PromoteResult:
    """Move ``champion`` to ``version`` (default: the ``challenger``) when the gates pass; raise GateFailed if not."""
    client = registry.configure(settings)
    name = settings.model_name
    candidate = str(version) if version is not None else registry.alias_version(client, name, CHALLENGER)
    if candidate is None:
        raise LookupError(f"registered model {name!r} has no {CHALLENGER!r} alias; train first or pass --version")
    champion = registry.alias_version(client, name, CHAMPION)
    result = PromoteResult(name, candidate, champion, promoted=False)
    if champion == candidate:
        result.warnings.append(f"version {candidate} is already {CHAMPION}")
        return result
    cache = settings.home / "cache"
    artifact, _, _ = packaging.fetch_artifact(client, f"models:/{name}/{candidate}", cache)
    holdout = candidate_holdout(client, name, candidate)
    y = holdout[LABEL].to_numpy()
    result.metrics["candidate"] = binary_metrics(y, artifact.score_frame(holdout)["probability"].to_numpy())
    ece = result.metrics["candidate"]["ece"]
    result.gates.append(Gate("calibrated", ece <= max_ece, f"holdout calibration error {ece:.4f} (max {max_ece})"))
    if champion is not None:
        current, _, _ = packaging.fetch_artifact(client, f"models:/{name}/{champion}", cache)
        result.metrics["champion"] = binary_metrics(y, current.score_frame(holdout)["probability"].to_numpy())
        new, old = result.metrics["candidate"]["roc_auc"], result.metrics["champion"]["roc_auc"]
        result.gates.append(
            Gate(
                "not_worse",
                new >= old - tolerance,
                f"holdout ROC AUC {new:.4f} vs champion v{champion} {old:.4f} (tolerance {tolerance})",
            )
        )
        window = (current.metadata.get("training_window") or {}).get("end")
        cutoff = (artifact.metadata.get("split") or {}).get("cutoff")
        if window and cutoff and pd.Timestamp(window) >= pd.Timestamp(cutoff):
            result.warnings.append(
                f"champion v{champion} was trained on leads up to {window}, inside the candidate's holdout "
                f"(from {cutoff}): its figures there are optimistic, so this comparison favours the champion"
            )
    if not all(g.passed for g in result.gates):
        raise GateFailed(result)
    passed = ", ".join(g.detail for g in result.gates)
    registry.move_alias(client, settings, name, CHAMPION, candidate, reason=f"gates passed: {passed}")
    result.promoted = True
    return result
