"""How lead columns become numbers: per-column encoding functions and the fitted code tables.

:class:`ColumnCodes` is what a fitted :class:`features.encoder.FeatureEncoder` knows, without
scikit-learn: the scoring service loads it alone. Its batch path (:meth:`ColumnCodes.transform`)
and its one-lead path (:meth:`ColumnCodes.encode_row`) call the same scalar functions, and
property tests hold them equal.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

OTHER = "__other__"
_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}
ROW_BY_ROW = 32  # records that ColumnCodes.transform_records encodes one by one


def _pandas() -> Any:
    """pandas when something imported it already, else None. A DataFrame, a Series or pandas' missing values
    can only exist once it is imported, so scoring leads from JSON (the API, its batch worker) never loads it."""
    return sys.modules.get("pandas")


def _is_series(values: Any) -> bool:
    pd = _pandas()
    return pd is not None and isinstance(values, pd.Series)


def _is_frame(X: Any) -> bool:
    pd = _pandas()
    return pd is not None and isinstance(X, pd.DataFrame)


def is_missing(value: Any, missing: frozenset[str]) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str):
        return value.strip() in missing
    pd = _pandas()
    return pd is not None and (value is pd.NA or value is pd.NaT)


def category_text(value: Any) -> str:
    """Category values as text: 3.0 and 3 are both "3"; strings are stripped."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


_NUMBER_TYPES = frozenset({int, float, np.int64, np.float64})
_BOOL_TYPES = frozenset({bool, np.bool_})
_TEXT_TYPES = frozenset({str, np.str_})
_FLOAT_TYPES = frozenset({float, np.float64})


def _missing_types() -> frozenset[type]:
    pd = _pandas()
    return frozenset({type(None)}) if pd is None else frozenset({type(None), type(pd.NA), type(pd.NaT)})


def factorize(values: np.ndarray) -> tuple[np.ndarray, list[Any]]:
    """``pd.factorize(values, use_na_sentinel=True)`` for the value types :func:`_per_distinct` lets through,
    without pandas: each value's group (groups in first-seen order, equal values as one, as a dict's keys
    are) and the distinct values; -1 for the missing (None, NaN)."""
    groups: dict[Any, int] = {}
    index = [
        -1
        if value is None or (value.__class__ in _FLOAT_TYPES and value != value)
        else groups.setdefault(value, len(groups))
        for value in values
    ]
    return np.array(index, dtype=np.intp), list(groups)


