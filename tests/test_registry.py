"""Training, registration and promotion against a real `mlflow server` on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from leadscore.models import packaging, registry
from leadscore.models.scorer import ARTIFACT_FILE, MODEL_FILES, SCORER_FILE, Scorer
from leadscore.models.settings import MlflowSettings
from leadscore.training.promote import CHAMPION, GateFailed, promote
from leadscore.training.train import CHALLENGER, TrainOptions, train

# Each test runs against an `mlflow server` backed by SQLite and one backed by PostgreSQL.
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.parametrize("server_settings", ["sqlite", "postgresql"], indirect=True),
]


def options(folder: Path, **kw: object) -> TrainOptions:
    return TrainOptions(**{"data": folder, "n_estimators": 60, "min_conversions": 40, **kw})


def test_train_logs_everything_and_registers_a_challenger(server_settings: MlflowSettings, crm_folder: Path) -> None:
    result = train(options(crm_folder), server_settings)
    client = MlflowClient(server_settings.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert {
        "model.roc_auc",
        "model.pr_auc",
        "model.brier",
        "model.log_loss",
        "model.ece",
        "model.lift_top10",
        "model.conversion_top10",
        "logistic_regression.roc_auc",
        "manual_MQL flag.roc_auc",
    } <= set(run.data.metrics)
    assert run.data.params["target"] == "opportunity" and run.data.params["horizon_days"] == "90"
    assert len(run.data.tags["leadscore.data_digest"]) == 64
    assert "mlflow.source.git.commit" in run.data.tags
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == [crm_folder.name]
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert {"holdout.parquet", "metadata.json", "routing.json"} <= artifacts
    version = client.get_model_version(server_settings.model_name, result.version)
    assert registry.alias_version(client, server_settings.model_name, CHALLENGER) == result.version
    artifact, name, got = packaging.fetch_artifact(
        client, f"models:/{name_of(server_settings)}@{CHALLENGER}", server_settings.home / "cache"
    )
    assert (name, got) == (server_settings.model_name, result.version) and version.run_id == result.run_id
    assert artifact.metadata["data_digest"] == run.data.tags["leadscore.data_digest"]
    cached = registry.cached_folder(server_settings.home / "cache", name, got)
    assert sorted(p.name for p in cached.iterdir()) == sorted([ARTIFACT_FILE, registry.CHECKSUMS_FILE])
    registry.fetch_files(client, f"models:/{name}/{got}", server_settings.home / "cache", (SCORER_FILE,))
    assert sorted(p.name for p in cached.iterdir()) == sorted([*MODEL_FILES, registry.CHECKSUMS_FILE])  # kept
    (cached / SCORER_FILE).unlink()  # a folder cached by an older leadscore: fetched again, whole
    assert registry.cached_versions(server_settings.home / "cache", name, MODEL_FILES) == []
    registry.fetch_files(client, f"models:/{name}/{got}", server_settings.home / "cache", MODEL_FILES)
    assert Scorer.load(cached / SCORER_FILE).metadata["data_digest"] == artifact.metadata["data_digest"]
    model_dir = Path(client.download_artifacts(result.run_id, "metadata.json", str(server_settings.home)))
    assert json.loads(model_dir.read_text())["split"]["method"] == "time"


def name_of(settings: MlflowSettings) -> str:
    return settings.model_name


def test_promotion_gates_and_alias_history(server_settings: MlflowSettings, crm_folder: Path) -> None:
    first = train(options(crm_folder), server_settings)
    promoted = promote(server_settings)
    assert promoted.promoted and promoted.previous_champion is None
    assert [g.name for g in promoted.gates] == [  # the first model: every gate but the champion comparison
        "same_contract",
        "better_than_chance",
        "not_worse_than_baselines",
        "calibrated",
        "servable",
    ]

    weak = train(options(crm_folder, n_estimators=1, learning_rate=0.01, seed=3, select=False), server_settings)
    with pytest.raises(GateFailed, match="not promoted") as failed:
        promote(server_settings)
    assert {g.name: g.passed for g in failed.value.result.gates}["not_worse_than_champion"] is False
    client = MlflowClient(server_settings.tracking_uri)
    assert registry.alias_version(client, server_settings.model_name, CHAMPION) == first.version

    better = train(options(crm_folder, seed=1), server_settings)
    result = promote(server_settings, tolerance=0.05)
    assert result.promoted and result.previous_champion == first.version and result.candidate == better.version
    assert result.warnings == []  # both trained on the same period, before the same holdout
    history = registry.alias_history(client, server_settings.model_name)
    moves = [(h["alias"], h.get("from_version"), h["to_version"]) for h in history]
    assert moves[:2] == [(CHAMPION, first.version, better.version), (CHALLENGER, weak.version, better.version)]
    assert (CHAMPION, None, first.version) in moves
    assert all(h["actor"] and h["at"] and h["reason"] for h in history)
    champion_move = history[0]["reason"]  # every gate's figures are in the alias history
    assert all(f"{g.name}: {g.detail}" in champion_move for g in result.gates)
    assert "not_worse_than_champion: AUC" in champion_move and "[" in champion_move


def test_a_failed_registration_leaves_no_version(
    server_settings: MlflowSettings, crm_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("alias service down")

    monkeypatch.setattr(registry, "move_alias", refuse)
    with pytest.raises(RuntimeError, match="alias service down"):
        train(options(crm_folder), server_settings)
    client = MlflowClient(server_settings.tracking_uri)
    assert client.search_model_versions(f"name='{server_settings.model_name}'") == []
    runs = client.search_runs([client.get_experiment_by_name(server_settings.experiment).experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
