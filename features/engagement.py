"""Engagement features as of a scoring moment: counts by activity type over trailing windows, and recency.

One vectorised function serves a training history of millions of activities and a single request's
handful alike; only activities at or before each lead's scoring moment are counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from features.schema import ACTIVITY_TYPES

WINDOW_DAYS = 7
# High-intent activities: one more of these never lowers a lead's score (a monotone constraint in the model).
HIGH_INTENT = ("pricing_page_view", "demo_request", "form_submit", "meeting_booked")
_DAY_NS = 86_400 * 10**9


def engagement_feature_names(types: Sequence[str] = ACTIVITY_TYPES) -> list[str]:
    """Output columns of :func:`aggregate_engagement`, in order."""
    return list(_feature_names(tuple(types)))


@lru_cache(maxsize=8)
def _feature_names(types: tuple[str, ...]) -> tuple[str, ...]:
    return (
        *(f"{t}_{WINDOW_DAYS}d" for t in types),
        *(f"{t}_total" for t in types),
        f"activities_{WINDOW_DAYS}d",
        "activities_total",
        "distinct_activity_types",
        "days_since_last_activity",
    )


def monotone_engagement() -> dict[str, int]:
    """+1 (non-decreasing) for the high-intent counts, by feature name."""
    return {f"{t}_{suffix}": 1 for t in HIGH_INTENT for suffix in (f"{WINDOW_DAYS}d", "total")}


def type_codes(activity_types: Sequence[str] | np.ndarray, types: Sequence[str] = ACTIVITY_TYPES) -> np.ndarray:
    """Index of each activity's type in ``types``; unknown types -> -1 (ignored)."""
    lookup = {t: i for i, t in enumerate(types)}
    return np.fromiter((lookup.get(t, -1) for t in activity_types), dtype=np.int64, count=len(activity_types))


def aggregate_engagement(
    lead_index: np.ndarray,
    type_code: np.ndarray,
    occurred_at: np.ndarray,
    scoring_at: np.ndarray,
    types: Sequence[str] = ACTIVITY_TYPES,
) -> dict[str, np.ndarray]:
    """Aggregate activities per lead as of each lead's scoring moment.

    Parameters
    ----------
    lead_index : int array, one per activity: the row of its lead in ``scoring_at`` (-1 = no lead).
    type_code : int array, one per activity (see :func:`type_codes`).
    occurred_at : datetime64 array, one per activity.
    scoring_at : datetime64 array, one per lead: nothing after it is counted.
    """
    n, k = len(scoring_at), len(types)
    scoring_ns = np.asarray(scoring_at, dtype="datetime64[ns]").astype(np.int64)
    lead_index = np.asarray(lead_index, dtype=np.int64)
    known = (lead_index >= 0) & (np.asarray(type_code) >= 0)
    lead_index, type_code = lead_index[known], np.asarray(type_code)[known]
    occurred_ns = np.asarray(occurred_at, dtype="datetime64[ns]")[known].astype(np.int64)
    age_ns = scoring_ns[lead_index] - occurred_ns
    seen = age_ns >= 0
    lead_index, type_code, age_ns = lead_index[seen], type_code[seen], age_ns[seen]
    recent = age_ns < WINDOW_DAYS * _DAY_NS

    cell = lead_index * k + type_code
    total = np.bincount(cell, minlength=n * k).reshape(n, k).astype(np.float64)
    window = np.bincount(cell[recent], minlength=n * k).reshape(n, k).astype(np.float64)
    last_age = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(last_age, lead_index, age_ns)
    days_since = np.where(last_age == np.iinfo(np.int64).max, np.nan, last_age / _DAY_NS)

    names = _feature_names(tuple(types))
    columns = [*window.T, *total.T, window.sum(axis=1), total.sum(axis=1), (total > 0).sum(axis=1).astype(np.float64)]
    return {**dict(zip(names, columns, strict=False)), "days_since_last_activity": days_since}
