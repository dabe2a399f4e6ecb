"""The spline logistic model: an additive logistic regression on encoded lead columns, served as plain terms.

Categories are one-hot (plus missing), yes/no flags take a value for yes, no and missing, and numbers
are piecewise linear in ``sign(x) * log1p(|x|)`` between quantile knots (constant beyond the outer
knots, so a value the training period never saw scores as the nearest one it did) plus a missing
value. An L2 logistic regression (:mod:`models.newton`: scikit-learn's ``LogisticRegression`` objective, Newton
steps with a Cholesky solve) fits the coefficients on a sparse design; they are
then read off as :class:`models.linear_terms.LinearTerms`, which computes every prediction, so the
estimator and its serving form give the same floats.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from leadscore.features.encoder import FeatureEncoder
from leadscore.models import newton
from leadscore.models.calibration import MarginCalibrator
from leadscore.models.curve import CalibrationCurve
from leadscore.models.linear_terms import LinearTerms, signed_log1p

START_ROWS = 20_000  # rows of the sample a large fit takes its first Newton steps on


def fixed_calibrator(slope: float, intercept: float) -> MarginCalibrator:
    """A fitted sigmoid calibrator with the given slope and intercept (the margin is already log-odds)."""
    calibrator = MarginCalibrator("sigmoid")
    calibrator.slope_, calibrator.intercept_ = float(slope), float(intercept)
    calibrator.curve_ = CalibrationCurve(float(slope), float(intercept))
    return calibrator


def _hat(z: np.ndarray, knots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Piecewise-linear basis: for each value its two knots' columns and weights (constant beyond the ends)."""
    z = np.clip(z, knots[0], knots[-1])
    if len(knots) == 1:
        return np.zeros(len(z), dtype=np.intp), np.zeros(len(z), dtype=np.intp), np.ones(len(z))
    right = np.clip(np.searchsorted(knots, z, side="right"), 1, len(knots) - 1)
    left = right - 1
    share = (z - knots[left]) / (knots[right] - knots[left])
    return left, right, share


