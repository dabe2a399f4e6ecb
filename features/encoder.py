"""The feature encoder: lead columns in, the model matrix out, by one code path for batches and requests.

Training frames, batch files and single API requests all pass through :meth:`FeatureEncoder.transform`
(a DataFrame or a mapping of columns) or :meth:`FeatureEncoder.transform_records` (a list of dicts),
which share the same per-column encoding functions. No pandas object is built on the request path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

OTHER = "__other__"
_TRUE = {"true", "yes", "y", "1", "t"}
_FALSE = {"false", "no", "n", "0", "f"}


def _is_missing(value: Any, missing: frozenset[str]) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, str) and value.strip() in missing


def _category_text(value: Any) -> str:
    """Category values as text: 3.0 and 3 are both "3"; strings are stripped."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


_NA_TYPES = frozenset({type(None), type(pd.NA), type(pd.NaT)})
_NUMBER_TYPES = frozenset({int, float, np.int64, np.float64})
_BOOL_TYPES = frozenset({bool, np.bool_})
_TEXT_TYPES = frozenset({str, np.str_})


def _per_distinct(values: Sequence[Any], bools_equal_numbers: bool) -> tuple[np.ndarray, np.ndarray] | None:
    """``(distinct values, index of each value)`` when encoding once per distinct value is provably exact, else None.

    Hash-based de-duplication (``pd.factorize``) treats equal values as one, so calling an encoding function once per
    distinct value is identical to calling it per value exactly when it gives one answer for all
    members of each group. That holds for the types allowed here: equal strings are the same text; equal
    ints and floats (``1`` and ``1.0``) have the same text and the same number; the missing group (None,
    NaN, NA, NaT) is missing for every function here. ``True == 1`` but their category texts differ
    ("true" vs "1"), so bools may mix with numbers only when ``bools_equal_numbers`` (true for yes/no
    parsing, where True and 1 both mean 1.0). Any other type (Decimal, float32, ...) -> None, per value.
    """
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.StringDtype):
        arr = values  # a text column: every value is a str or missing, so the type check below holds
    else:
        arr = _objects(values)
        types = set(map(type, arr))
        if not types <= _NA_TYPES | _NUMBER_TYPES | _BOOL_TYPES | _TEXT_TYPES:
            return None
        if not bools_equal_numbers and types & _BOOL_TYPES and types & _NUMBER_TYPES:
            return None
    index, distinct = pd.factorize(arr, use_na_sentinel=True)
    distinct = np.asarray(distinct, dtype=object)
    if (index < 0).any():  # the missing group (None/NaN/NA/NaT) as one more distinct value: None
        distinct = np.append(distinct, None)
        index = np.where(index < 0, len(distinct) - 1, index)
    return distinct, index


def _objects(values: Sequence[Any]) -> np.ndarray:
    """Values as a 1-D object array (a DataFrame column as ``Series.to_numpy(dtype=object)``)."""
    if isinstance(values, pd.Series):
        return values.to_numpy(dtype=object)
    if isinstance(values, np.ndarray) and values.dtype == object:
        return values
    arr = np.empty(len(values), dtype=object)
    arr[:] = list(values)
    return arr


def _category_code(value: Any, codes: Mapping[str, int], other: float, missing: frozenset[str]) -> float:
    return math.nan if _is_missing(value, missing) else float(codes.get(_category_text(value), other))


def encode_categorical(values: Sequence[Any], codes: Mapping[str, int], missing: frozenset[str]) -> np.ndarray:
    """Map values to category codes; missing -> NaN, unseen or rare -> the ``OTHER`` code.

    Each distinct value is normalised once (:func:`_per_distinct`); the per-value loop is the fallback
    for types where that could differ, and both call the same :func:`_category_code`.
    """
    other = float(codes[OTHER])
    grouped = _per_distinct(values, bools_equal_numbers=False) if len(values) > 1 else None
    if grouped is not None:
        distinct, index = grouped
        per = np.fromiter((_category_code(v, codes, other, missing) for v in distinct), dtype=np.float64, count=len(distinct))
        return per[index]
    values = _objects(values) if isinstance(values, pd.Series) else values
    return np.fromiter((_category_code(v, codes, other, missing) for v in values), dtype=np.float64, count=len(values))


