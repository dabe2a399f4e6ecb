"""A model's drift reference: the holdout's score and feature distributions, and the measures against it.

At training, :func:`reference_of` summarises the holdout in a few hundred numbers, from the same feature
records the score log keeps for each score (``model_input``): the calibrated probability's decile bins
and shares, each numeric feature's decile bins and shares (with the share missing), each categorical or
boolean feature's category shares (the most frequent :data:`MAX_CATEGORIES`, the rest as ``(other)``).
The reference is plain JSON, stored in the model's metadata (so in the serving form's JSON header and the
run's ``metadata.json``); the loop report compares a window's scores and logged inputs with it:
population stability index (PSI) for the score and numbers, Jensen-Shannon divergence (base 2, 0..1)
for categories. Flag levels: :data:`PSI_FLAG` and :data:`JS_FLAG`, on at least :data:`MIN_LEADS` leads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

FORMAT = "leadscore-drift-reference/1"
BINS = 10  # decile bins of the holdout's values
MAX_CATEGORIES = 30  # categories kept by name; the rarer ones are pooled as OTHER
MISSING = "(missing)"
OTHER = "(other)"
PSI_FLAG = 0.2  # population stability index at which a distribution has shifted
JS_FLAG = 0.1  # Jensen-Shannon divergence (base 2) at which a category mix has shifted
MIN_LEADS = 200  # fewer current leads: PSI's sampling noise alone nears the flag, so values are shown, never flagged
FLOOR = 1e-4  # empty bins count as this share (PSI's logarithm needs both shares above zero)
SCORE = "score (probability)"


def _numbers(values: Any) -> np.ndarray:
    return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(dtype=float)


def _booleans(values: Any) -> pd.Series:
    """true / false / (missing) of booleans, 0/1 numbers and their text forms."""
    text = pd.Series(values, dtype=object).map(lambda v: str(v).strip().lower() if v is not None else None)
    out = text.map({"true": "true", "1": "true", "1.0": "true", "false": "false", "0": "false", "0.0": "false"})
    return out.fillna(MISSING)


def _categories(values: Any) -> pd.Series:
    series = pd.Series(values, dtype=object)
    return series.where(series.notna(), None).map(lambda v: MISSING if v is None or v == "" else str(v))


def number_summary(values: Any, bins: int = BINS) -> dict[str, Any]:
    """Decile edges of the non-missing values and the share of all values in each bin, then the share missing."""
    x = _numbers(values)
    present = x[~np.isnan(x)]
    edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])) if len(present) else np.array([])
    return {"kind": "number", "edges": edges.tolist(), "shares": _number_shares(edges, x).tolist()}


def _number_shares(edges: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Shares of ``x`` in the bins of ``edges`` (``side='right'``: a value equal to an edge goes above it),
    the last entry the share missing."""
    missing = np.isnan(x)
    counts = np.bincount(np.searchsorted(edges, x[~missing], side="right"), minlength=len(edges) + 1)
    return np.append(counts, missing.sum()) / max(len(x), 1)


def category_summary(values: Any, kind: str = "category", top: int = MAX_CATEGORIES) -> dict[str, Any]:
    """Shares of the ``top`` most frequent categories (missing is one), the rest pooled as ``(other)``."""
    text = _booleans(values) if kind == "boolean" else _categories(values)
    shares = text.value_counts(normalize=True)
    kept = shares.iloc[:top]
    out = {str(k): float(v) for k, v in kept.items()}
    if len(shares) > top:
        out[OTHER] = float(shares.iloc[top:].sum())
    return {"kind": kind, "shares": out}


def reference_of(
    frame: pd.DataFrame,
    probability: np.ndarray,
    numeric: Sequence[str],
    categorical: Sequence[str],
    boolean: Sequence[str] = (),
) -> dict[str, Any]:
    """The drift reference of a holdout: ``frame``'s feature columns and the model's calibrated probabilities."""
    features: dict[str, Any] = {}
    for name in numeric:
        features[name] = number_summary(frame[name].to_numpy())
    for name in categorical:
        features[name] = category_summary(frame[name].to_numpy(dtype=object))
    for name in boolean:
        features[name] = category_summary(frame[name].to_numpy(dtype=object), kind="boolean")
    return {
        "format": FORMAT,
        "rows": len(frame),
        "score": number_summary(np.asarray(probability, dtype=float)),
        "features": features,
    }


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of the shares ``actual`` against ``expected`` (same bins)."""
    e, a = np.clip(np.asarray(expected, float), FLOOR, None), np.clip(np.asarray(actual, float), FLOOR, None)
    return float(((a - e) * np.log(a / e)).sum())


def jensen_shannon(expected: dict[str, float], actual: dict[str, float]) -> float:
    """Jensen-Shannon divergence (base 2, 0..1) of two category mixes given as shares."""
    keys = sorted(set(expected) | set(actual))
    p = np.array([expected.get(k, 0.0) for k in keys])
    q = np.array([actual.get(k, 0.0) for k in keys])
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return (kl(p) + kl(q)) / 2


def measure(summary: dict[str, Any], values: Any) -> tuple[str, float | None]:
    """(measure, value) of current ``values`` against one summary of the reference: PSI over the reference's
    bins for numbers, Jensen-Shannon over its categories (a category it never saw counts as ``(other)``)."""
    if len(values) == 0:
        return ("PSI" if summary["kind"] == "number" else "JS"), None
    if summary["kind"] == "number":
        shares = _number_shares(np.asarray(summary["edges"], dtype=float), _numbers(values))
        return "PSI", psi(np.asarray(summary["shares"], dtype=float), shares)
    text = _booleans(values) if summary["kind"] == "boolean" else _categories(values)
    known = summary["shares"]
    if OTHER in known or len(known) >= MAX_CATEGORIES:
        text = text.where(text.isin(list(known)), OTHER)
    current = {str(k): float(v) for k, v in text.value_counts(normalize=True).items()}
    return "JS", jensen_shannon(known, current)


def compare(reference: dict[str, Any], probability: np.ndarray, inputs: pd.DataFrame) -> list[dict[str, Any]]:
    """The score's PSI and each reference feature's PSI or Jensen-Shannon divergence for the current leads
    (``inputs``: their logged model inputs, one column per feature). A feature the current inputs do not
    hold is reported with no value, never flagged."""
    n = len(probability)
    rows = [{"what": SCORE, "kind": "number", **_measured(reference["score"], probability, n)}]
    for name, summary in sorted(reference["features"].items()):
        row = {"what": name, "kind": summary["kind"]}
        if name in inputs and inputs[name].notna().any():
            row.update(_measured(summary, inputs[name].to_numpy(dtype=object), n))
        else:
            row.update({"measure": "PSI" if summary["kind"] == "number" else "JS", "value": None, "shifted": False})
            row["note"] = "not in the logged model inputs"
        rows.append(row)
    return rows


def _measured(summary: dict[str, Any], values: Any, n: int) -> dict[str, Any]:
    kind, value = measure(summary, values)
    limit = PSI_FLAG if kind == "PSI" else JS_FLAG
    return {"measure": kind, "value": value, "shifted": value is not None and n >= MIN_LEADS and value >= limit}


def is_reference(value: Any) -> bool:
    return isinstance(value, dict) and value.get("format") == FORMAT


__all__ = ["FORMAT", "JS_FLAG", "MIN_LEADS", "PSI_FLAG", "compare", "is_reference", "measure", "reference_of"]