def _per_distinct(values: Sequence[Any], bools_equal_numbers: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """``(distinct values, index of each value)`` when encoding once per distinct value is provably exact, else None.

    Hash-based de-duplication (``pd.factorize`` where pandas is loaded, else :func:`factorize`, the same
    groups) treats equal values as one, so calling an encoding function once per
    distinct value is identical to calling it per value exactly when it gives one answer for all
    members of each group. That holds for the types allowed here: equal strings are the same text; equal
    ints and floats (``1`` and ``1.0``) have the same text and the same number; the missing group (None,
    NaN, NA, NaT) is missing for every function here. ``True == 1`` but their category texts differ
    ("true" vs "1"), so bools may mix with numbers only when ``bools_equal_numbers`` (true for yes/no
    parsing, where True and 1 both mean 1.0). numpy's int64 never mixes with floats: pandas' hashing groups
    values numpy calls equal, and numpy compares the two as float64 (``2**60`` equals ``2**60 + 64``), though
    their texts differ. Any other type (Decimal, float32, ...) -> None, per value.
    """
    pd = _pandas()
    if pd is not None and isinstance(values, pd.Series) and isinstance(values.dtype, pd.StringDtype):
        arr = values  # a text column: every value is a str or missing, so the type check below holds
    else:
        arr = as_objects(values)
        types = set(map(type, arr))
        if not types <= _missing_types() | _NUMBER_TYPES | _BOOL_TYPES | _TEXT_TYPES:
            return None
        if not bools_equal_numbers and types & _BOOL_TYPES and types & _NUMBER_TYPES:
            return None
        if np.int64 in types and types & _FLOAT_TYPES:  # numpy compares them as float64: 2**60 == 2**60 + 64
            return None
    index, distinct = pd.factorize(arr, use_na_sentinel=True) if pd is not None else factorize(arr)
    distinct = np.asarray(distinct, dtype=object)
    if (index < 0).any():  # the missing group (None/NaN/NA/NaT) as one more distinct value: None
        distinct = np.append(distinct, None)
        index = np.where(index < 0, len(distinct) - 1, index)
    return distinct, index


def as_objects(values: Sequence[Any]) -> np.ndarray:
    """Values as a 1-D object array (a DataFrame column as ``Series.to_numpy(dtype=object)``)."""
    if _is_series(values):
        return values.to_numpy(dtype=object)
    if isinstance(values, np.ndarray) and values.dtype == object:
        return values
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


def _category_code(value: Any, codes: Mapping[str, int], other: float, missing: frozenset[str]) -> float:
    if type(value) is str:  # the usual value: what is_missing and category_text do with a str, at once
        text = value.strip()
        return math.nan if text in missing else float(codes.get(text, other))
    return math.nan if is_missing(value, missing) else float(codes.get(category_text(value), other))


def encode_categorical(values: Sequence[Any], codes: Mapping[str, int], missing: frozenset[str]) -> np.ndarray:
    """Map values to category codes; missing -> NaN, unseen or rare -> the ``OTHER`` code.

    Each distinct value is normalised once (:func:`_per_distinct`); the per-value loop is the fallback
    for types where that could differ, and both call the same :func:`_category_code`.
    """
    other = float(codes[OTHER])
    grouped = _per_distinct(values, bools_equal_numbers=False) if len(values) > 1 else None
    if grouped is not None:
        distinct, index = grouped
        per = np.fromiter(
            (_category_code(v, codes, other, missing) for v in distinct), dtype=np.float64, count=len(distinct)
        )
        return per[index]
    values = as_objects(values) if _is_series(values) else values
    return np.fromiter((_category_code(v, codes, other, missing) for v in values), dtype=np.float64, count=len(values))


def encode_numeric(values: Sequence[Any], missing: frozenset[str]) -> np.ndarray:
    """Numbers as float64; missing or unparseable -> NaN."""
    if _is_series(values):
        if isinstance(values.dtype, np.dtype) and values.dtype.kind in "biuf":
            return values.to_numpy(dtype=np.float64)  # what float64 conversion of its Python objects gives
        values = values.to_numpy(dtype=object)
    try:
        return np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return np.fromiter((_to_float(v, missing) for v in values), dtype=np.float64, count=len(values))


def _to_float(value: Any, missing: frozenset[str]) -> float:
    if is_missing(value, missing):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _number(value: Any, missing: frozenset[str]) -> float:
    """One value as :func:`encode_numeric` reads a column of it."""
    if value is None:
        return math.nan
    if type(value) is float:
        return value
    try:
        return float(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        return _to_float(value, missing)


def refuse_non_numeric(name: str, values: Sequence[Any], missing: frozenset[str]) -> None:
    """Raise naming the first value (in row order) that is neither missing nor a number."""
    grouped = _per_distinct(values, bools_equal_numbers=True)
    candidates = grouped[0] if grouped is not None else as_objects(values)  # distinct values keep first-seen order
    bad = next((v for v in candidates if not is_missing(v, missing) and math.isnan(_to_float(v, missing))), None)
    if bad is not None:
        raise ValueError(f"Column {name!r} is declared numeric but holds non-numeric values, e.g. {bad!r}.")


def encode_boolean(values: Sequence[Any], missing: frozenset[str]) -> np.ndarray:
    """Yes/no values as 1.0/0.0 (true/false, yes/no, y/n, 1/0, any case); anything else -> NaN."""
    if _is_series(values) and values.dtype == np.bool_:
        return values.to_numpy(dtype=np.float64)
    grouped = _per_distinct(values, bools_equal_numbers=True) if len(values) > 1 else None
    if grouped is not None:
        distinct, index = grouped
        return np.fromiter((_to_bool(v, missing) for v in distinct), dtype=np.float64, count=len(distinct))[index]
    values = as_objects(values) if _is_series(values) else values
    return np.fromiter((_to_bool(v, missing) for v in values), dtype=np.float64, count=len(values))


def _to_bool(value: Any, missing: frozenset[str]) -> float:
    if is_missing(value, missing):
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    text = category_text(value).lower()
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    return math.nan


def column_values(X: Any, name: str, n: int) -> Sequence[Any]:
    """Column ``name`` of a DataFrame or a mapping of columns; ``n`` missing values when it is absent."""
    if _is_frame(X):
        return X[name] if name in X.columns else [None] * n
    return X.get(name, [None] * n)


def n_rows(X: Any) -> int:
    """Rows of a DataFrame or a mapping of equal-length columns."""
    if _is_frame(X):
        return len(X)
    return len(next(iter(X.values()))) if X else 0


@dataclass(frozen=True)
class ColumnCodes:
    """Fitted encoding of lead columns into one float matrix: categorical, then numeric, then boolean.

    ``codes`` maps each categorical column's kept category text to its code (``OTHER`` last);
    ``missing`` holds the texts that mean "not filled in".
    """

    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    boolean: tuple[str, ...]
    codes: dict[str, dict[str, int]]
    missing: frozenset[str]

    @property
    def names(self) -> list[str]:
        return [*self.categorical, *self.numeric, *self.boolean]

    def transform(self, X: pd.DataFrame | Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Encode a DataFrame or a mapping of column name -> values; absent columns count as missing."""
        n = n_rows(X)
        names = self.names
        out = np.empty((n, len(names)), dtype=np.float64)
        for j, name in enumerate(names):
            values = column_values(X, name, n)
            if name in self.codes:
                out[:, j] = encode_categorical(values, self.codes[name], self.missing)
            elif j < len(self.categorical) + len(self.numeric):
                out[:, j] = encode_numeric(values, self.missing)
            else:
                out[:, j] = encode_boolean(values, self.missing)
        return out

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode a list of dicts; keys that are not columns are ignored.

        Up to ``ROW_BY_ROW`` records (a request, a micro-batch) are encoded one by one with
        :meth:`encode_row`, where the column path's per-column set-up would outweigh the work; more go
        through :meth:`transform`. Both give the same matrix.
        """
        if len(records) <= ROW_BY_ROW:
            return np.array([self.encode_row(r) for r in records], dtype=np.float64).reshape(
                len(records), len(self.names)
            )
        return self.transform({name: [r.get(name) for r in records] for name in self.names})

    def encode_row(self, record: Mapping[str, Any]) -> list[float]:
        """Encode one dict (a scoring request): the per-value functions of :meth:`transform`, called once each."""
        missing, get = self.missing, record.get
        row = [_category_code(get(name), codes, other, missing) for name, codes, other in self._category_tables]
        row += [v if type(v) is float else _number(v, missing) for v in map(get, self.numeric)]  # as _number does
        row += [_to_bool(get(name), missing) for name in self.boolean]
        return row

    @cached_property
    def _category_tables(self) -> list[tuple[str, dict[str, int], float]]:
        """Each categorical column's name, codes and ``OTHER`` code: looked up once, not for every request."""
        return [(name, self.codes[name], float(self.codes[name][OTHER])) for name in self.categorical]

    def __getstate__(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # the cached tables are rebuilt after loading