def encode_numeric(values: Sequence[Any], missing: frozenset[str]) -> np.ndarray:
    """Numbers as float64; missing or unparseable -> NaN."""
    if isinstance(values, pd.Series):
        if isinstance(values.dtype, np.dtype) and values.dtype.kind in "biuf":
            return values.to_numpy(dtype=np.float64)  # what float64 conversion of its Python objects gives
        values = values.to_numpy(dtype=object)
    try:
        return np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return np.fromiter((_to_float(v, missing) for v in values), dtype=np.float64, count=len(values))


def _to_float(value: Any, missing: frozenset[str]) -> float:
    if _is_missing(value, missing):
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _refuse_non_numeric(name: str, values: Sequence[Any], missing: frozenset[str]) -> None:
    """Raise naming the first value (in row order) that is neither missing nor a number."""
    grouped = _per_distinct(values, bools_equal_numbers=True)
    candidates = grouped[0] if grouped is not None else _objects(values)  # distinct values keep first-seen order
    bad = next((v for v in candidates if not _is_missing(v, missing) and math.isnan(_to_float(v, missing))), None)
    if bad is not None:
        raise ValueError(f"Column {name!r} is declared numeric but holds non-numeric values, e.g. {bad!r}.")


def encode_boolean(values: Sequence[Any], missing: frozenset[str]) -> np.ndarray:
    """Yes/no values as 1.0/0.0 (true/false, yes/no, y/n, 1/0, any case); anything else -> NaN."""
    grouped = _per_distinct(values, bools_equal_numbers=True) if len(values) > 1 else None
    if grouped is not None:
        distinct, index = grouped
        return np.fromiter((_to_bool(v, missing) for v in distinct), dtype=np.float64, count=len(distinct))[index]
    values = _objects(values) if isinstance(values, pd.Series) else values
    return np.fromiter((_to_bool(v, missing) for v in values), dtype=np.float64, count=len(values))


def _to_bool(value: Any, missing: frozenset[str]) -> float:
    if _is_missing(value, missing):
        return math.nan
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    text = _category_text(value).lower()
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    return math.nan


def _column(X: Any, name: str, n: int) -> Sequence[Any]:
    if isinstance(X, pd.DataFrame):
        return X[name] if name in X.columns else [None] * n
    return X.get(name, [None] * n)


def _n_rows(X: Any) -> int:
    if isinstance(X, pd.DataFrame):
        return len(X)
    return len(next(iter(X.values()))) if X else 0


