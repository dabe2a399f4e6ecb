"""Engagement features as of a scoring moment: counts by activity type over trailing windows, and recency.

One vectorised function serves a training history of millions of activities and a single request's
handful alike; only activities at or before each lead's scoring moment are counted.
"""

from __future__ import annotations

import importlib
from array import array
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from leadscore.features.schema import ACTIVITY_TYPES

WINDOW_DAYS = 7
# High-intent activities: one more of these never lowers a lead's score (a monotone constraint in the model).
HIGH_INTENT = ("pricing_page_view", "demo_request", "form_submit", "meeting_booked")
_DAY_NS = 86_400 * 10**9
_NAT = np.iinfo(np.int64).min  # NaT as datetime64[ns] holds it
_SMALL = 64  # up to this many text values and keys are looked up in a dict rather than by Arrow


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


@lru_cache(maxsize=1)
def _kernel() -> Any:
    """``features._engagement.aggregate``, or None when the install did not build it."""
    try:
        return importlib.import_module("leadscore.features._engagement").aggregate
    except ImportError:
        return None


def monotone_engagement() -> dict[str, int]:
    """+1 (non-decreasing) for the high-intent counts, by feature name."""
    return {f"{t}_{suffix}": 1 for t in HIGH_INTENT for suffix in (f"{WINDOW_DAYS}d", "total")}


def positions(values: Sequence[object] | np.ndarray | pd.Series, keys: Sequence[object]) -> np.ndarray:
    """Position of each value in ``keys`` by exact match (compared as text), -1 where absent or missing.

    One hash lookup for a request's three activities and a history's millions alike: Arrow's for
    columns, a dict's for a handful of strings (the API's case, where setting up Arrow costs more
    than the lookups; tests hold the two equal).
    """
    found = _few_positions(values, keys)
    return np.array(found, dtype=np.int64) if found is not None else _arrow_positions(values, keys)


def _few_positions(values: Sequence[object] | np.ndarray | pd.Series, keys: Sequence[object]) -> list[int] | None:
    """:func:`positions` by a dict, as a list; None unless the values and keys are a handful of strings (or None)."""
    if len(values) <= _SMALL and len(keys) <= _SMALL and all(type(v) is str or v is None for v in values):
        index = _key_index(tuple(keys))
        if index is not None:
            return [-1 if v is None else index.get(v, -1) for v in values]
    return None


@lru_cache(maxsize=8)
def _key_index(keys: tuple[object, ...]) -> dict[str, int] | None:
    """Text key -> its first position; None unless every key is already text (Arrow casts other keys its own way)."""
    if not all(type(k) is str for k in keys):
        return None
    index: dict[str, int] = {}
    for i, key in enumerate(keys):
        index.setdefault(key, i)  # the first position, as Arrow's index_in gives
    return index


def _arrow_positions(values: Sequence[object] | np.ndarray | pd.Series, keys: Sequence[object]) -> np.ndarray:
    def text(items: object) -> pa.Array:
        array = pa.array(items, from_pandas=True)
        return (
            array if pa.types.is_string(array.type) or pa.types.is_large_string(array.type) else array.cast(pa.string())
        )

    found = pc.index_in(text(values), value_set=text(keys if isinstance(keys, (pd.Series, np.ndarray)) else list(keys)))
    return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def type_codes(
    activity_types: Sequence[str] | np.ndarray | pd.Series, types: Sequence[str] = ACTIVITY_TYPES
) -> np.ndarray:
    """Index of each activity's type in ``types``; unknown types -> -1 (ignored)."""
    return positions(activity_types, types)


def aggregate_engagement(
    lead_index: np.ndarray,
    type_code: np.ndarray,
    occurred_at: np.ndarray,
    scoring_at: np.ndarray,
    types: Sequence[str] = ACTIVITY_TYPES,
) -> dict[str, np.ndarray]:
    """Aggregate activities per lead as of each lead's scoring moment: ``{feature name: values per lead}``.

    The columns of :func:`engagement_matrix`, by name.
    """
    matrix = engagement_matrix(lead_index, type_code, occurred_at, scoring_at, types)
    return dict(zip(_feature_names(tuple(types)), matrix.T, strict=True))


