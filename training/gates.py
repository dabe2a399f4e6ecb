"""The promotion gates, as pure functions of holdout figures: each returns a :class:`Gate` with its numbers.

All intervals are 95% percentile bootstrap intervals over the candidate's holdout rows, seeded, with
the same resamples for every model compared (paired): a difference between two models on the same
leads is judged by how it varies across those resamples, not by two separate intervals.

Gates, in order (each can refuse alone):

- ``same_contract``: candidate and champion read the same input contract (:mod:`models.contract`);
  a new contract passes only when the promotion says so (``new_contract``), and that is recorded.
- ``better_than_chance``: the lower end of the holdout ROC AUC interval is above 0.5.
- ``not_worse_than_baselines``: for the logistic baseline and each manual process, the candidate's AUC
  minus the baseline's is not below ``-tolerance``, and its interval is not wholly below zero.
- ``not_worse_than_champion``: the same rule against the champion, on the candidate's holdout.
- ``calibrated``: the holdout ECE is at most ``max_ece`` (its interval is reported).
- ``servable``: the files the API loads, downloaded and verified as it does, score the holdout as the
  training artifact does, within ``SERVABLE_ATOL``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SERVABLE_ATOL = 1e-9
N_BOOT = 1000
LEVEL = 0.95
Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile


@dataclass(frozen=True)
class Gate:
    """One promotion check: its name, whether it passed, the figures it compared in words, and the numbers."""

    name: str
    passed: bool
    detail: str
    figures: dict[str, Any] = field(default_factory=dict)


def _groups(p: np.ndarray) -> tuple[np.ndarray, int]:
    """Each score's rank among the distinct scores (ties share one), and how many distinct scores."""
    distinct, group = np.unique(np.asarray(p, dtype=np.float64), return_inverse=True)
    return group, len(distinct)


def _auc(group: np.ndarray, n_groups: int, positive: np.ndarray, weight: np.ndarray) -> float:
    """ROC AUC of rows weighted by ``weight`` (a bootstrap's row counts): ties count one half."""
    wp = np.bincount(group, weights=weight * positive, minlength=n_groups)
    wn = np.bincount(group, weights=weight * (1 - positive), minlength=n_groups)
    below = np.cumsum(wn) - wn
    total = wp.sum() * wn.sum()
    return float((wp * (below + 0.5 * wn)).sum() / total) if total > 0 else float("nan")


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC of ``score`` for the 0/1 labels ``y`` (ties count one half): the rank form, O(n log n)."""
    group, n_groups = _groups(score)
    return _auc(group, n_groups, np.asarray(y, dtype=np.float64), np.ones(len(group)))


def _resamples(n: int, n_boot: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64) for _ in range(n_boot)]


def _interval(values: np.ndarray) -> tuple[float, float]:
    values = values[~np.isnan(values)]
    tail = (1 - LEVEL) / 2 * 100
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))


def auc_intervals(
    y: np.ndarray, scores: dict[str, np.ndarray], n_boot: int = N_BOOT, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """Each model's holdout AUC with its interval, and the paired bootstrap samples (key ``samples``)."""
    y = np.asarray(y).astype(np.float64)
    ones = np.ones(len(y))
    resamples = _resamples(len(y), n_boot, seed)
    out = {}
    for name, p in scores.items():
        group, n_groups = _groups(p)
        samples = np.array([_auc(group, n_groups, y, w) for w in resamples])
        low, high = _interval(samples)
        out[name] = {"auc": _auc(group, n_groups, y, ones), "low": low, "high": high, "samples": samples}
    return out


def delong_interval(y: np.ndarray, score: np.ndarray) -> tuple[float, float, float]:
    """ROC AUC of ``score`` for the 0/1 labels ``y`` with DeLong's 95% interval (the normal approximation
    with DeLong's variance of the AUC, from each row's placement among the other class; ties count one
    half), clipped to [0, 1]: O(n log n), the interval a training run's findings read. NaN without both
    classes; the interval is NaN with fewer than two rows of a class."""
    from scipy.stats import rankdata

    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    pos, neg = score[y], score[~y]
    m, n = len(pos), len(neg)
    if m == 0 or n == 0:
        return float("nan"), float("nan"), float("nan")
    ranks = rankdata(score)
    below_pos = (ranks[y] - rankdata(pos)) / n  # each positive: share of negatives below it
    above_neg = 1.0 - (ranks[~y] - rankdata(neg)) / m  # each negative: share of positives above it
    auc = float(below_pos.mean())
    if m < 2 or n < 2:
        return auc, float("nan"), float("nan")
    half = Z_95 * float(np.sqrt(below_pos.var(ddof=1) / m + above_neg.var(ddof=1) / n))
    return auc, max(0.0, auc - half), min(1.0, auc + half)


