"""Promotion through gates: the candidate moves to ``champion`` only when every gate passes.

The gates (:mod:`training.gates`): the same input contract as the champion, better than chance and
than its baselines, not worse than the champion, calibrated, and servable. Every model scores the
candidate's own holdout (the newest period it was measured on); intervals are paired bootstraps over
its rows. The first model of a registered name has no champion to compare with; every other gate
applies. Each gate's figures are in the result, the ``--json`` output and the alias history's reason.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from leadscore.features.build import LABEL
from leadscore.models import packaging, registry
from leadscore.models.artifact import ScoringArtifact
from leadscore.models.contract import contract_of, describe_difference, fingerprint
from leadscore.models.settings import MlflowSettings
from leadscore.training import gates as gate_checks
from leadscore.training.gates import Gate
from leadscore.training.metrics import binary_metrics
from leadscore.training.train import CHALLENGER, HOLDOUT_FILE, HOLDOUT_SCORES_FILE

CHAMPION = "champion"


class GateFailed(RuntimeError):
    """The candidate did not pass the promotion gates; nothing was moved."""

    def __init__(self, result: PromoteResult):
        failed = "; ".join(g.detail for g in result.gates if not g.passed)
        super().__init__(f"version {result.candidate} not promoted: {failed}")
        self.result = result


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


def candidate_baselines(client: mlflow.MlflowClient, name: str, version: str) -> dict[str, np.ndarray]:
    """The holdout probabilities of the baselines trained beside ``version`` (logistic, manual processes)."""
    run_id = client.get_model_version(name, version).run_id
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, HOLDOUT_SCORES_FILE, tmp)
        except Exception as exc:
            raise LookupError(
                f"version {version} logged no {HOLDOUT_SCORES_FILE} (trained by an older leadscore): "
                "its baselines cannot be compared on its holdout; train it again"
            ) from exc
        scores = pd.read_parquet(path)
    return {c: scores[c].to_numpy(dtype=np.float64) for c in scores.columns if c != "model"}


def _contract(artifact: ScoringArtifact) -> tuple[dict[str, Any], str]:
    fields = contract_of(artifact.metadata, artifact.model.encoder_.columns_)
    return fields, fingerprint(fields)


def _servable(
    client: mlflow.MlflowClient, name: str, version: str, holdout: pd.DataFrame, expected: np.ndarray
) -> Gate:
    """Download the serving file into an empty cache, verify and load it as the API does, score the holdout."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            scorer, _, _ = packaging.fetch_served(client, f"models:/{name}/{version}", Path(tmp))
            table = scorer.score_table(holdout)["probability"]
            records = scorer.score_records(holdout.to_dict("records"), explain=True)
        except Exception as exc:  # noqa: BLE001 - whatever stops the API from loading it refuses the version
            return gate_checks.servable_gate(expected, None, f"{type(exc).__name__}: {exc}")
    request = np.array([r["probability"] for r in records])
    both = [gate_checks.servable_gate(expected, served) for served in (table, request)]  # batch and request paths
    failed = [g for g in both if not g.passed]
    return failed[0] if failed else max(both, key=lambda g: g.figures["max_difference"])


def _record_gates(client: mlflow.MlflowClient, name: str, version: str, result: PromoteResult) -> None:
    """Write the gates' outcome into the version's description and tags (what the registry page shows)."""
    passed = all(g.passed for g in result.gates)
    lines = [f"{'pass' if g.passed else 'FAIL'} {g.name}: {g.detail}" for g in result.gates]
    current = client.get_model_version(name, version).description or ""
    kept = current.split("\nGates:", 1)[0].removesuffix("\n")
    verdict = "passed" if passed else "refused"
    text = f"{kept}\nGates ({verdict}, champion v{result.previous_champion or '-'}):\n" + "\n".join(lines)
    client.update_model_version(name, version, description=text.strip())
    client.set_model_version_tag(name, version, "leadscore.gates", verdict)
    for gate in result.gates:
        client.set_model_version_tag(name, version, f"leadscore.gate.{gate.name}", "pass" if gate.passed else "FAIL")


def promote(
    settings: MlflowSettings,
    version: str | None = None,
    tolerance: float = 0.005,
    max_ece: float = 0.05,
    new_contract: bool = False,
    n_boot: int = gate_checks.N_BOOT,
) -> PromoteResult:
    """Move ``champion`` to ``version`` (default: the ``challenger``) when the gates pass; raise GateFailed if not.

    ``new_contract``: accept a candidate whose input contract differs from the champion's (recorded).
    """
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
    probability = artifact.score_frame(holdout)["probability"].to_numpy()
    result.metrics["candidate"] = binary_metrics(y, probability)
    baselines = candidate_baselines(client, name, candidate)
    for baseline, p in baselines.items():
        result.metrics[baseline] = binary_metrics(y, p)
    mine, my_print = _contract(artifact)
    champion_probability = None
    if champion is None:
        result.gates.append(gate_checks.contract_gate(my_print, None, new_contract))
    else:
        current, _, _ = packaging.fetch_artifact(client, f"models:/{name}/{champion}", cache)
        theirs, their_print = _contract(current)
        result.gates.append(
            gate_checks.contract_gate(my_print, their_print, new_contract, describe_difference(theirs, mine), champion)
        )
        if their_print == my_print:  # another contract's champion cannot read this holdout: no comparison
            champion_probability = current.score_frame(holdout)["probability"].to_numpy()
            result.metrics["champion"] = binary_metrics(y, champion_probability)
        window = (current.metadata.get("training_window") or {}).get("end")
        cutoff = (artifact.metadata.get("split") or {}).get("cutoff")
        if window and cutoff and pd.Timestamp(window) >= pd.Timestamp(cutoff):
            result.warnings.append(
                f"champion v{champion} was trained on leads up to {window}, inside the candidate's holdout "
                f"(from {cutoff}): its figures there are optimistic, so this comparison favours the champion"
            )
    result.gates += gate_checks.evaluate(
        y, probability, baselines, champion_probability, champion, tolerance, max_ece, n_boot
    )
    result.gates.append(_servable(client, name, candidate, holdout, probability))
    _record_gates(client, name, candidate, result)
    if not all(g.passed for g in result.gates):
        raise GateFailed(result)
    passed = "; ".join(f"{g.name}: {g.detail}" for g in result.gates)
    registry.move_alias(client, settings, name, CHAMPION, candidate, reason=f"gates passed: {passed}")
    result.promoted = True
    return result
