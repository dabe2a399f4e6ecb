"""Holdout metrics: ranking, calibration, and what sales sees at a capacity (top share of leads)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean predicted| over equal-count bins, weighted by bin size."""
    order = np.argsort(p, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, bins):
        if len(chunk):
            total += len(chunk) * abs(float(y[chunk].mean()) - float(p[chunk].mean()))
    return total / len(y)


def top_share(y: np.ndarray, p: np.ndarray, share: float = 0.1) -> tuple[float, float]:
    """(conversion rate, lift over the base rate) of the top ``share`` of leads by ``p``."""
    k = max(1, round(len(p) * share))
    top = np.argsort(-p, kind="stable")[:k]
    rate = float(y[top].mean())
    base = float(y.mean())
    return rate, (rate / base if base > 0 else float("nan"))


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """ROC AUC, PR AUC, Brier, log loss, ECE, conversion and lift in the top 10%, base rate and counts."""
    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, dtype=float), 1e-6, 1 - 1e-6)
    conversion, lift = top_share(y, p, 0.1)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "ece": expected_calibration_error(y, p),
        "conversion_top10": conversion,
        "lift_top10": lift,
        "base_rate": float(y.mean()),
        "n": float(len(y)),
        "conversions": float(y.sum()),
    }
