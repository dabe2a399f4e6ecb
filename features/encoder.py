"""The feature encoder: lead columns in, the model matrix out, by one code path for batches and requests.

:class:`FeatureEncoder` is the scikit-learn estimator that learns the code tables in ``fit``; the
encoding itself is :class:`features.columns.ColumnCodes` (``columns_``), which training, batch
scoring and the API all call. No pandas object is built on the request path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from leadscore.features.columns import (
    OTHER,
    ColumnCodes,
    as_objects,
    category_text,
    column_values,
    is_missing,
    n_rows,
    refuse_non_numeric,
)

__all__ = ["OTHER", "FeatureEncoder", "readable_label"]


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
    columns_ : ColumnCodes
        The fitted encoding (what :meth:`transform` calls); the scoring service loads it alone.
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

    def fit(
        self,
        X: pd.DataFrame | Mapping[str, Sequence[Any]],
        y: Any = None,
        category_counts: Mapping[str, pd.Series] | None = None,
    ) -> FeatureEncoder:
        """Learn the code tables from ``X``; ``category_counts`` (value -> count per categorical column, e.g.
        counted over a distributed frame) stands in for ``X``'s own counts, and ``X`` is then only checked."""
        names = [*self.categorical, *self.numeric, *self.boolean]
        if not names:
            raise ValueError(
                "FeatureEncoder needs at least one column; got no categorical, numeric or boolean columns."
            )
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
        n = n_rows(X)
        missing = frozenset(self.missing_values)
        self.categories_ = {}
        for name in self.categorical:
            if category_counts is not None:
                raw = category_counts[name]
            else:
                column = column_values(X, name, n)
                if not (isinstance(column, pd.Series) and isinstance(column.dtype, pd.StringDtype)):
                    column = pd.Series(
                        as_objects(column), dtype=object
                    )  # text columns count as they are: str keys either way
                raw = column.value_counts(dropna=True)
            counts: dict[str, int] = {}
            for value, count in raw.items():  # normalise each distinct value once
                if not is_missing(value, missing):
                    text = category_text(value)
                    counts[text] = counts.get(text, 0) + int(count)
            kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            kept = [text for text, count in kept if count >= self.min_frequency][: self.max_categories]
            self.categories_[name] = tuple(sorted(kept))
        for name in self.numeric:  # columns numpy cannot read as numbers first, then any column
            values = column_values(X, name, n)
            if isinstance(values, pd.Series) and not (
                isinstance(values.dtype, np.dtype) and values.dtype.kind in "biuf"
            ):
                values = as_objects(values)
            try:
                np.asarray(values, dtype=np.float64)
                continue
            except (TypeError, ValueError):
                pass
            refuse_non_numeric(name, values, missing)
        self.codes_ = {
            name: {**{c: i for i, c in enumerate(cats)}, OTHER: len(cats)} for name, cats in self.categories_.items()
        }
        for name in self.numeric:
            if isinstance(X, pd.DataFrame) and X[name].dtype.kind in "biuf":
                continue  # bools, ints and floats: float() of each is a number, or NaN only for a missing NaN
            refuse_non_numeric(name, column_values(X, name, n), missing)
        self.columns_ = ColumnCodes(
            tuple(self.categorical), tuple(self.numeric), tuple(self.boolean), self.codes_, missing
        )
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.categorical_indices_ = list(range(len(self.categorical)))
        self.n_features_in_ = len(names)
        return self

    def transform(self, X: pd.DataFrame | Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Encode a DataFrame or a mapping of column name -> values; absent columns count as missing."""
        check_is_fitted(self, "columns_")
        return self.columns_.transform(X)

    def transform_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode a list of dicts (request path); keys not in the encoder are ignored."""
        check_is_fitted(self, "columns_")
        return self.columns_.transform_records(records)

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