def ece_interval(y: np.ndarray, p: np.ndarray, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """Holdout ECE (:func:`training.metrics.expected_calibration_error`) with its bootstrap interval."""
    from leadscore.training.metrics import expected_calibration_error

    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    rng = np.random.default_rng(seed + 1)
    samples = []
    for _ in range(n_boot):
        rows = rng.integers(0, len(y), len(y))
        samples.append(expected_calibration_error(y[rows], p[rows]))
    low, high = _interval(np.array(samples))
    return expected_calibration_error(y, p), low, high


def _difference(a: dict[str, Any], b: dict[str, Any]) -> tuple[float, float, float]:
    diff = a["auc"] - b["auc"]
    low, high = _interval(a["samples"] - b["samples"])
    return diff, low, high


def _not_worse(name: str, label: str, a: dict[str, Any], b: dict[str, Any], tolerance: float) -> tuple[bool, str, dict]:
    diff, low, high = _difference(a, b)
    passed = diff >= -tolerance and not high < 0
    detail = (
        f"AUC {a['auc']:.4f} vs {label} {b['auc']:.4f}: difference {diff:+.4f} "
        f"[{low:+.4f}, {high:+.4f}] (tolerance {tolerance})"
    )
    return passed, detail, {"name": name, "difference": diff, "low": low, "high": high, "other_auc": b["auc"]}


def contract_gate(
    candidate: str, champion: str | None, new_contract: bool, difference: str = "", champion_version: str | None = None
) -> Gate:
    """Same input contract as the champion (or none yet, or a new contract accepted knowingly)."""
    figures = {"candidate": candidate, "champion": champion, "new_contract": new_contract}
    if champion is None or candidate == champion:
        what = "no champion yet" if champion is None else f"same input contract {candidate}"
        return Gate("same_contract", True, what, figures)
    if new_contract:
        return Gate(
            "same_contract",
            True,
            f"NEW input contract {candidate} replaces {champion} (--new-contract): {difference}",
            figures,
        )
    return Gate(
        "same_contract",
        False,
        f"input contract {candidate} differs from champion v{champion_version}'s {champion} ({difference}): "
        "its callers send the champion's lead shape; register it under another name (LEADSCORE_MODEL_NAME) "
        "or replace the contract knowingly with --new-contract",
        figures,
    )


def evaluate(
    y: np.ndarray,
    candidate: np.ndarray,
    baselines: dict[str, np.ndarray],
    champion: np.ndarray | None = None,
    champion_version: str | None = None,
    tolerance: float = 0.005,
    max_ece: float = 0.05,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> list[Gate]:
    """The statistical gates on one holdout: chance, baselines, champion (when given), calibration."""
    scores = {"candidate": np.asarray(candidate, dtype=np.float64), **baselines}
    if champion is not None:
        scores["__champion__"] = np.asarray(champion, dtype=np.float64)
    aucs = auc_intervals(y, scores, n_boot, seed)
    mine = aucs["candidate"]
    gates = [
        Gate(
            "better_than_chance",
            mine["low"] > 0.5,
            f"holdout AUC {mine['auc']:.4f} [{mine['low']:.4f}, {mine['high']:.4f}] (lower end must exceed 0.5)",
            {"auc": mine["auc"], "low": mine["low"], "high": mine["high"]},
        )
    ]
    details, figures, passed = [], [], True
    for name in baselines:
        ok, detail, numbers = _not_worse(name, name, mine, aucs[name], tolerance)
        passed &= ok
        details.append(detail if ok else f"WORSE: {detail}")
        figures.append(numbers)
    gates.append(Gate("not_worse_than_baselines", passed, "; ".join(details) or "no baseline", {"baselines": figures}))
    if champion is not None:
        ok, detail, numbers = _not_worse(
            "champion", f"champion v{champion_version}", mine, aucs["__champion__"], tolerance
        )
        gates.append(Gate("not_worse_than_champion", ok, detail, numbers))
    ece, low, high = ece_interval(y, candidate, n_boot, seed)
    gates.append(
        Gate(
            "calibrated",
            ece <= max_ece,
            f"holdout calibration error {ece:.4f} [{low:.4f}, {high:.4f}] (max {max_ece})",
            {"ece": ece, "low": low, "high": high, "max": max_ece},
        )
    )
    return gates


def servable_gate(expected: np.ndarray, served: np.ndarray | None, error: str | None = None) -> Gate:
    """The API's files, loaded as the API loads them, score the holdout as the training artifact does."""
    if served is None:
        return Gate("servable", False, f"the API's files could not be loaded: {error}", {"error": error})
    expected, served = np.asarray(expected, dtype=np.float64), np.asarray(served, dtype=np.float64)
    if expected.shape != served.shape:
        return Gate("servable", False, f"served {served.shape} probabilities for {expected.shape} leads", {})
    gap = float(np.max(np.abs(expected - served))) if len(expected) else 0.0
    ok = gap <= SERVABLE_ATOL  # a NaN gap fails
    return Gate(
        "servable",
        ok,
        f"the verified serving file scores the holdout as the artifact: largest difference {gap:.2e} "
        f"(max {SERVABLE_ATOL:.0e})",
        {"max_difference": gap},
    )
