"""Choosing the model by time-ordered cross-validation inside the training period (never the holdout).

Selection learns on at most :data:`SELECTION_ROWS` training rows: all of them up to that many, above it a
seeded uniform sample kept in time order (it spans the whole training period). The sample, oldest first,
is cut into ``n_folds + 1`` consecutive blocks; fold ``k`` learns on blocks ``0 .. k`` and is scored on
block ``k + 1`` (an expanding window: every score is on leads newer than everything the candidate learned
from, as in production). Each fold fits its own encoder on its own learning rows. Candidates:

- ``lightgbm``: a small grid of LightGBM settings (leaves, minimum leaf size, L2 regularisation); in
  each fold the rounds, at most :func:`max_rounds` of the whole training period (the final model's
  work stays bounded), stop early on the fold's own scored block, and the final model trains for the median of the folds' best rounds. A fold's LightGBM
  Dataset (its binning) is built once and shared by every grid point;
- ``spline_logistic``: :class:`models.linear.SplineLogisticModel`, its knots and L2 strength chosen
  from a small grid (one design per fold and knot count, shared by every L2 strength, each fit starting
  from the previous one's coefficients);
- ``blend``: both, their margins combined by a logistic regression fitted out of fold: for fold ``k``
  the weights come from the other folds' scored margins.

The folds run on threads of their own, one per core (LightGBM on one thread each). Each candidate's
figure is its mean ROC AUC over the folds; the best one wins, and a more complex candidate must beat a
simpler one by more than ``min_gain`` (order of simplicity: spline logistic, LightGBM, blend). Only the
winner is then fitted, by the caller, on the whole training period. Without time order
(``timed=False``) the blocks are a seeded shuffle of the rows.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from leadscore.features.encoder import FeatureEncoder
from leadscore.models.blend import BlendModel
from leadscore.models.lead_model import LeadScoringModel, _safe_name
from leadscore.models.linear import SplineLogisticModel
from leadscore.models.threads import cores

# The LightGBM grid: (num_leaves, min_child_samples, reg_lambda).
LIGHTGBM_GRID = ((7, 50, 10.0), (15, 20, 10.0), (31, 100, 1.0))
# The spline logistic grid: (n_knots, C) -- knots per number, inverse L2 strength.
SPLINE_GRID = tuple((knots, C) for knots in (3, 6) for C in (0.05, 0.5))
EARLY_STOPPING = 30
ROUND_BUDGET = 40_000_000  # LightGBM rows x rounds the final trees may take beyond the base model's rounds
SELECTION_ROWS = 30_000  # training rows the candidates are cross-validated on (a time-ordered sample above it)
SIMPLICITY = ("spline_logistic", "lightgbm", "blend")


@dataclass
class Selection:
    """What selection measured and chose: each candidate's fold AUCs, mean, settings, and the winner."""

    winner: str
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_folds: int = 0
    timed: bool = True
    rows: int = 0  # training rows cross-validated on
    of_rows: int = 0  # training rows in all
    max_rounds: int = 0  # the most LightGBM rounds a candidate could take

    def summary(self) -> dict[str, Any]:
        return {
            "winner": self.winner,
            "n_folds": self.n_folds,
            "cv": "time-ordered expanding window" if self.timed else "shuffled folds",
            "rows": self.rows,
            "max_rounds": self.max_rounds,
            "of_rows": self.of_rows,
            "candidates": self.candidates,
        }


def cv_words(timed: bool) -> str:
    """How the candidates were cross-validated, in the words ``train`` and the model description use."""
    return "time-ordered CV" if timed else "CV on shuffled folds"


def selection_rows(n: int, max_rows: int | None, seed: int) -> np.ndarray:
    """The training rows selection learns on, in their (time) order: all ``n`` up to ``max_rows``, else a
    seeded uniform sample of ``max_rows``."""
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_rows, replace=False))