def lead_engagement(activity_types: Sequence[str], occurred_ns: Sequence[int], scoring_ns: int) -> list[float]:
    """One lead's row of :func:`engagement_matrix` (activity times and scoring moment as int nanoseconds).

    The API's case: the same C kernel, handed plain ``array`` buffers, since building a dozen numpy
    arrays for a request's few activities cost more than aggregating them.
    """
    kernel, k = _kernel(), len(ACTIVITY_TYPES)
    codes = _few_positions(activity_types, ACTIVITY_TYPES)
    codes = type_codes(activity_types).tolist() if codes is None else codes
    if kernel is None:
        lead_index = np.zeros(len(codes), dtype=np.int64)
        moments = np.asarray(occurred_ns, dtype=np.int64).view("datetime64[ns]")
        scoring_at = np.array([scoring_ns], dtype=np.int64).view("datetime64[ns]")
        return engagement_matrix(lead_index, np.asarray(codes, dtype=np.int64), moments, scoring_at)[0].tolist()
    out = array("d", bytes(8 * (2 * k + 4)))
    kernel(
        array("q", bytes(8 * len(codes))),
        array("q", codes),
        array("q", occurred_ns),
        array("q", (scoring_ns,)),
        k,
        WINDOW_DAYS * _DAY_NS,
        _DAY_NS,
        out,
    )
    return out.tolist()


def engagement_matrix(
    lead_index: np.ndarray,
    type_code: np.ndarray,
    occurred_at: np.ndarray,
    scoring_at: np.ndarray,
    types: Sequence[str] = ACTIVITY_TYPES,
    native: bool = True,
) -> np.ndarray:
    """Engagement features per lead as of each lead's scoring moment, shape (leads, features).

    Runs in the C kernel ``features._engagement`` when the install built it (one pass over the
    activities), else as the numpy operations below; ``native=False`` forces numpy. Tests hold the two equal.

    Parameters
    ----------
    lead_index : int array, one per activity: the row of its lead in ``scoring_at`` (-1 = no lead).
    type_code : int array, one per activity (see :func:`type_codes`).
    occurred_at : datetime64 array, one per activity.
    scoring_at : datetime64 array, one per lead: nothing after it is counted.

    Columns: :func:`engagement_feature_names` (counts per type in the window, per type in all,
    activities in the window, in all, distinct types, days since the last activity; NaN when none).
    """
    n, k = len(scoring_at), len(types)
    scoring_ns = np.asarray(scoring_at, dtype="datetime64[ns]").view(np.int64)
    lead_index = np.asarray(lead_index, dtype=np.int64)
    type_code = np.asarray(type_code, dtype=np.int64)
    occurred_ns = np.asarray(occurred_at, dtype="datetime64[ns]").view(np.int64)
    if n == 0:
        return np.empty((0, 2 * k + 4))
    kernel = _kernel() if native and k else None
    if kernel is not None:
        out = np.empty((n, 2 * k + 4))
        kernel(
            np.ascontiguousarray(lead_index),
            np.ascontiguousarray(type_code),
            np.ascontiguousarray(occurred_ns),
            np.ascontiguousarray(scoring_ns),
            k,
            WINDOW_DAYS * _DAY_NS,
            _DAY_NS,
            out,
        )
        return out
    valid = (lead_index >= 0) & (type_code >= 0)
    if (lead_index[valid] >= n).any() or (type_code[valid] >= k).any():
        raise ValueError("a lead index or activity type code is out of range")
    at = np.where(valid, lead_index, 0)
    valid &= (occurred_ns != _NAT) & (scoring_ns[at] != _NAT)  # NaT: no moment to compare
    age_ns = scoring_ns[at] - occurred_ns
    seen = valid & (age_ns >= 0)  # a known lead and type, at or before the lead's scoring moment
    lead_index, age_ns = lead_index[seen], age_ns[seen]
    recent = age_ns < WINDOW_DAYS * _DAY_NS
    # one count per (lead, window or all time, type): [window counts | all-time counts] side by side
    cell = lead_index * (2 * k) + type_code[seen]
    counts = np.bincount(np.concatenate([cell[recent], cell + k]), minlength=n * 2 * k).reshape(n, 2 * k)
    out = np.empty((n, 2 * k + 4))
    out[:, : 2 * k] = counts
    out[:, 2 * k] = counts[:, :k].sum(axis=1)
    out[:, 2 * k + 1] = counts[:, k:].sum(axis=1)
    out[:, 2 * k + 2] = (counts[:, k:] > 0).sum(axis=1)
    last_age = np.full(n, np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(last_age, lead_index, age_ns)
    out[:, 2 * k + 3] = np.where(last_age == np.iinfo(np.int64).max, np.nan, last_age / _DAY_NS)
    return out
