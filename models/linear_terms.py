"""An additive model on the encoded matrix, as plain tables: one term per column, summed into a margin.

The serving form of the spline logistic model (:mod:`models.linear`), numpy only. Each column of a
:class:`features.columns.ColumnCodes` matrix contributes one term:

- categorical: a value per category code, and one for missing (NaN);
- numeric: piecewise-linear in ``sign(x) * log1p(|x|)`` through ``(knots, values)``, constant beyond the
  end knots (``numpy.interp``), and one value for missing;
- boolean: a value for 0, for 1 and for missing.

Every term is centred (its mean over the training rows is 0; the intercept holds the rest), so a
lead's term is its exact contribution to the margin against the average training lead: the reasons of
an additive model. The margin is ``intercept + sum of terms``.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import Any

import numpy as np


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: the scale numeric terms are piecewise linear on."""
    return np.sign(x) * np.log1p(np.abs(x))


@dataclass
class LinearTerms:
    """Tables of an additive model over ``n_categorical + n_numeric + n_boolean`` encoded columns.

    ``category_values[category_offsets[j]:category_offsets[j + 1]]``: column ``j``'s value per code, the
    last entry for missing (codes beyond the table count as missing). ``knots`` and ``knot_values`` hold
    each numeric column's points at ``knot_offsets[j]:knot_offsets[j + 1]``; ``numeric_missing`` its
    missing value. ``boolean_values``: (n_boolean, 3) values for 0, 1 and missing.
    """

    intercept: float
    n_categorical: int
    n_numeric: int
    n_boolean: int
    category_offsets: np.ndarray
    category_values: np.ndarray
    knot_offsets: np.ndarray
    knots: np.ndarray
    knot_values: np.ndarray
    numeric_missing: np.ndarray
    boolean_values: np.ndarray

    @property
    def n_features(self) -> int:
        return self.n_categorical + self.n_numeric + self.n_boolean

    def _rows(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        X = X.reshape(len(X), -1) if len(X) else X.reshape(0, self.n_features)
        if X.shape[1] != self.n_features:
            raise ValueError(f"the rows have {X.shape[1]} columns; the linear terms read {self.n_features}")
        return X

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Each row's term per column, shape (n, n_features). One row (a request's lead) is read by
        :meth:`_row_terms`, which gives the same floats as the column path below."""
        X = self._rows(X)
        if len(X) == 1:
            return np.array([self._row_terms(X[0])])
        out = np.empty(X.shape)
        for j in range(self.n_categorical):
            start, stop = int(self.category_offsets[j]), int(self.category_offsets[j + 1])
            table = self.category_values[start:stop]
            codes = X[:, j]
            index = np.where(np.isnan(codes) | (codes < 0) | (codes >= stop - start - 1), stop - start - 1, codes)
            out[:, j] = table[index.astype(np.intp)]
        for k in range(self.n_numeric):
            j = self.n_categorical + k
            start, stop = int(self.knot_offsets[k]), int(self.knot_offsets[k + 1])
            x = X[:, j]
            missing = np.isnan(x)
            z = signed_log1p(np.where(missing, 0.0, x))
            out[:, j] = np.where(
                missing, self.numeric_missing[k], np.interp(z, self.knots[start:stop], self.knot_values[start:stop])
            )
        for k in range(self.n_boolean):
            j = self.n_categorical + self.n_numeric + k
            x = X[:, j]
            index = np.where(np.isnan(x), 2, np.where(x == 1.0, 1, 0))
            out[:, j] = self.boolean_values[k][index]
        return out

    def _lookups(self) -> tuple[list[list[float]], list[tuple[list[float], list[float]]], list[list[float]]]:
        """The tables as Python lists (built once, kept out of the saved fields)."""
        found = self.__dict__.get("_lists")
        if found is None:
            offsets, knot_offsets = self.category_offsets.tolist(), self.knot_offsets.tolist()
            values, knots, knot_values = self.category_values.tolist(), self.knots.tolist(), self.knot_values.tolist()
            categories = [values[offsets[j] : offsets[j + 1]] for j in range(self.n_categorical)]
            numeric = [
                (knots[knot_offsets[k] : knot_offsets[k + 1]], knot_values[knot_offsets[k] : knot_offsets[k + 1]])
                for k in range(self.n_numeric)
            ]
            found = self.__dict__["_lists"] = (categories, numeric, self.boolean_values.tolist())
        return found

    def _row_terms(self, row: np.ndarray) -> list[float]:
        """One row's terms: the column path's rules, read from lists (numpy's interpolation formula)."""
        categories, numeric, booleans = self._lookups()
        values: list[Any] = row.tolist()
        out = []
        for j, table in enumerate(categories):
            code, missing = values[j], len(table) - 1
            out.append(table[missing if code != code or code < 0 or code >= missing else int(code)])
        first = self.n_categorical
        x = row[first : first + self.n_numeric]
        z = signed_log1p(np.where(np.isnan(x), 0.0, x)).tolist()  # the same ufuncs as the column path
        for k, (xp, fp) in enumerate(numeric):
            if values[first + k] != values[first + k]:
                out.append(float(self.numeric_missing[k]))
            else:
                out.append(_interp(z[k], xp, fp))
        first += self.n_numeric
        for k, table in enumerate(booleans):
            value = values[first + k]
            out.append(table[2 if value != value else 1 if value == 1.0 else 0])
        return out

    def margin(self, X: np.ndarray) -> np.ndarray:
        """``intercept + sum of terms`` per row."""
        return self.explain(X)[0]

    def explain(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Margin (n,) and terms (n, n_features): the margin is the intercept plus the terms' sum."""
        terms = self.contributions(X)
        return self.intercept + terms.sum(axis=1), terms


def _interp(x: float, xp: list[float], fp: list[float]) -> float:
    """``numpy.interp(x, xp, fp)`` for one value, with numpy's own formula and edge rules (so the same float)."""
    if len(xp) == 1:
        return fp[0]
    j = bisect_right(xp, x) - 1
    if j < 0:
        return fp[0]
    if j >= len(xp) - 1 or xp[j] == x:
        return fp[j]
    slope = (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])
    result = slope * (x - xp[j]) + fp[j]
    if result != result:
        result = slope * (x - xp[j + 1]) + fp[j + 1]
        if result != result and fp[j] == fp[j + 1]:
            result = fp[j]
    return result
