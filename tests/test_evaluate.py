"""The evaluate job: same split rule as training, only holdout leads scored, manual processes on the same leads."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.features.build import load_training_frame
from leadscore.features.mapping import load_mapping
from leadscore.models.settings import MlflowSettings
from leadscore.training.evaluate import evaluate, evaluate_artifact
from leadscore.training.report import write_fit_report
from leadscore.training.split import split_frame
from leadscore.training.train import FitResult, TrainOptions, fit, train
from tests.factories import write_crm_folder

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "data" / "rules" / "example-points.yaml"
X_MAPPING = ROOT / "data" / "mappings" / "x-education.yaml"


@pytest.fixture(scope="module")
def small_crm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_crm_folder(tmp_path_factory.mktemp("crm-eval"), n=4000, seed=11)


@pytest.fixture(scope="module")
def small_fit(small_crm: Path) -> FitResult:
    tf = load_training_frame(small_crm, load_mapping(None))
    return fit(tf, TrainOptions(data=small_crm, n_estimators=40, min_conversions=40))


def test_evaluate_scores_only_the_training_runs_holdout(small_fit, small_crm, tmp_path):
    out = tmp_path / "report"
    summary = evaluate_artifact(small_fit.artifact, small_crm, None, out, leads_per_rep_week=5, reps=2, rules=RULES)
    scored = pd.read_csv(out / "holdout_scores.csv")
    frame = small_fit.frame.frame
    assert scored["lead_id"].tolist() == frame["lead_id"].iloc[small_fit.split.holdout].tolist()
    assert not set(scored["lead_id"]) & set(frame["lead_id"].iloc[small_fit.split.train])
    cutoff = pd.Timestamp(small_fit.artifact.metadata["split"]["cutoff"])
    assert (frame.set_index("lead_id").loc[scored["lead_id"], "created_at"] >= cutoff).all()
    assert f"at or after {cutoff}" in summary["split_rule"]
    # the same leads, the same model: the same figures as the training run measured
    assert summary["metrics"]["model"]["roc_auc"] == pytest.approx(small_fit.metrics["model"]["roc_auc"])
    assert summary["metrics"]["manual: MQL flag"]["roc_auc"] == pytest.approx(
        small_fit.metrics["manual:MQL flag"]["roc_auc"]
    )
    assert "Example points (Marketo-style)" in summary["equal_volume"]
    assert summary["capacity"]["available"] and summary["capacity"]["capacity_per_week"] == 10
    assert summary["notes"] == []  # same data as training: no digest warning
    assert {"source", "company_size_band", "industry"} == set(summary["segments"])
    page = (out / "report.html").read_text()
    assert "Example points (Marketo-style)" in page and "@example.com" not in page


def test_changed_data_is_reported(small_fit, small_crm, tmp_path):
    artifact = copy.copy(small_fit.artifact)
    artifact.metadata = {**small_fit.artifact.metadata, "data_digest": "0" * 64}
    summary = evaluate_artifact(artifact, small_crm, None, tmp_path / "r")
    assert any("differs from the training data" in note for note in summary["notes"])
    assert "differs from the training data" in (tmp_path / "r" / "report.html").read_text()


def test_fit_report_is_the_same_report(small_fit, tmp_path):
    summary = write_fit_report(small_fit, tmp_path / "fit")
    assert (tmp_path / "fit" / "report.html").exists()
    assert set(summary["equal_volume"]) == {"MQL flag", "Manual points", "BANT"}
    assert summary["metrics"]["model"]["roc_auc"] == pytest.approx(small_fit.metrics["model"]["roc_auc"])
    assert any("Capacity assumed" in note for note in summary["notes"])


def test_x_education_report_has_lead_quality_as_the_manual_process(x_education, tmp_path):
    mapping = load_mapping(X_MAPPING)
    tf = load_training_frame(x_education, mapping)
    result = fit(tf, TrainOptions(data=x_education, config=X_MAPPING, n_estimators=60, min_conversions=40))
    out = tmp_path / "x"
    summary = evaluate_artifact(result.artifact, x_education, None, out, leads_per_rep_week=30, reps=2)
    assert list(summary["equal_volume"]) == ["Lead Quality"]
    split = split_frame(tf, 0.2, 0)
    scored = pd.read_csv(out / "holdout_scores.csv")
    assert scored["Prospect ID"].tolist() == tf.frame["Prospect ID"].iloc[split.holdout].tolist()
    assert summary["split_rule"].startswith("random split")
    assert summary["holdout"]["n"] == 1848 and summary["holdout"]["conversions"] == 712
    assert summary["capacity"]["available"] is False  # no timestamps in Leads.csv
    assert {"Tags", "Lead Quality", "Last Activity"} <= set(summary["features"]["excluded"])
    assert "Lead Quality" not in summary["features"]["model_features"]
    assert summary["metrics"]["model"]["roc_auc"] > summary["metrics"]["manual: Lead Quality"]["roc_auc"] > 0.5
    assert "Lead Quality" in (out / "report.html").read_text()


@pytest.mark.slow
def test_evaluate_a_registered_model(small_crm, tmp_path, monkeypatch):
    """Through the registry: train (with the report hook) into an embedded store, then evaluate by model URI."""
    settings = MlflowSettings(home=tmp_path / "home", model_name="eval-test", experiment="eval-test")
    trained = train(
        TrainOptions(data=small_crm, n_estimators=30, min_conversions=40), settings, extra_artifacts=write_fit_report
    )
    summary = evaluate(settings, f"models:/eval-test/{trained.version}", small_crm, None, tmp_path / "out", rules=None)
    assert summary["model"] == f"eval-test v{trained.version}"
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["holdout"]["n"] == len(trained.fit.split.holdout)
    assert np.isclose(summary["metrics"]["model"]["roc_auc"], trained.metrics["model"]["roc_auc"])
