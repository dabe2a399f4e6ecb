"""Reason codes: LightGBM TreeSHAP contributions turned into named, readable factors."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _shown(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def reasons(
    contributions: np.ndarray,
    names: list[str],
    labels: dict[str, str],
    record: dict[str, Any],
    k: int = 3,
) -> dict[str, list[dict[str, Any]]]:
    """Top ``k`` factors raising and lowering one lead's score.

    Each factor: ``feature``, readable ``label``, the lead's ``value`` (None when missing) and its
    ``contribution`` to the calibrated log-odds. Factors with no effect are not listed; equal
    contributions keep the features' order. (Plain Python: for a few dozen features numpy's per-call
    cost is most of the work.)
    """
    values = contributions.tolist()
    features = range(len(values))
    up = [j for j in sorted(features, key=values.__getitem__, reverse=True)[:k] if values[j] > 0]
    down = [j for j in sorted(features, key=values.__getitem__)[:k] if values[j] < 0]

    def factor(j: int) -> dict[str, Any]:
        name = names[j]
        value = record.get(name)
        return {
            "feature": name,
            "label": labels.get(name, name),
            # the usual values (text, a number that is not NaN) as they are; the rest through _shown
            "value": value if type(value) is str or (type(value) is float and value == value) else _shown(value),
            "contribution": round(values[j], 4),
        }

    return {"positive": [factor(j) for j in up], "negative": [factor(j) for j in down]}
