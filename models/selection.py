"""Choosing the model by time-ordered cross-validation inside the training period (never the holdout).

The training rows, oldest first, are cut into ``n_folds + 1`` consecutive blocks; fold ``k`` learns on
blocks ``0 .. k`` and is scored on block ``k + 1`` (an expanding window: every score is on leads newer
than everything the candidate learned from, as in production). Candidates:

- ``lightgbm``: a small budgeted grid of LightGBM settings (leaves, minimum leaf size, L2
  regularisation); in each fold the rounds stop early on the fold's own scored block, and the final
  model trains for the median of the folds' best rounds;
- ``spline_logistic``: :class:`models.linear.SplineLogisticModel`, its knots and L2 strength chosen from a small grid;
- ``blend``: both, their margins combined by a logistic regression fitted out of fold: for fold ``k``
  the weights come from the other folds' scored margins.

Each candidate's figure is its mean ROC AUC over the folds; the best one wins, and a more complex
candidate must beat a simpler one by more than ``min_gain`` (order of simplicity: spline logistic,
LightGBM, blend). Without time order (``timed=False``) the blocks are a seeded shuffle of the rows.
"""

from __future__ import annotations

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
from leadscore.models.threads import lightgbm_threads

# The budgeted LightGBM grid: (num_leaves, min_child_samples, reg_lambda).
LIGHTGBM_GRID = ((7, 50, 10.0), (15, 20, 10.0), (31, 100, 1.0))
# The spline logistic grid: (n_knots, C) -- knots per number, inverse L2 strength.
SPLINE_GRID = tuple((knots, C) for knots in (3, 6) for C in (0.03, 0.3, 3.0))
MAX_ROUNDS = 600
EARLY_STOPPING = 30
SIMPLICITY = ("spline_logistic", "lightgbm", "blend")


@dataclass
class Selection:
    """What selection measured and chose: each candidate's fold AUCs, mean, settings, and the winner."""

    winner: str
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_folds: int = 0
    timed: bool = True

    def summary(self) -> dict[str, Any]:
        return {
            "winner": self.winner,
            "n_folds": self.n_folds,
            "cv": "time-ordered expanding window" if self.timed else "shuffled folds",
            "candidates": self.candidates,
        }


def _blocks(n: int, n_folds: int, timed: bool, seed: int) -> list[np.ndarray]:
    order = np.arange(n) if timed else np.random.default_rng(seed).permutation(n)
    return np.array_split(order, n_folds + 1)


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


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
) -> tuple[Any, Selection]:
    """Compare the candidates on the training rows (in time order when ``timed``); return the winner,
    unfitted and configured, with the :class:`Selection` that chose it."""
    y = np.asarray(y).astype(np.int8)
    blocks = _blocks(len(y), n_folds, timed, seed)
    folds = []
    for k in range(n_folds):
        fit_rows = np.concatenate(blocks[: k + 1])
        score_rows = blocks[k + 1]
        if len(np.unique(y[fit_rows])) < 2 or len(np.unique(y[score_rows])) < 2:
            continue
        folds.append((np.sort(fit_rows), np.sort(score_rows)))
    if not folds:
        raise ValueError("model selection needs converted and not converted leads in every fold")
    selection = Selection(winner="", n_folds=len(folds), timed=timed)
    fold_data = []
    for fit_rows, score_rows in folds:
        enc = clone(encoder).fit(X.iloc[fit_rows])
        fold_data.append(
            (enc, enc.transform(X.iloc[fit_rows]), enc.transform(X.iloc[score_rows]), fit_rows, score_rows)
        )

    tree_margins: list[np.ndarray] = []
    best_grid = None
    if "lightgbm" in candidates or "blend" in candidates:
        grid_results = []
        for leaves, min_child, reg in LIGHTGBM_GRID:
            model = clone(base).set_params(num_leaves=leaves, min_child_samples=min_child, reg_lambda=reg)
            aucs, rounds, margins = [], [], []
            for enc, fit_matrix, score_matrix, fit_rows, score_rows in fold_data:
                model.encoder_ = enc
                params = {**model.lgb_params(), "num_threads": lightgbm_threads(len(fit_rows), model.n_jobs)}
                names = [_safe_name(n) for n in enc.feature_names_out_]
                train_set = lgb.Dataset(
                    fit_matrix, label=y[fit_rows], feature_name=names, categorical_feature=enc.categorical_indices_
                )
                valid = lgb.Dataset(score_matrix, label=y[score_rows], reference=train_set)
                booster = lgb.train(
                    params,
                    train_set,
                    num_boost_round=MAX_ROUNDS,
                    valid_sets=[valid],
                    callbacks=[lgb.early_stopping(EARLY_STOPPING, verbose=False)],
                )
                margin = booster.predict(score_matrix, raw_score=True, num_iteration=booster.best_iteration)
                aucs.append(_auc(y[score_rows], margin))
                rounds.append(int(booster.best_iteration or MAX_ROUNDS))
                margins.append(margin)
            grid_results.append(
                {
                    "num_leaves": leaves,
                    "min_child_samples": min_child,
                    "reg_lambda": reg,
                    "n_estimators": int(np.median(rounds)),
                    "fold_auc": aucs,
                    "mean_auc": float(np.nanmean(aucs)),
                    "margins": margins,
                }
            )
        best_grid = max(grid_results, key=lambda r: r["mean_auc"])
        tree_margins = best_grid.pop("margins")
        selection.candidates["lightgbm"] = {
            **{k: v for k, v in best_grid.items()},
            "grid": [{k: v for k, v in r.items() if k != "margins"} for r in grid_results],
        }

    linear_margins: list[np.ndarray] = []
    linear = SplineLogisticModel(encoder, random_state=seed)
    if "spline_logistic" in candidates or "blend" in candidates:
        grid_results = []
        for knots, C in SPLINE_GRID:
            aucs, margins = [], []
            for enc, fit_matrix, score_matrix, fit_rows, score_rows in fold_data:
                model = clone(linear).set_params(C=C, n_knots=knots)
                model.encoder_ = enc
                model.fit_matrix(fit_matrix, y[fit_rows])
                margin = model.margin_matrix(score_matrix)
                aucs.append(_auc(y[score_rows], margin))
                margins.append(margin)
            grid_results.append(
                {"n_knots": knots, "C": C, "fold_auc": aucs, "mean_auc": float(np.nanmean(aucs)), "margins": margins}
            )
        best = max(grid_results, key=lambda r: r["mean_auc"])
        linear_margins = best.pop("margins")
        linear = linear.set_params(C=best["C"], n_knots=best["n_knots"])
        selection.candidates["spline_logistic"] = {
            **best,
            "grid": [{k: v for k, v in r.items() if k != "margins"} for r in grid_results],
        }

    if "blend" in candidates and tree_margins and linear_margins:
        aucs, weights = [], []
        for k, (_, _, _, _, score_rows) in enumerate(fold_data):
            others = [i for i in range(len(fold_data)) if i != k]
            if not others:
                break
            parts = np.vstack([np.column_stack([tree_margins[i], linear_margins[i]]) for i in others])
            labels = np.concatenate([y[fold_data[i][4]] for i in others])
            stack = LogisticRegression(C=1e6).fit(parts, labels)
            weights.append(stack.coef_.ravel().tolist())
            blended = stack.decision_function(np.column_stack([tree_margins[k], linear_margins[k]]))
            aucs.append(_auc(y[score_rows], blended))
        if aucs:
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
        return BlendModel(encoder, trees=trees, linear=linear), selection
    return trees, selection