def fold_rows(n: int, n_folds: int, timed: bool, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(learning rows, scored rows) of each fold over ``n`` rows: expanding windows over consecutive blocks
    (every scored row comes after every learning row when ``timed``), or over a seeded shuffle."""
    order = np.arange(n) if timed else np.random.default_rng(seed).permutation(n)
    blocks = np.array_split(order, n_folds + 1)
    return [(np.sort(np.concatenate(blocks[: k + 1])), np.sort(blocks[k + 1])) for k in range(n_folds)]


def max_rounds(n_rows: int, n_estimators: int) -> int:
    """The most LightGBM rounds for ``n_rows`` training rows: up to four times the base model's
    ``n_estimators`` while rows x rounds stay within :data:`ROUND_BUDGET`, never fewer than ``n_estimators``."""
    return max(n_estimators, min(4 * n_estimators, ROUND_BUDGET // max(n_rows, 1)))


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def _lightgbm_fold(
    base: LeadScoringModel,
    rounds: int,
    enc: FeatureEncoder,
    fit_matrix: np.ndarray,
    y_fit: np.ndarray,
    score_matrix: np.ndarray,
    y_score: np.ndarray,
) -> list[tuple[float, int, np.ndarray]]:
    """(AUC, best round, scored margins) of each LightGBM grid point in one fold; one Dataset for all."""
    names = [_safe_name(n) for n in enc.feature_names_out_]
    # feature_pre_filter off: the binned Dataset stays valid for every grid point's minimum leaf size
    train_set = lgb.Dataset(
        fit_matrix,
        label=y_fit,
        feature_name=names,
        categorical_feature=enc.categorical_indices_,
        params={"feature_pre_filter": False, "verbosity": -1},
        free_raw_data=False,
    )
    valid = lgb.Dataset(score_matrix, label=y_score, reference=train_set)
    out = []
    for leaves, min_child, reg in LIGHTGBM_GRID:
        model = clone(base).set_params(num_leaves=leaves, min_child_samples=min_child, reg_lambda=reg)
        params = {**model.lgb_params(), "num_threads": 1, "feature_pre_filter": False, "metric": "binary_logloss"}
        if model.monotone:
            params["monotone_constraints"] = [int(model.monotone.get(n, 0)) for n in enc.feature_names_out_]
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=rounds,
            valid_sets=[valid],
            callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False)],
        )
        best = int(booster.best_iteration or rounds)
        margin = booster.predict(score_matrix, raw_score=True, num_iteration=best, num_threads=1)
        out.append((_auc(y_score, margin), best, margin))
    return out


def _spline_fold(
    linear: SplineLogisticModel,
    enc: FeatureEncoder,
    fit_matrix: np.ndarray,
    y_fit: np.ndarray,
    score_matrix: np.ndarray,
    y_score: np.ndarray,
) -> list[tuple[float, np.ndarray]]:
    """(AUC, scored margins) of each spline grid point in one fold; one design per knot count."""
    out = []
    prepared: dict[int, tuple[SplineLogisticModel, Any, np.ndarray]] = {}
    last: dict[int, SplineLogisticModel] = {}
    for knots, C in SPLINE_GRID:
        if knots not in prepared:
            model = clone(linear).set_params(n_knots=knots)
            model.encoder_ = enc
            prepared[knots] = (model, *model.prepare(fit_matrix, y_fit))
        model, design, labels = prepared[knots]
        fitted = copy.copy(model).set_params(C=C).fit_design(design, labels, start=last.get(knots))
        last[knots] = fitted
        margin = fitted.margin_matrix(score_matrix)
        out.append((_auc(y_score, margin), margin))
    return out


def select_model(
    X: pd.DataFrame,
    y: np.ndarray,
    encoder: FeatureEncoder,
    base: LeadScoringModel,
    timed: bool = True,
    n_folds: int = 3,
    min_gain: float = 0.002,
    seed: int = 0,
    candidates: tuple[str, ...] = SIMPLICITY,
    max_rows: int | None = SELECTION_ROWS,
) -> tuple[Any, Selection]:
    """Compare the candidates on the training rows (in time order when ``timed``); return the winner,
    unfitted and configured, with the :class:`Selection` that chose it."""
    y = np.asarray(y).astype(np.int8)
    n_all = len(y)
    sample = selection_rows(n_all, max_rows, seed)
    X, y = X.iloc[sample], y[sample]
    folds = [
        (fit_rows, score_rows)
        for fit_rows, score_rows in fold_rows(len(y), n_folds, timed, seed)
        if len(np.unique(y[fit_rows])) == 2 and len(np.unique(y[score_rows])) == 2
    ]
    if not folds:
        raise ValueError("model selection needs converted and not converted leads in every fold")
    selection = Selection(winner="", n_folds=len(folds), timed=timed, rows=len(y), of_rows=n_all)
    linear = SplineLogisticModel(encoder, random_state=seed)
    rounds = selection.max_rounds = max_rounds(n_all, base.n_estimators)
    with_trees = "lightgbm" in candidates or "blend" in candidates
    with_linear = "spline_logistic" in candidates or "blend" in candidates

    def run_fold(rows: tuple[np.ndarray, np.ndarray]) -> tuple[list, list]:
        fit_rows, score_rows = rows
        enc = clone(encoder).fit(X.iloc[fit_rows])
        fit_matrix, score_matrix = enc.transform(X.iloc[fit_rows]), enc.transform(X.iloc[score_rows])
        parts = (enc, fit_matrix, y[fit_rows], score_matrix, y[score_rows])
        trees = _lightgbm_fold(base, rounds, *parts) if with_trees else []
        splines = _spline_fold(linear, *parts) if with_linear else []
        return trees, splines

    # the largest folds first, so that the threads finish together
    order = sorted(range(len(folds)), key=lambda k: -len(folds[k][0]))
    with ThreadPoolExecutor(max_workers=max(1, min(cores(), len(folds)))) as pool:
        done = dict(zip(order, pool.map(run_fold, [folds[k] for k in order]), strict=True))
    results = [done[k] for k in range(len(folds))]
    scored = [y[score_rows] for _, score_rows in folds]

    tree_margins: list[np.ndarray] = []
    best_grid = None
    if with_trees:
        grid_results = []
        for g, (leaves, min_child, reg) in enumerate(LIGHTGBM_GRID):
            aucs = [trees[g][0] for trees, _ in results]
            grid_results.append(
                {
                    "num_leaves": leaves,
                    "min_child_samples": min_child,
                    "reg_lambda": reg,
                    "n_estimators": int(np.median([trees[g][1] for trees, _ in results])),
                    "fold_auc": aucs,
                    "mean_auc": float(np.nanmean(aucs)),
                    "margins": [trees[g][2] for trees, _ in results],
                }
            )
        best_grid = max(grid_results, key=lambda r: r["mean_auc"])
        tree_margins = best_grid.pop("margins")
        selection.candidates["lightgbm"] = {
            **best_grid,
            "grid": [{k: v for k, v in r.items() if k != "margins"} for r in grid_results],
        }

    linear_margins: list[np.ndarray] = []
    if with_linear:
        grid_results = []
        for g, (knots, C) in enumerate(SPLINE_GRID):
            aucs = [splines[g][0] for _, splines in results]
            grid_results.append(
                {
                    "n_knots": knots,
                    "C": C,
                    "fold_auc": aucs,
                    "mean_auc": float(np.nanmean(aucs)),
                    "margins": [splines[g][1] for _, splines in results],
                }
            )
        best = max(grid_results, key=lambda r: r["mean_auc"])
        linear_margins = best.pop("margins")
        linear = linear.set_params(C=best["C"], n_knots=best["n_knots"])
        selection.candidates["spline_logistic"] = {
            **best,
            "grid": [{k: v for k, v in r.items() if k != "margins"} for r in grid_results],
        }

    if "blend" in candidates and tree_margins and linear_margins and len(folds) > 1:
        aucs, weights = [], []
        for k in range(len(folds)):
            others = [i for i in range(len(folds)) if i != k]
            parts = np.vstack([np.column_stack([tree_margins[i], linear_margins[i]]) for i in others])
            labels = np.concatenate([scored[i] for i in others])
            stack = LogisticRegression(C=1e6).fit(parts, labels)
            weights.append(stack.coef_.ravel().tolist())
            blended = stack.decision_function(np.column_stack([tree_margins[k], linear_margins[k]]))
            aucs.append(_auc(scored[k], blended))
        selection.candidates["blend"] = {"fold_auc": aucs, "mean_auc": float(np.nanmean(aucs)), "weights": weights}

    ranked = [c for c in SIMPLICITY if c in selection.candidates and c in candidates]
    winner = ranked[0]
    for challenger in ranked[1:]:
        if selection.candidates[challenger]["mean_auc"] > selection.candidates[winner]["mean_auc"] + min_gain:
            winner = challenger
    selection.winner = winner
    for name, figures in selection.candidates.items():
        figures["chosen"] = name == winner

    trees = base
    if best_grid is not None:
        trees = clone(base).set_params(
            num_leaves=best_grid["num_leaves"],
            min_child_samples=best_grid["min_child_samples"],
            reg_lambda=best_grid["reg_lambda"],
            n_estimators=max(best_grid["n_estimators"], 1),
        )
    if winner == "spline_logistic":
        return linear, selection
    if winner == "blend":
        return BlendModel(encoder, trees=trees, linear=linear, timed=timed, random_state=seed), selection
    return trees, selection
