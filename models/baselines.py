"""Baselines scored on the same split as the model: logistic regression, and manual qualification as an estimator."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.impute import MissingIndicator, SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, SplineTransformer
from sklearn.utils.validation import check_is_fitted

from leadscore.features.columns import encode_boolean, encode_numeric
from leadscore.features.encoder import FeatureEncoder
from leadscore.features.mapping import ManualProcess
from leadscore.models.threads import cores, in_row_blocks


def _signed_log1p(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.log1p(np.abs(x))


LOGISTIC_MAX_ROWS = 100_000


class ClipToFitRange(TransformerMixin, BaseEstimator):
    """Clip each column to the range it had in ``fit``.

    Before a ``SplineTransformer`` with uniform knots this gives the values of constant extrapolation
    (beyond its boundary knots a spline stays at its boundary value), so the spline can extrapolate by
    "continue", whose rows are then all in range: the sparse spline never takes its path for
    out-of-range rows (a LIL matrix), nor scipy's range check of every column.
    """

    def fit(self, X: Any, y: Any = None) -> ClipToFitRange:
        X = np.asarray(X, dtype=float)
        self.min_, self.max_ = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
        return self

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "min_")
        return np.clip(np.asarray(X, dtype=float), self.min_, self.max_)


class RowSample(ClassifierMixin, BaseEstimator):
    """Fit ``estimator`` on at most ``max_rows`` training rows; predict large inputs in row blocks on threads.

    With ``max_rows`` rows or fewer every row is used, as given. With more, a uniform sample of
    ``max_rows`` rows drawn without replacement by ``numpy.random.default_rng(random_state)`` (kept in
    input order) is used: a linear baseline with a few hundred coefficients learns about as much from a
    sample of that size as from every row. Prediction uses the fitted estimator on every row: with at
    least twice ``block_rows`` rows, in blocks on threads (one per core, at most; scikit-learn's spline and
    sparse code lets go of the GIL for much of the work), whose answers are the ones of all rows at once
    (each row's are its own).
    """

    def __init__(
        self,
        estimator: Any = None,
        max_rows: int | None = LOGISTIC_MAX_ROWS,
        random_state: int = 0,
        block_rows: int = 50_000,
    ):
        self.estimator = estimator
        self.max_rows = max_rows
        self.random_state = random_state
        self.block_rows = block_rows

    def rows(self, n: int) -> np.ndarray | None:
        """Positions of the rows ``fit`` learns on among ``n``; None means all of them."""
        if self.max_rows is None or n <= self.max_rows:
            return None
        return np.sort(np.random.default_rng(self.random_state).choice(n, size=self.max_rows, replace=False))

    def fit(self, X: Any, y: Any) -> RowSample:
        rows = self.rows(len(y))
        if rows is not None:
            X = X.iloc[rows] if isinstance(X, pd.DataFrame) else X[rows]
            y = np.asarray(y)[rows]
        self.estimator_ = clone(self.estimator).fit(X, y)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        blocks = min(cores(), len(X) // max(self.block_rows, 1))
        if blocks <= 1:
            return self.estimator_.predict_proba(X)
        rows = X.iloc if isinstance(X, pd.DataFrame) else X
        return np.concatenate(in_row_blocks(lambda a, b: self.estimator_.predict_proba(rows[a:b]), len(X), blocks))

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(X)


def logistic_baseline(
    encoder: FeatureEncoder, C: float = 1.0, max_rows: int | None = LOGISTIC_MAX_ROWS, random_state: int = 0
) -> RowSample:
    """The same encoder, then one-hot categories, splines of log-scaled numbers (and whether each was missing), yes/no
    flags, and a logistic regression. Everything stays sparse.

    Learns on at most ``max_rows`` training rows: all of them up to that many, above it a uniform sample
    of ``max_rows`` drawn with ``random_state`` (see :class:`RowSample`).
    """
    n_cat, n_num = len(encoder.categorical), len(encoder.numeric)
    n_all = n_cat + n_num + len(encoder.boolean)
    prepare = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore"), list(range(n_cat))),
            (
                "numbers",
                make_pipeline(
                    SimpleImputer(strategy="median", keep_empty_features=True),
                    FunctionTransformer(_signed_log1p),
                    ClipToFitRange(),
                    SplineTransformer(n_knots=6, degree=3, extrapolation="continue", sparse_output=True),
                ),
                list(range(n_cat, n_cat + n_num)),
            ),
            ("missing numbers", MissingIndicator(features="all", sparse=True), list(range(n_cat, n_cat + n_num))),
            (
                "flags",
                SimpleImputer(strategy="most_frequent", add_indicator=True, keep_empty_features=True),
                list(range(n_cat + n_num, n_all)),
            ),
        ],
        sparse_threshold=1.0,
    )
    pipeline = Pipeline(
        [("encode", clone(encoder)), ("prepare", prepare), ("classify", LogisticRegression(C=C, max_iter=3000))]
    )
    return RowSample(pipeline, max_rows=max_rows, random_state=random_state)


def _grouped(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct ``(x, y)`` pairs and how often each occurs: the same logistic fit as every row, with weights.

    (scikit-learn divides the weighted loss by the sum of the weights, which is the number of rows.)
    """
    codes, distinct = pd.factorize(x, sort=True)
    pairs = np.bincount(codes * 2 + y, minlength=2 * len(distinct))
    keep = np.flatnonzero(pairs)
    return distinct[keep // 2], keep % 2, pairs[keep].astype(np.float64)


class ManualProcessClassifier(ClassifierMixin, BaseEstimator):
    """A manual qualification process (MQL flag, grade, points, BANT count) written as an estimator.

    ``fit`` learns, on the training leads only, the conversion rate of each flag value or grade level
    (missing is a level of its own), or a logistic curve over points or counts; ``predict_proba`` gives
    those rates, so the manual process gets ranking and calibration metrics like the model.
    :meth:`passed` is its own hand-off decision (flag set, grade in ``passed``, points over threshold).
    """

    def __init__(
        self, process: ManualProcess | None = None, missing_values: tuple[str, ...] = ("",), smoothing: float = 1.0
    ):
        self.process = process
        self.missing_values = missing_values
        self.smoothing = smoothing

    def _values(self, X: pd.DataFrame) -> np.ndarray:
        p, missing = self.process, frozenset(self.missing_values)
        absent = [c for c in p.columns if c not in X.columns]
        if absent:
            raise ValueError(f"manual process {p.name!r}: column(s) {absent} not in the data")
        if p.kind == "flag":
            return encode_boolean(X[p.columns[0]], missing)
        if p.kind == "score":
            return encode_numeric(X[p.columns[0]], missing)
        if p.kind == "count":
            return np.nansum(np.column_stack([encode_boolean(X[c], missing) for c in p.columns]), axis=1)
        levels = X[p.columns[0]].astype("string").str.strip()
        return levels.where(~levels.isin(list(missing)), None).fillna("(missing)").to_numpy(dtype=object)

    def fit(self, X: pd.DataFrame, y: Any) -> ManualProcessClassifier:
        if self.process is None:
            raise ValueError("ManualProcessClassifier needs a process")
        y = np.asarray(y).astype(float)
        values = self._values(X)
        self.base_rate_ = float(y.mean())
        if self.process.kind in ("flag", "grade"):
            keys = pd.Series(values, dtype=object).fillna("(missing)").astype(str)
            stats = pd.DataFrame({"k": keys, "y": y}).groupby("k")["y"].agg(["sum", "count"])
            rates = (stats["sum"] + self.smoothing * self.base_rate_) / (stats["count"] + self.smoothing)
            self.rates_ = rates.to_dict()
        else:
            self.fill_ = float(np.nanmedian(values)) if np.isfinite(values).any() else 0.0
            x, outcome, count = _grouped(np.where(np.isnan(values), self.fill_, values), y.astype(int))
            self.curve_ = LogisticRegression().fit(x.reshape(-1, 1), outcome, sample_weight=count)
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "classes_")
        values = self._values(X)
        if self.process.kind in ("flag", "grade"):
            keys = pd.Series(values, dtype=object).fillna("(missing)").astype(str)
            p = keys.map(self.rates_).fillna(self.base_rate_).to_numpy(dtype=float)
        else:
            x = np.where(np.isnan(values), self.fill_, values).reshape(-1, 1)
            p = self.curve_.predict_proba(x)[:, 1]
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.passed(X).astype(int)

    def passed(self, X: pd.DataFrame) -> np.ndarray:
        """The manual process's own hand-off decision for each lead."""
        p, values = self.process, self._values(X)
        if p.kind == "flag":
            return values == 1.0
        if p.kind == "grade":
            return np.isin(values.astype(str), [str(v) for v in p.passed or []])
        return np.nan_to_num(values, nan=-np.inf) >= float(p.threshold)
