"""Promotion gates: each one refuses a case that every other gate lets through."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from leadscore.training import gates
from leadscore.training.metrics import expected_calibration_error

N = 3000


def leads(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Labels and a latent signal with a calibrated probability of about 0.2 on average."""
    rng = np.random.default_rng(seed)
    signal = rng.normal(size=N)
    p = 1 / (1 + np.exp(-(1.6 * signal - 1.8)))
    return (rng.random(N) < p).astype(int), signal


def calibrated(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """Isotonic-free calibration good enough for tests: each score's decile's observed rate."""
    order = np.argsort(score, kind="stable")
    out = np.empty(len(score))
    for chunk in np.array_split(order, 20):
        out[chunk] = y[chunk].mean() + score[chunk] * 1e-6  # keeps the ranking inside each bin
    return out


def noisy(signal: np.ndarray, noise: float, seed: int) -> np.ndarray:
    return signal + noise * np.random.default_rng(seed).normal(size=len(signal))


def failing(result: list[gates.Gate]) -> list[str]:
    return [g.name for g in result if not g.passed]


@pytest.fixture(scope="module")
def case() -> dict[str, np.ndarray]:
    y, signal = leads()
    return {
        "y": y,
        "good": calibrated(y, noisy(signal, 0.3, 1)),
        "weak": calibrated(y, noisy(signal, 2.0, 2)),
        "strong": calibrated(y, signal),
    }


def test_the_fast_paired_auc_is_scikit_learns(case: dict[str, np.ndarray]) -> None:
    y = case["y"]
    tied = np.round(case["good"], 2)  # many ties
    out = gates.auc_intervals(y, {"a": case["good"], "b": tied}, n_boot=50)
    assert out["a"]["auc"] == pytest.approx(roc_auc_score(y, case["good"]), abs=1e-12)
    assert out["b"]["auc"] == pytest.approx(roc_auc_score(y, tied), abs=1e-12)
    assert out["a"]["low"] < out["a"]["auc"] < out["a"]["high"]


def test_delongs_interval_is_the_bootstraps_on_a_holdout_of_thousands(case: dict[str, np.ndarray]) -> None:
    """The training findings read DeLong's interval; promotion reads the bootstrap's: they must agree."""
    y = case["y"]
    for name in ("good", "weak"):
        tied = np.round(case[name], 2)
        auc, low, high = gates.delong_interval(y, tied)
        boot = gates.auc_intervals(y, {"m": tied}, n_boot=2000)["m"]
        assert auc == pytest.approx(roc_auc_score(y, tied), abs=1e-12)
        assert low == pytest.approx(boot["low"], abs=0.003) and high == pytest.approx(boot["high"], abs=0.003)
    chance = gates.delong_interval(y, np.random.default_rng(5).normal(size=len(y)))
    assert chance[1] < 0.5 < chance[2]
    assert np.isnan(gates.delong_interval(np.zeros(5), np.arange(5.0))[0])
    assert np.isnan(gates.delong_interval(np.array([0, 0, 1]), np.arange(3.0))[1])


def test_a_good_candidate_passes_every_gate(case: dict[str, np.ndarray]) -> None:
    result = gates.evaluate(
        case["y"], case["good"], {"logistic_regression": case["weak"]}, champion=case["good"], champion_version="1"
    )
    assert [g.name for g in result] == [
        "better_than_chance",
        "not_worse_than_baselines",
        "not_worse_than_champion",
        "calibrated",
    ]
    assert failing(result) == []
    assert all(g.figures for g in result)


def test_only_the_chance_gate_refuses_a_model_no_better_than_chance(case: dict[str, np.ndarray]) -> None:
    y = case["y"]
    blind = y.mean() + np.random.default_rng(5).normal(size=N) * 1e-4  # calibrated on average, ranks at random
    result = gates.evaluate(y, blind, {"logistic_regression": blind.copy()})
    assert failing(result) == ["better_than_chance"]


def test_only_the_baseline_gate_refuses_a_model_worse_than_its_logistic_baseline(case: dict[str, np.ndarray]) -> None:
    result = gates.evaluate(
        case["y"], case["weak"], {"logistic_regression": case["strong"], "manual:MQL": case["weak"]}
    )
    assert failing(result) == ["not_worse_than_baselines"]
    detail = next(g.detail for g in result if g.name == "not_worse_than_baselines")
    assert "WORSE: AUC" in detail and "logistic_regression" in detail


def test_only_the_champion_gate_refuses_a_model_worse_than_the_champion(case: dict[str, np.ndarray]) -> None:
    result = gates.evaluate(
        case["y"], case["weak"], {"logistic_regression": case["weak"]}, champion=case["strong"], champion_version="4"
    )
    assert failing(result) == ["not_worse_than_champion"]


def test_the_champion_gate_reads_the_paired_interval_not_the_point_alone(case: dict[str, np.ndarray]) -> None:
    """A small holdout where the candidate's point AUC is within tolerance but every resample has it lower."""
    y, strong = case["y"], case["strong"]
    slightly = strong.copy()
    positives = np.flatnonzero(y == 1)[:40]
    slightly[positives] -= 0.3  # a few converted leads ranked lower: a small, consistent loss
    gate = next(
        g
        for g in gates.evaluate(y, slightly, {}, champion=strong, champion_version="2", tolerance=0.05)
        if g.name == "not_worse_than_champion"
    )
    assert gate.figures["difference"] > -0.05 and gate.figures["high"] < 0 and not gate.passed


def test_only_the_calibration_gate_refuses_a_well_ranked_but_miscalibrated_model(case: dict[str, np.ndarray]) -> None:
    y = case["y"]
    overconfident = 0.5 * case["good"] + 0.15  # the same ranking, probabilities off the observed rates
    assert expected_calibration_error(y, overconfident) > 0.05
    result = gates.evaluate(y, overconfident, {"logistic_regression": case["good"]})
    assert failing(result) == ["calibrated"]
    gate = result[-1]
    assert gate.figures["low"] <= gate.figures["ece"] <= gate.figures["high"]


def test_the_contract_gate_refuses_another_contract_unless_told() -> None:
    assert gates.contract_gate("aaa", None, False).passed
    assert gates.contract_gate("aaa", "aaa", False).passed
    refused = gates.contract_gate("aaa", "bbb", False, "horizon_days 90 -> 60", "3")
    assert not refused.passed and "--new-contract" in refused.detail and "horizon_days 90 -> 60" in refused.detail
    accepted = gates.contract_gate("aaa", "bbb", True, "horizon_days 90 -> 60", "3")
    assert accepted.passed and accepted.detail.startswith("NEW input contract")


def test_the_servable_gate_refuses_any_difference_beyond_1e_9_or_a_file_that_does_not_load() -> None:
    p = np.linspace(0.01, 0.99, 500)
    assert gates.servable_gate(p, p + 1e-12).passed
    assert not gates.servable_gate(p, p + 1e-8).passed
    assert not gates.servable_gate(p, np.where(p > 0.5, np.nan, p)).passed
    assert not gates.servable_gate(p, p[:-1]).passed
    refused = gates.servable_gate(p, None, "ChecksumMismatch: scorer.npz as downloaded does not match")
    assert not refused.passed and "scorer.npz" in refused.detail
