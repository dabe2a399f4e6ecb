"""Acceptance on real lead data (X Education, ../shared): leak-free features, model vs baselines vs Lead Quality."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from leadscore.features.build import load_training_frame
from leadscore.features.mapping import load_mapping
from leadscore.training.train import TrainOptions, fit

MAPPING = Path(__file__).resolve().parents[1] / "data" / "mappings" / "x-education.yaml"
POST_OUTCOME = {"Tags", "Lead Quality", "Last Activity", "Last Notable Activity"}

pytestmark = pytest.mark.slow


def test_mapping_keeps_post_outcome_columns_out_and_lead_quality_as_the_manual_process() -> None:
    mapping = load_mapping(MAPPING)
    assert not POST_OUTCOME & set(mapping.feature_columns)
    assert POST_OUTCOME <= set(mapping.exclude)
    assert [(m.name, m.kind, m.columns) for m in mapping.manual] == [("Lead Quality", "grade", ["Lead Quality"])]


def test_model_on_x_education_beats_baselines_and_the_manual_grade(x_education: Path) -> None:
    """Mean over 5 seeded random holdouts (the data has no timestamps): split noise is about +-0.008 AUC."""
    tf = load_training_frame(x_education, load_mapping(MAPPING))
    assert not tf.timed
    runs = [fit(tf, TrainOptions(data=x_education, seed=seed)).metrics for seed in range(5)]
    auc = {name: float(np.mean([r[name]["roc_auc"] for r in runs])) for name in runs[0]}
    assert runs[0]["model"]["roc_auc"] >= 0.87, auc  # seed 0, the CLI default: 0.873 measured
    assert auc["model"] >= 0.87, auc  # 0.873 measured over seeds 0-4
    assert auc["model"] > auc["logistic_regression"] > auc["manual:Lead Quality"], auc
    assert all(r["model"]["ece"] < 0.05 for r in runs)
