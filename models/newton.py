"""L2 logistic regression by Newton steps with a Cholesky solve, for sparse designs with few columns.

It minimises the objective of scikit-learn's ``LogisticRegression(C=C)`` (``newton-cholesky``)::

    sum_i logloss(y_i, x_i @ coef + intercept) + ||coef||^2 / (2 C)

(the intercept is not penalised), divided by the number of rows, and stops when the largest absolute
gradient of that mean is at most ``tol``. Each step's Hessian is the sandwich product
``X.T @ diag(w) @ X`` with the intercept's column of ones: ``models/_sandwich.c`` where the install built
it (each pair of a row's non-zeros visited once, without the interpreter lock, so other threads run
meanwhile), else scipy's sparse product. A step that cut the largest gradient at least tenfold keeps its
Hessian's factorisation for the next step (near the optimum the Hessian barely moves). A step is halved
until the objective decreases enough (Armijo's rule), so the fit always descends; as the stopping rule
reads the exact gradient, neither shortcut moves the optimum. A kept Hessian that gives no descending step is
computed anew. The fit returns short of ``tol`` only when a fresh Hessian's step cannot decrease the
objective (float precision) or after ``max_iter`` steps, and says so in the log.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from functools import cache

import numpy as np
from scipy import linalg, sparse

log = logging.getLogger("leadscore.models")

ARMIJO = 1e-4  # the share of the predicted decrease a step must achieve
MAX_HALVINGS = 30
REUSE_BELOW = 0.1  # a step that cut the largest gradient at least this much keeps its Hessian for the next


@cache
def _kernel() -> Callable[..., None] | None:
    """``models._sandwich.sandwich``, or None when the install did not build it (said once, in the log)."""
    try:
        return importlib.import_module("leadscore.models._sandwich").sandwich
    except ImportError:
        log.info("the C sandwich kernel (leadscore.models._sandwich) was not built: Newton steps use scipy's product")
        return None


def sandwich(X: sparse.csr_matrix, w: np.ndarray) -> np.ndarray:
    """``[X, 1].T @ diag(w) @ [X, 1]`` as a dense ``(p + 1, p + 1)`` array (the intercept last)."""
    X = sparse.csr_matrix(X)
    p = X.shape[1]
    w = np.ascontiguousarray(w, dtype=np.float64)
    out = np.empty((p + 1, p + 1))
    kernel = _kernel()
    if kernel is not None and X.nnz < 2**31 - 1:
        kernel(
            np.ascontiguousarray(X.indptr, dtype=np.int32),
            np.ascontiguousarray(X.indices, dtype=np.int32),
            np.ascontiguousarray(X.data, dtype=np.float64),
            w,
            out,
        )
        return out
    return sandwich_reference(X, w)


def sandwich_reference(X: sparse.csr_matrix, w: np.ndarray) -> np.ndarray:
    """:func:`sandwich` by scipy's sparse products (the fallback, and the tests' oracle)."""
    X = sparse.csr_matrix(X)
    p = X.shape[1]
    weighted = sparse.csr_matrix(X.multiply(np.asarray(w, dtype=np.float64)[:, None]))
    out = np.empty((p + 1, p + 1))
    out[:p, :p] = (X.T @ weighted).toarray()
    out[:p, p] = out[p, :p] = np.asarray(weighted.sum(axis=0)).ravel()
    out[p, p] = float(np.sum(w))
    return out


def _objective(margin: np.ndarray, y: np.ndarray, coef: np.ndarray, l2: float) -> float:
    """Mean log loss plus ``l2 / 2 * ||coef||^2``."""
    loss = np.logaddexp(0.0, margin) - y * margin
    return float(loss.mean() + 0.5 * l2 * (coef @ coef))


def fit_logistic(
    X: sparse.csr_matrix,
    y: np.ndarray,
    C: float,
    coef: np.ndarray | None = None,
    intercept: float = 0.0,
    tol: float = 1e-6,
    max_iter: int = 100,
) -> tuple[np.ndarray, float, int]:
    """(coefficients, intercept, Newton steps taken) of the L2 logistic regression on ``X`` (see the module's
    note), starting from ``coef`` and ``intercept`` when given. The optimum does not depend on the start."""
    X = sparse.csr_matrix(X)
    n, p = X.shape
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if n == 0 or len(y) != n:
        raise ValueError(f"X has {n} rows but y has {len(y)}")
    if C <= 0:
        raise ValueError(f"C must be > 0; got {C}")
    l2 = 1.0 / (C * n)
    XT = X.T.tocsr()
    coef = np.zeros(p) if coef is None else np.asarray(coef, dtype=np.float64).reshape(p).copy()
    intercept = float(intercept)
    margin = X @ coef + intercept
    value = _objective(margin, y, coef, l2)
    factor, last_norm = None, np.inf
    for step in range(max_iter):
        prob = 0.5 * (1.0 + np.tanh(0.5 * margin))  # the logistic function, without overflow
        residual = (prob - y) / n
        gradient = np.empty(p + 1)
        gradient[:p] = XT @ residual + l2 * coef
        gradient[p] = residual.sum()
        norm = float(np.max(np.abs(gradient)))
        if norm <= tol:
            return coef, intercept, step
        fresh = factor is None or norm > REUSE_BELOW * last_norm
        if fresh:
            hessian = sandwich(X, prob * (1.0 - prob) / n)
            hessian[np.arange(p), np.arange(p)] += l2
            try:
                factor = linalg.cho_factor(hessian, check_finite=False)
            except linalg.LinAlgError:
                factor = None
                direction = -linalg.lstsq(hessian, gradient, check_finite=False)[0]
        last_norm = norm
        if factor is not None:
            direction = -linalg.cho_solve(factor, gradient, check_finite=False)
        decrease = float(gradient @ direction)
        step_taken = False
        if decrease < 0:
            move = X @ direction[:p] + direction[p]
            t = 1.0
            for _ in range(MAX_HALVINGS):
                new_coef, new_intercept = coef + t * direction[:p], intercept + t * direction[p]
                new_margin = margin + t * move
                new_value = _objective(new_margin, y, new_coef, l2)
                if new_value <= value + ARMIJO * t * decrease:
                    step_taken = True
                    break
                t *= 0.5
        if step_taken:
            coef, intercept, margin, value = new_coef, new_intercept, new_margin, new_value
        elif not fresh:
            factor = None  # a kept Hessian that no longer leads downhill: compute it anew
        else:
            log.warning(
                "logistic fit stopped at a largest gradient of %.2g (tolerance %.2g): no step decreases the objective",
                norm,
                tol,
            )
            return coef, intercept, step
    log.warning("logistic fit stopped after %d Newton steps short of its tolerance %.2g", max_iter, tol)
    return coef, intercept, max_iter
