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
    """Values as float64 (missing and non-numbers: NaN); a numeric column is taken as it is, without a copy
    through Python objects."""
    series = values if isinstance(values, pd.Series) else pd.Series(values)
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=float, na_value=np.nan)
    return pd.to_numeric(series.astype(object), errors="coerce").to_numpy(dtype=float)


_BOOLEAN_TEXT = {"true": "true", "1": "true", "1.0": "true", "false": "false", "0": "false", "0.0": "false"}


def _category(value: Any, kind: str) -> str:
    """A value's category: ``(missing)`` for none, NaN and empty text; booleans (and 0/1) as true/false."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA or value == "":
        return MISSING
    if kind == "boolean":
        return _BOOLEAN_TEXT.get(str(value).strip().lower(), MISSING)
    return str(value)


def category_shares(values: Any, kind: str = "category") -> dict[str, float]:
    """Each category's share of ``values``, largest first (counted on the distinct values, then named)."""
    series = values if isinstance(values, pd.Series) else pd.Series(values, dtype=object)
    counts = series.value_counts(dropna=False, sort=False)
    named: dict[str, int] = {}
    for value, n in counts.items():
        if n:
            key = _category(value, kind)
            named[key] = named.get(key, 0) + int(n)
    total = sum(named.values())
    return {k: n / total for k, n in sorted(named.items(), key=lambda kv: (-kv[1], kv[0]))} if total else {}


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
    shares = category_shares(values, kind)
    names = list(shares)
    out = {k: shares[k] for k in names[:top]}
    if len(names) > top:
        out[OTHER] = float(sum(shares[k] for k in names[top:]))
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
        features[name] = number_summary(frame[name])
    for name in categorical:
        features[name] = category_summary(frame[name])
    for name in boolean:
        features[name] = category_summary(frame[name], kind="boolean")
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
    known = summary["shares"]
    current = category_shares(values, summary["kind"])
    if OTHER in known or len(known) >= MAX_CATEGORIES:  # categories the reference pooled, or never saw
        pooled = {k: v for k, v in current.items() if k in known and k != OTHER}
        rest = 1.0 - sum(pooled.values())
        current = {**pooled, OTHER: rest} if rest > 1e-12 else pooled
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
            row.update(_measured(summary, inputs[name], n))
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
