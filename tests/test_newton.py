"""The linear models' Newton solver (models/newton.py): scikit-learn's optimum, and the C sandwich product equal
to scipy's."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from leadscore.models import newton


def _design(rows: int, columns: int, seed: int) -> sparse.csr_matrix:
    """A sparse design shaped like the spline model's: a few non-zeros per row, some rows empty, one
    column never used, the column indices of each row in no particular order."""
    rng = np.random.default_rng(seed)
    per_row = rng.integers(0, 6, rows)
    per_row[:3] = 0
    indptr = np.concatenate([[0], np.cumsum(per_row)])
    indices = rng.integers(0, columns - 1, indptr[-1])
    data = rng.uniform(0.0, 1.0, indptr[-1])
    design = sparse.csr_matrix((data, indices, indptr), shape=(rows, columns))
    design.sum_duplicates()
    shuffled = design.copy()
    for i in range(rows):  # reverse each row's order: the kernel must not rely on sorted indices
        a, b = shuffled.indptr[i], shuffled.indptr[i + 1]
        shuffled.indices[a:b] = shuffled.indices[a:b][::-1].copy()
        shuffled.data[a:b] = shuffled.data[a:b][::-1].copy()
    shuffled.has_sorted_indices = False
    return shuffled


KERNEL = pytest.mark.skipif(
    newton._kernel() is None, reason="the C kernel (models/_sandwich.c) was not built by the install"
)


@KERNEL
def test_the_c_sandwich_product_equals_scipys() -> None:
    design = _design(2_000, 40, seed=1)
    w = np.random.default_rng(2).uniform(0.0, 0.25, design.shape[0])
    reference = newton.sandwich_reference(design, w)
    np.testing.assert_allclose(newton.sandwich(design, w), reference, rtol=1e-12, atol=1e-12)
    assert np.array_equal(newton.sandwich(design, w), newton.sandwich(design, w).T)

    # a column repeated within a row (duplicates not summed) counts as the sum of its entries
    repeated = sparse.csr_matrix(
        (np.array([1.0, 2.0, 0.5, 3.0]), np.array([1, 1, 0, 1], dtype=np.int32), np.array([0, 3, 4], dtype=np.int32)),
        shape=(2, 3),
    )
    assert not repeated.has_canonical_format
    summed = repeated.copy()
    summed.sum_duplicates()
    weights = np.array([0.2, 0.1])
    np.testing.assert_allclose(
        newton.sandwich(repeated, weights), newton.sandwich_reference(summed, weights), atol=1e-15
    )


def test_without_the_kernel_the_sandwich_is_scipys_product_of_the_dense_design(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    design = _design(300, 12, seed=3)
    w = np.linspace(0.0, 0.25, design.shape[0])
    dense = np.column_stack([design.toarray(), np.ones(design.shape[0])])
    monkeypatch.setattr(newton, "_kernel", lambda: None)
    np.testing.assert_allclose(newton.sandwich(design, w), dense.T @ (w[:, None] * dense), rtol=1e-12, atol=1e-12)


@KERNEL
def test_the_kernel_refuses_indices_outside_the_design() -> None:
    kernel = newton._kernel()
    assert kernel is not None
    out = np.empty((3, 3))
    indptr, data, w = np.array([0, 1], dtype=np.int32), np.ones(1), np.ones(1)
    with pytest.raises(ValueError, match="out of range"):
        kernel(indptr, np.array([2], dtype=np.int32), data, w, out)  # column 2 of a 2-column design
    with pytest.raises(TypeError, match="int32"):
        kernel(indptr.astype(np.int64), np.array([0], dtype=np.int32), data, w, out)
    with pytest.raises(ValueError, match="agree in shape"):
        kernel(indptr, np.array([0], dtype=np.int32), data, np.ones(2), out)
    with pytest.raises(ValueError, match="agree in shape"):  # nine floats, but not a square
        kernel(indptr, np.array([0], dtype=np.int32), data, w, np.empty(9))


@pytest.mark.parametrize("C", [0.05, 1.0, 50.0])
def test_newton_reaches_scikit_learns_optimum(C: float) -> None:
    design = _design(3_000, 30, seed=4)
    truth = np.random.default_rng(5).normal(0.0, 1.5, design.shape[1])
    margin = design @ truth - 0.5
    y = (np.random.default_rng(6).uniform(size=design.shape[0]) < 1 / (1 + np.exp(-margin))).astype(np.int8)
    sk = LogisticRegression(C=C, solver="newton-cholesky", tol=1e-10, max_iter=200).fit(design, y)
    coef, intercept, steps = newton.fit_logistic(design, y, C, tol=1e-10)
    assert 0 < steps < 20
    np.testing.assert_allclose(coef, sk.coef_.ravel(), atol=1e-6)
    assert intercept == pytest.approx(sk.intercept_[0], abs=1e-6)
    # from another start (e.g. a fit with another C), the same optimum
    again, again_intercept, _ = newton.fit_logistic(
        design, y, C, coef=np.ones(design.shape[1]), intercept=3.0, tol=1e-10
    )
    np.testing.assert_allclose(again, coef, atol=1e-6)
    assert again_intercept == pytest.approx(intercept, abs=1e-6)


def test_newton_refuses_what_it_cannot_fit() -> None:
    design = _design(10, 4, seed=7)
    with pytest.raises(ValueError, match="rows"):
        newton.fit_logistic(design, np.zeros(9), 1.0)
    with pytest.raises(ValueError, match="C must be"):
        newton.fit_logistic(design, np.zeros(10), 0.0)


def test_newton_converges_on_separable_rows_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """Perfectly separable rows and a weak penalty: the margins grow large, the steps stay finite and the fit still
    ends on its tolerance."""
    design = sparse.csr_matrix(np.repeat(np.eye(4), 50, axis=0))
    y = np.repeat([0, 1, 0, 1], 50)
    with caplog.at_level("WARNING", logger="leadscore.models"):
        coef, intercept, steps = newton.fit_logistic(design, y, 1e6)
    assert steps < 100 and not caplog.records
    margin = design @ coef + intercept
    assert np.all(np.isfinite(margin)) and np.all((margin > 5) == (y == 1))


def test_a_large_fit_starts_on_a_sample_and_ends_at_the_full_optimum() -> None:
    """Above twice ``START_ROWS`` rows the spline model takes its first steps on a sample; its coefficients are
    still those of a fit on every row from zero."""
    from leadscore.features.encoder import FeatureEncoder
    from leadscore.models.linear import START_ROWS, SplineLogisticModel

    rng = np.random.default_rng(8)
    n = 2 * START_ROWS + 5_000
    data = pd.DataFrame({"x": rng.normal(size=n), "z": rng.exponential(size=n), "source": rng.choice(list("abc"), n)})
    logit = -1.0 + np.sin(data["x"]) + 0.3 * data["z"] + (data["source"] == "b")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    model = SplineLogisticModel(FeatureEncoder(categorical=["source"], numeric=["x", "z"]), C=0.5, max_rows=None)
    model.fit(data, y)
    design, labels = model.prepare(model.encoder_.transform(data), y)
    coef, intercept, _ = newton.fit_logistic(design, labels, 0.5, tol=1e-10)
    np.testing.assert_allclose(model.coef_, coef, atol=1e-4)
    assert model.intercept_ == pytest.approx(intercept, abs=1e-4)
