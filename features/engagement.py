"""Engagement features as of a scoring moment: counts by activity type over trailing windows, and recency.

One aggregation serves a training history of millions of activities and a single request's handful
alike; only activities at or before each lead's scoring moment are counted. It runs in the C kernel
``features/_engagement.c`` where the install built it, else as :func:`reference_engagement`, the plain
Python form of the same rules; tests hold the two equal.
"""

from __future__ import annotations

import importlib
import logging
import math
from array import array
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from leadscore.features.schema import ACTIVITY_TYPES

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

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
    """``features._engagement.aggregate``, or None when the install did not build it (said once, in the log)."""
    try:
        return importlib.import_module("leadscore.features._engagement").aggregate
    except ImportError:
        logging.getLogger(__name__).warning(
            "the C engagement kernel (leadscore.features._engagement) was not built: engagement is aggregated "
            "by its Python reference"
        )
        return None


def monotone_engagement() -> dict[str, int]:
    """+1 (non-decreasing) for the high-intent counts, by feature name."""
    return {f"{t}_{suffix}": 1 for t in HIGH_INTENT for suffix in (f"{WINDOW_DAYS}d", "total")}


def positions(values: Sequence[object] | np.ndarray | pd.Series, keys: Sequence[object]) -> np.ndarray:
    """Position of each value in ``keys`` by exact match (compared as text), -1 where absent or missing.

    One hash lookup for a request's few activities and a history's millions alike: Arrow's for
    columns, a dict's for a handful of strings (where setting up Arrow costs more than the lookups);
    tests hold the two equal.
    """
    found = _few_positions(values, keys)
    return np.array(found, dtype=np.int64) if found is not None else _arrow_positions(values, keys)


def _few_positions(
    values: Sequence[object] | np.ndarray | pd.Series, keys: Sequence[object], small: int | None = _SMALL
) -> list[int] | None:
    """:func:`positions` by a dict, as a list; None unless the values and keys are strings (or None), at most
    ``small`` of each (any number with None)."""
    if (small is None or (len(values) <= small and len(keys) <= small)) and all(
        type(v) is str or v is None for v in values
    ):
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
    import pandas as pd  # imported here: scoring one lead (the API, its batch worker) never needs it
    import pyarrow as pa
    import pyarrow.compute as pc

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

    The API's case: the C kernel handed plain ``array`` buffers, or :func:`reference_engagement` on the lists.
    """
    kernel, k = _kernel(), len(ACTIVITY_TYPES)
    codes = _few_positions(activity_types, ACTIVITY_TYPES, small=None)  # a dict however many: never Arrow here
    codes = type_codes(activity_types).tolist() if codes is None else codes
    if kernel is None:
        return reference_engagement([0] * len(codes), codes, list(occurred_ns), [scoring_ns], k)[0]
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
) -> np.ndarray:
    """Engagement features per lead as of each lead's scoring moment, shape (leads, features).

    Runs in the C kernel ``features._engagement`` when the install built it (one pass over the
    activities), else as :func:`reference_engagement`.

    Parameters
    ----------
    lead_index : int array, one per activity: the row of its lead in ``scoring_at`` (-1 = no lead).
    type_code : int array, one per activity (see :func:`type_codes`; -1 = unknown type, ignored).
    occurred_at : datetime64 array, one per activity.
    scoring_at : datetime64 array, one per lead: nothing after it is counted.

    Columns: :func:`engagement_feature_names` (counts per type in the window, per type in all,
    activities in the window, in all, distinct types, days since the last activity; NaN when none).
    """
    n, k = len(scoring_at), len(types)
    scoring_ns = np.ascontiguousarray(np.asarray(scoring_at, dtype="datetime64[ns]").view(np.int64))
    lead_index = np.ascontiguousarray(lead_index, dtype=np.int64)
    type_code = np.ascontiguousarray(type_code, dtype=np.int64)
    occurred_ns = np.ascontiguousarray(np.asarray(occurred_at, dtype="datetime64[ns]").view(np.int64))
    if n == 0:
        return np.empty((0, 2 * k + 4))
    kernel = _kernel() if k else None
    if kernel is None:
        rows = reference_engagement(
            lead_index.tolist(), type_code.tolist(), occurred_ns.tolist(), scoring_ns.tolist(), k
        )
        return np.array(rows, dtype=np.float64).reshape(n, 2 * k + 4)
    out = np.empty((n, 2 * k + 4))
    kernel(lead_index, type_code, occurred_ns, scoring_ns, k, WINDOW_DAYS * _DAY_NS, _DAY_NS, out)
    return out


def reference_engagement(
    lead_index: Sequence[int],
    type_code: Sequence[int],
    occurred_ns: Sequence[int],
    scoring_ns: Sequence[int],
    k: int,
) -> list[list[float]]:
    """:func:`engagement_matrix`'s rows in plain Python: the rules the C kernel implements, one activity at a time.

    An activity counts for its lead when its lead and type are known (index >= 0), neither its time nor
    the lead's scoring moment is NaT, and its age (scoring moment - time, an exact integer of
    nanoseconds) is >= 0; it counts in the window when its age is < ``WINDOW_DAYS`` days. Days since the
    last activity: the smallest age as a float64, divided by the nanoseconds of a day. A lead index or
    type code past the end raises ValueError.
    """
    moments = [int(m) for m in scoring_ns]  # Python ints: the differences below never wrap around
    n, window = len(moments), WINDOW_DAYS * _DAY_NS
    counts = [[0] * (2 * k) for _ in range(n)]
    last: list[int | None] = [None] * n
    for lead, kind, occurred in zip(lead_index, type_code, occurred_ns, strict=True):
        if lead < 0 or kind < 0:
            continue
        if lead >= n or kind >= k:
            raise ValueError("a lead index or activity type code is out of range")
        if occurred == _NAT or moments[lead] == _NAT:
            continue
        age = moments[lead] - int(occurred)
        if age < 0:
            continue
        if age < window:
            counts[lead][kind] += 1
        counts[lead][k + kind] += 1
        if last[lead] is None or age < last[lead]:
            last[lead] = age
    rows = []
    for row, age in zip(counts, last, strict=True):
        recent, total = row[:k], row[k:]
        days = math.nan if age is None else float(age) / float(_DAY_NS)
        rows.append([*map(float, row), float(sum(recent)), float(sum(total)), float(sum(c > 0 for c in total)), days])
    return rows
