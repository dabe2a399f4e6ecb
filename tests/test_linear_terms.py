"""The linear terms' C kernel gives the same floats as the numpy column path (its reference), one row or
many, on every edge the tables have."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from leadscore.models.linear_terms import _KERNEL, LinearTerms, signed_log1p

needs_kernel = pytest.mark.skipif(_KERNEL is None, reason="the C kernel is not built in this install")


def _terms(rng: np.random.Generator) -> LinearTerms:
    knots = [np.sort(rng.normal(0, 3, size)) for size in (5, 1, 8)]
    return LinearTerms(
        intercept=-1.25,
        n_categorical=2,
        n_numeric=3,
        n_boolean=2,
        category_offsets=np.array([0, 4, 7]),
        category_values=rng.normal(size=7),
        knot_offsets=np.cumsum([0, *(len(k) for k in knots)]),
        knots=np.concatenate(knots),
        knot_values=rng.normal(size=sum(len(k) for k in knots)),
        numeric_missing=rng.normal(size=3),
        boolean_values=rng.normal(size=(2, 3)),
    )


def _rows(terms: LinearTerms, rng: np.random.Generator, n: int) -> np.ndarray:
    at_knots = np.expm1(np.abs(terms.knots)) * np.sign(terms.knots)  # values that land on a knot exactly
    rows = np.column_stack(
        [
            rng.choice([0, 1, 2, 3, 4, 7, -1, np.nan], n),
            rng.choice([0, 1, 2, 5, np.nan, 2.7], n),
            *(
                rng.choice(np.concatenate([at_knots, rng.normal(0, 40, 20), [0.0, -0.0, 1e12, -1e12, np.nan]]), n)
                for _ in range(3)
            ),
            rng.choice([0.0, 1.0, np.nan, 0.5], n),
            rng.choice([0.0, 1.0, np.nan], n),
        ]
    )
    return rows


@needs_kernel
def test_the_kernel_gives_the_column_paths_floats_one_row_or_many() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        terms = _terms(rng)
        rows = _rows(terms, rng, 300)
        reference = terms.column_terms(rows)
        assert terms._kernel() is not None  # the kernel, not the reference, answers below
        assert np.array_equal(terms.contributions(rows), reference)  # bit for bit, NaN-free
        one_by_one = np.vstack([terms.contributions(row[None, :]) for row in rows])
        assert np.array_equal(one_by_one, reference)
        assert np.array_equal(terms.explain(rows[:1])[0], [terms.intercept + reference[0].sum()])


@needs_kernel
def test_the_kernel_refuses_tables_whose_offsets_do_not_agree() -> None:
    terms = _terms(np.random.default_rng(1))
    terms.category_offsets = np.array([0, 4, 99])
    with pytest.raises(ValueError, match="offsets"):
        terms._kernel()


def test_terms_pickle_without_the_kernels_handle() -> None:
    terms = _terms(np.random.default_rng(2))
    rows = _rows(terms, np.random.default_rng(2), 10)
    before = terms.contributions(rows)  # binds the kernel where it is built
    copy = pickle.loads(pickle.dumps(terms))
    assert "_handle" not in copy.__dict__
    assert np.array_equal(copy.contributions(rows), before)


def test_numeric_terms_follow_numpys_interpolation_at_and_beyond_the_knots() -> None:
    terms = _terms(np.random.default_rng(0))
    start, stop = int(terms.knot_offsets[0]), int(terms.knot_offsets[1])
    xp, fp = terms.knots[start:stop], terms.knot_values[start:stop]
    values = np.concatenate([np.expm1(np.abs(xp)) * np.sign(xp), [-1e9, 1e9, 0.0]])
    for value in values:
        row = np.array([[0, 0, value, 0, 0, 0, 0]], dtype=float)
        expected = np.interp(signed_log1p(np.array([value])), xp, fp)[0]
        assert terms.contributions(row)[0, 2] == expected
        assert terms.column_terms(row)[0, 2] == expected