class FeatureEncoder(TransformerMixin, BaseEstimator):
    """Encode categorical, numeric and boolean lead columns into one float matrix.

    Parameters
    ----------
    categorical, numeric, boolean : sequence of str
        Column names by kind. Output columns follow this order: categorical, numeric, boolean.
    missing_values : sequence of str
        Text values that mean "not filled in" (e.g. "Select", "unknown"); compared after stripping.
    min_frequency : int
        Categories seen fewer times in ``fit`` are pooled into ``__other__`` with unseen ones.
    max_categories : int
        At most this many categories per column keep their own code (the most frequent ones).
    labels : mapping of str to str, optional
        Readable labels for columns, used by reason codes; defaults are derived from the names.

    Attributes
    ----------
    categories_ : dict of str to tuple of str
        Kept categories per categorical column; the code of a category is its index, ``__other__`` last.
    codes_ : dict of str to dict of str to int
        The same as a lookup table: category text -> code.
    feature_names_out_ : ndarray of str
    categorical_indices_ : list of int
        Output positions of categorical columns (for LightGBM's ``categorical_feature``).
    """

    def __init__(
        self,
        categorical: Sequence[str] = (),
        numeric: Sequence[str] = (),
        boolean: Sequence[str] = (),
        missing_values: Sequence[str] = ("",),
        min_frequency: int = 5,
        max_categories: int = 100,
        labels: Mapping[str, str] | None = None,
    ):
        self.categorical = categorical
        self.numeric = numeric
        self.boolean = boolean
        self.missing_values = missing_values
        self.min_frequency = min_frequency
        self.max_categories = max_categories
        self.labels = labels

    def fit(self, X: pd.DataFrame | Mapping[str, Sequence[Any]], y: Any = None) -> FeatureEncoder:
        names = [*self.categorical, *self.numeric, *self.boolean]
        if not names:
            raise ValueError("FeatureEncoder needs at least one column; got no categorical, numeric or boolean columns.")
        duplicated = sorted({c for c in names if names.count(c) > 1})
        if duplicated:
            raise ValueError(f"Columns listed under more than one kind: {duplicated}.")
        if isinstance(X, pd.DataFrame):
            absent = [c for c in names if c not in X.columns]
            if absent:
                raise ValueError(f"Columns not found in the data: {absent}; available: {list(X.columns)}.")
        if self.min_frequency < 1 or self.max_categories < 1:
            raise ValueError(
                f"min_frequency and max_categories must be >= 1; got {self.min_frequency} and {self.max_categories}."
            )
        n = _n_rows(X)
        missing = frozenset(self.missing_values)
        self.categories_ = {}
        for name in self.categorical:
            column = _column(X, name, n)
            if not (isinstance(column, pd.Series) and isinstance(column.dtype, pd.StringDtype)):
                column = pd.Series(_objects(column), dtype=object)  # text columns count as they are: str keys either way
            raw = column.value_counts(dropna=True)
            counts: dict[str, int] = {}
            for value, count in raw.items():  # normalise each distinct value once
                if not _is_missing(value, missing):
                    text = _category_text(value)
                    counts[text] = counts.get(text, 0) + int(count)
            kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            kept = [text for text, count in kept if count >= self.min_frequency][: self.max_categories]
            self.categories_[name] = tuple(sorted(kept))
        for name in self.numeric:  # columns numpy cannot read as numbers first, then any column
            values = _column(X, name, n)
            if isinstance(values, pd.Series) and not (isinstance(values.dtype, np.dtype) and values.dtype.kind in "biuf"):
                values = _objects(values)
            try:
                np.asarray(values, dtype=np.float64)
                continue
            except (TypeError, ValueError):
                pass
            _refuse_non_numeric(name, values, missing)
        self.codes_ = {
            name: {**{c: i for i, c in enumerate(cats)}, OTHER: len(cats)} for name, cats in self.categories_.items()
        }
        for name in self.numeric:
            if isinstance(X, pd.DataFrame) and X[name].dtype.kind in "biuf":
                continue  # bools, ints and floats: float() of each is a number, or NaN only for a missing NaN
            _refuse_non_numeric(name, _column(X, name, n), missing)
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.categorical_indices_ = list(range(len(self.categorical)))
        self.n_features_in_ = len(names)
        return self

    def transform(self, X: pd.DataFrame | Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Encode a DataFrame or a mapping of column name -> values; absent columns count as missing."""
        check_is_fitted(self, "categories_")
        n = _n_rows(X)
        missing = frozenset(self.missing_values)
        out = np.empty((n, self.n_features_in_), dtype=np.float64)
        codes = self.codes_
        for j, name in enumerate(self.feature_names_out_):
            values = _column(X, name, n)
            if name in codes:
                out[:, j] = encode_categorical(values, codes[name], missing)
            elif j < len(self.categorical) + len(self.numeric):
                out[:, j] = encode_numeric(values, missing)
            else:
                out[:, j] = encode_boolean(values, missing)
        return out

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode a list of dicts (request path); keys not in the encoder are ignored."""
        columns = {name: [r.get(name) for r in records] for name in self.feature_names_out_}
        return self.transform(columns) if records else np.empty((0, len(self.feature_names_out_)))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "categories_")
        return self.feature_names_out_.copy()

    def feature_labels(self) -> dict[str, str]:
        """Readable label per output column (given labels first, else derived from the name)."""
        given = dict(self.labels or {})
        return {name: given.get(name) or readable_label(name) for name in self.feature_names_out_}


def readable_label(name: str) -> str:
    """A readable default label: 'pricing_page_view_7d' -> 'Pricing page view (last 7 days)'."""
    text = str(name).replace("_", " ").strip()
    for suffix, words in ((" 7d", " (last 7 days)"), (" 30d", " (last 30 days)"), (" total", " (all time)")):
        if text.endswith(suffix):
            text = text[: -len(suffix)] + words
    return text[:1].upper() + text[1:]