class SplineLogisticModel(ClassifierMixin, BaseEstimator):
    """Additive logistic regression on encoded lead columns (see the module's note).

    Parameters
    ----------
    encoder : FeatureEncoder
        Unfitted encoder naming the input columns by kind.
    C : float
        Inverse L2 strength of the logistic regression.
    n_knots : int
        Quantile knots per numeric column (fewer where the column has fewer distinct values).
    max_rows : int or None
        Learn on at most this many rows (a seeded uniform sample, in order); None: all.
    random_state : int
    """

    def __init__(
        self,
        encoder: FeatureEncoder | None = None,
        C: float = 1.0,
        n_knots: int = 8,
        max_rows: int | None = 100_000,
        random_state: int = 0,
    ):
        self.encoder = encoder
        self.C = C
        self.n_knots = n_knots
        self.max_rows = max_rows
        self.random_state = random_state

    def _design(self, matrix: np.ndarray) -> sparse.csr_matrix:
        """The sparse design of an encoded matrix: one block of columns per encoded column."""
        n = len(matrix)
        rows, cols, vals = [], [], []
        at = 0
        for j, size in enumerate(self.category_sizes_):
            codes = matrix[:, j]
            index = np.where(np.isnan(codes) | (codes < 0) | (codes >= size - 1), size - 1, codes).astype(np.intp)
            rows.append(np.arange(n)), cols.append(at + index), vals.append(np.ones(n))
            at += size
        for k, knots in enumerate(self.knots_):
            x = matrix[:, self.n_categorical_ + k]
            missing = np.isnan(x)
            left, right, share = _hat(signed_log1p(np.where(missing, 0.0, x)), knots)
            keep = ~missing
            idx = np.arange(n)
            rows += [idx[keep], idx[keep], idx[missing]]
            cols += [at + left[keep], at + right[keep], np.full(missing.sum(), at + len(knots))]
            vals += [1 - share[keep], share[keep], np.ones(missing.sum())]
            at += len(knots) + 1
        for k in range(self.n_boolean_):
            x = matrix[:, self.n_categorical_ + len(self.knots_) + k]
            index = np.where(np.isnan(x), 2, np.where(x == 1.0, 1, 0))
            rows.append(np.arange(n)), cols.append(at + index), vals.append(np.ones(n))
            at += 3
        return sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, at))

    def fit(self, X: pd.DataFrame, y: Any) -> SplineLogisticModel:
        if self.encoder is None:
            raise ValueError("SplineLogisticModel needs an encoder (a FeatureEncoder naming the input columns)")
        if self.C <= 0 or self.n_knots < 2:
            raise ValueError(f"C must be > 0 and n_knots >= 2; got C={self.C}, n_knots={self.n_knots}")
        y = np.asarray(y).astype(np.int8).reshape(-1)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        if len(np.unique(y)) < 2:
            raise ValueError("the spline logistic model needs both converted and not converted leads")
        self.encoder_ = clone(self.encoder).fit(X)
        return self.fit_matrix(self.encoder_.transform(X), y)

    def fit_matrix(self, matrix: np.ndarray, y: np.ndarray) -> SplineLogisticModel:
        """Fit on an already encoded matrix (``encoder_`` must be fitted)."""
        return self.fit_design(*self.prepare(matrix, y))

    def prepare(self, matrix: np.ndarray, y: np.ndarray) -> tuple[sparse.csr_matrix, np.ndarray]:
        """Place the knots on an encoded matrix (at most ``max_rows`` of its rows, a seeded uniform sample) and
        return the sparse design and labels of those rows, for :meth:`fit_design` (which may run for several
        ``C`` on one design)."""
        columns = self.encoder_.columns_
        if self.max_rows is not None and len(y) > self.max_rows:
            rows = np.sort(np.random.default_rng(self.random_state).choice(len(y), self.max_rows, replace=False))
            matrix, y = matrix[rows], y[rows]
        self.n_categorical_, self.n_boolean_ = len(columns.categorical), len(columns.boolean)
        self.category_sizes_ = [len(columns.codes[name]) + 1 for name in columns.categorical]  # + missing
        self.knots_ = []
        for k in range(len(columns.numeric)):
            x = matrix[:, self.n_categorical_ + k]
            z = signed_log1p(x[~np.isnan(x)])
            knots = np.unique(np.quantile(z, np.linspace(0, 1, self.n_knots))) if len(z) else np.zeros(1)
            self.knots_.append(knots.astype(np.float64))
        return self._design(matrix), np.asarray(y)

    def fit_design(
        self, design: sparse.csr_matrix, y: np.ndarray, start: SplineLogisticModel | None = None
    ) -> SplineLogisticModel:
        """Fit the coefficients on a design from :meth:`prepare` (Newton steps with a Cholesky solve: a few
        passes over the rows, as the design has few columns). ``start``, a model fitted on the same design
        (e.g. with another ``C``), is where the steps begin; the optimum does not depend on it."""
        coef, intercept = (start.coef_, start.intercept_) if start is not None else (None, 0.0)
        if start is None and design.shape[0] > 2 * START_ROWS:
            # each Newton step costs rows x (non-zeros per row)^2: take the first steps on a sample, with
            # the penalty scaled to the same strength per row, and finish on every row
            rows = np.sort(np.random.default_rng(self.random_state).choice(design.shape[0], START_ROWS, replace=False))
            if len(np.unique(y[rows])) == 2:
                scale = design.shape[0] / START_ROWS
                coef, intercept, _ = newton.fit_logistic(design[rows], y[rows], self.C * scale)
        self.coef_, self.intercept_, self.n_iter_ = newton.fit_logistic(design, y, self.C, coef, intercept)
        self.terms_ = self._terms(design)
        self.calibrator_ = fixed_calibrator(1.0, 0.0)
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = self.encoder_.n_features_in_
        return self

    def _terms(self, design: sparse.csr_matrix) -> LinearTerms:
        """The fitted coefficients as centred terms (each term's training mean moved into the intercept)."""
        coef = self.coef_
        means = np.asarray(design.mean(axis=0)).ravel()
        intercept = float(self.intercept_)
        at = 0
        category_offsets, category_values = [0], []
        for size in self.category_sizes_:
            block = coef[at : at + size]
            centre = float(block @ means[at : at + size])
            category_values.append(block - centre)
            intercept += centre
            category_offsets.append(category_offsets[-1] + size)
            at += size
        knot_offsets, knots, knot_values, numeric_missing = [0], [], [], []
        for points in self.knots_:
            size = len(points) + 1
            block = coef[at : at + size]
            centre = float(block @ means[at : at + size])
            knots.append(points)
            knot_values.append(block[:-1] - centre)
            numeric_missing.append(block[-1] - centre)
            intercept += centre
            knot_offsets.append(knot_offsets[-1] + len(points))
            at += size
        boolean_values = []
        for _ in range(self.n_boolean_):
            block = coef[at : at + 3]
            centre = float(block @ means[at : at + 3])
            boolean_values.append(block - centre)
            intercept += centre
            at += 3

        def flat(parts: list[np.ndarray]) -> np.ndarray:
            return np.concatenate(parts).astype(np.float64) if parts else np.zeros(0)

        return LinearTerms(
            intercept=intercept,
            n_categorical=self.n_categorical_,
            n_numeric=len(self.knots_),
            n_boolean=self.n_boolean_,
            category_offsets=np.asarray(category_offsets, dtype=np.int64),
            category_values=flat(category_values),
            knot_offsets=np.asarray(knot_offsets, dtype=np.int64),
            knots=flat(knots),
            knot_values=flat(knot_values),
            numeric_missing=np.asarray(numeric_missing, dtype=np.float64),
            boolean_values=np.asarray(boolean_values, dtype=np.float64).reshape(self.n_boolean_, 3),
        )

    def serving_parts(self) -> tuple[None, LinearTerms, tuple[float, float]]:
        """(trees, linear terms, their weights) of the serving form."""
        check_is_fitted(self, "terms_")
        return None, self.terms_, (0.0, 1.0)

    def margin_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Log-odds of an encoded matrix (from the served terms)."""
        check_is_fitted(self, "terms_")
        return self.terms_.margin(matrix)

    def proba_matrix(self, matrix: np.ndarray) -> np.ndarray:
        return self.calibrator_.predict(self.margin_matrix(matrix))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "terms_")
        p = self.proba_matrix(self.encoder_.transform(X))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
