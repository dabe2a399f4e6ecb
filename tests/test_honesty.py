"""Honest output: a run says plainly when the model does not beat chance or a baseline, names drifting
features, and flags a random split where a column looks like time."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.training import honesty

METRICS = {"model": {"roc_auc": 0.80}, "logistic_regression": {"roc_auc": 0.78}, "manual:MQL": {"roc_auc": 0.6}}


def test_a_model_that_beats_chance_and_its_baselines_on_a_time_split_gets_no_warning() -> None:
    assert honesty.findings(METRICS, (0.80, 0.77, 0.83), [], "time", ["created_at"]) == []


def test_each_shortfall_is_said_plainly() -> None:
    chance = honesty.findings(
        {"model": {"roc_auc": 0.493}, "logistic_regression": {"roc_auc": 0.70}}, (0.493, 0.46, 0.53), [], "time", []
    )
    assert chance[0].startswith("Warning: the model is not better than chance") and "0.493" in chance[0]
    assert "does not beat logistic_regression" in chance[1] and "0.493 vs 0.700" in chance[1]
    drift = honesty.findings(METRICS, (0.8, 0.77, 0.83), [("euribor3m", 0.99)], "time", [])
    assert drift == [drift[0]] and "drift risk" in drift[0] and "euribor3m (adversarial AUC 0.99)" in drift[0]
    split = honesty.findings(METRICS, (0.8, 0.77, 0.83), [], "random", ["contact_date"])
    assert "random split" in split[0] and "contact_date" in split[0]


def test_drift_risks_name_the_features_that_act_as_a_clock() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    clock = np.linspace(0, 1, n) + rng.normal(0, 0.05, n)  # rises with time
    steady = rng.normal(size=n)
    region = rng.integers(0, 3, n).astype(float)
    matrix = np.column_stack([region, clock, steady])
    found = honesty.drift_risks(matrix, ["region", "clock", "steady"], 1, 2, np.arange(1600, n))
    assert [name for name, _ in found] == ["clock"] and found[0][1] > 0.95


def test_time_like_columns_by_type_name_or_row_order() -> None:
    n = 500
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "contact_date": pd.date_range("2024-01-01", periods=n, freq="D"),
            "month": rng.integers(1, 13, n),
            "emp_var_rate": np.linspace(1.4, -1.8, n) + rng.normal(0, 0.1, n),  # a clock in disguise
            "Total Time Spent on Website": rng.exponential(300, n),
            "age": rng.integers(18, 80, n),
        }
    )
    assert honesty.time_like_columns(frame, list(frame.columns)) == ["contact_date", "month", "emp_var_rate"]


def test_the_drift_checks_read_a_seeded_proportional_sample_of_a_large_table() -> None:
    from leadscore.training.honesty import _sample_rows

    rng = np.random.default_rng(5)
    train, holdout = np.sort(rng.choice(1_000_000, 700_000, replace=False)), np.arange(1_000_000, 1_300_000)
    a_train, a_holdout = _sample_rows(train, holdout, 200_000)
    b_train, b_holdout = _sample_rows(train, holdout, 200_000)
    assert np.array_equal(a_train, b_train) and np.array_equal(a_holdout, b_holdout)  # seeded
    assert len(a_train) + len(a_holdout) == 200_000
    assert abs(len(a_holdout) / 200_000 - 0.3) < 1e-4  # training and holdout in their proportion
    for sample, rows in ((a_train, train), (a_holdout, holdout)):
        assert np.all(np.diff(sample) > 0) and np.isin(sample, rows).all()  # in row order, no row twice
    small_train, small_holdout = _sample_rows(train[:10], holdout[:5], 200_000)
    assert np.array_equal(small_train, train[:10]) and np.array_equal(small_holdout, holdout[:5])  # all rows


def test_the_model_description_names_the_cross_validation_selection_used() -> None:
    """A data set without timestamps is cross-validated on shuffled folds, and the description says so."""
    from pathlib import Path

    from leadscore.training.tracking import version_description

    metrics = {"model": {"roc_auc": 0.8}, "logistic_regression": {"roc_auc": 0.79}}
    base = {"metrics": metrics, "target": "converted", "horizon_days": 90, "model_kind": "lightgbm", "split": {}}
    candidates = {"lightgbm": {"mean_auc": 0.81}}
    timed = version_description(
        Path("a.csv"), {**base, "selection": {"cv": "time-ordered expanding window", "candidates": candidates}}
    )
    shuffled = version_description(
        Path("a.csv"), {**base, "selection": {"cv": "shuffled folds", "candidates": candidates}}
    )
    assert "chosen by time-ordered CV: lightgbm 0.8100" in timed
    assert "chosen by CV on shuffled folds: lightgbm 0.8100" in shuffled
