"""An additive model on the encoded matrix, as plain tables: one term per column, summed into a margin.

The serving form of the spline logistic model (:mod:`models.linear`): terms read by the C kernel
(``models/_trees.c``) where it is built, else column by column in numpy. Each column of a
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

from dataclasses import dataclass
from typing import Any

import numpy as np

from leadscore.models.compiled_trees import kernel_module

_KERNEL = kernel_module()


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
        """Each row's term per column, shape (n, n_features): by the C kernel where it is built (the same
        floats as :meth:`column_terms`, which is used where it is not)."""
        X = self._rows(X)
        handle = self._kernel()
        if handle is None:
            return self.column_terms(X)
        first = self.n_categorical
        x = X[:, first : first + self.n_numeric]
        z = np.ascontiguousarray(signed_log1p(np.where(np.isnan(x), 0.0, x)))  # numpy's ufuncs, as below
        out = np.empty(X.shape)
        _KERNEL.linear_terms(handle, np.ascontiguousarray(X), z, out)
        return out

    def column_terms(self, X: np.ndarray) -> np.ndarray:
        """Each row's term per column, column by column in numpy (the reference the kernel is held to)."""
        X = self._rows(X)
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

    def _kernel(self) -> Any | None:
        """The C kernel's handle on these tables (bound once; None where the kernel is not built)."""
        if "_handle" not in self.__dict__:
            handle = None
            if _KERNEL is not None:
                tables = (
                    np.ascontiguousarray(self.category_offsets, dtype=np.int64),
                    np.ascontiguousarray(self.category_values, dtype=np.float64),
                    np.ascontiguousarray(self.knot_offsets, dtype=np.int64),
                    np.ascontiguousarray(self.knots, dtype=np.float64),
                    np.ascontiguousarray(self.knot_values, dtype=np.float64),
                    np.ascontiguousarray(self.numeric_missing, dtype=np.float64),
                    np.ascontiguousarray(self.boolean_values, dtype=np.float64).reshape(-1),
                )
                handle = _KERNEL.linear_bind(tables, self.n_categorical, self.n_numeric, self.n_boolean)
            self.__dict__["_handle"] = handle
        return self.__dict__["_handle"]

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}  # the kernel's handle is rebuilt

    def margin(self, X: np.ndarray) -> np.ndarray:
        """``intercept + sum of terms`` per row."""
        return self.explain(X)[0]

    def explain(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Margin (n,) and terms (n, n_features): the margin is the intercept plus the terms' sum."""
        terms = self.contributions(X)
        return self.intercept + terms.sum(axis=1), terms
