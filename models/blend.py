"""The blend: gradient-boosted trees and the spline logistic model, their margins combined by fitted weights.

With ``timed`` (the default), ``fit`` expects rows in time order, oldest first (as
:class:`models.lead_model.LeadScoringModel` with ``calibration_folds=0``): both parts learn on the first
``1 - blend_fraction`` of the rows, and the weights ``a, b`` and intercept ``c`` of
``p = sigmoid(a * trees + b * linear + c)`` are fitted by a logistic regression on the margins of the
newest rest, which neither part saw. Without time order (data split at random), the rows the weights are
fitted on are a seeded random ``blend_fraction`` of them instead, so that they stand for the rows the model
will score as the holdout does, whatever order the file lists its leads in. The blend is thereby
calibrated; a lead's reasons are ``a`` times its TreeSHAP values plus ``b`` times its linear terms.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from leadscore.features.encoder import FeatureEncoder
from leadscore.models.compiled_trees import CompiledTrees
from leadscore.models.lead_model import LeadScoringModel
from leadscore.models.linear import SplineLogisticModel, fixed_calibrator
from leadscore.models.linear_terms import LinearTerms


class BlendModel(ClassifierMixin, BaseEstimator):
    """Trees + spline logistic model, blended on their margins (see the module's note).

    Parameters
    ----------
    encoder : FeatureEncoder
    trees : LeadScoringModel
        Unfitted; its LightGBM settings (``lgb_params``, ``n_estimators``, ``monotone``) are used.
    linear : SplineLogisticModel
        Unfitted.
    blend_fraction : float in (0, 0.5]
        The share of rows the weights are fitted on: the newest ones, or a random share without ``timed``.
    timed : bool
        Whether the rows are in time order (see the module's note).
    random_state : int
        Seed of the random share (without ``timed``).
    """

    # read by a blend pickled without these parameters (its rows were taken as in time order)
    timed = True
    random_state = 0

    def __init__(
        self,
        encoder: FeatureEncoder | None = None,
        trees: LeadScoringModel | None = None,
        linear: SplineLogisticModel | None = None,
        blend_fraction: float = 0.2,
        timed: bool = True,
        random_state: int = 0,
    ):
        self.encoder = encoder
        self.trees = trees
        self.linear = linear
        self.blend_fraction = blend_fraction
        self.timed = timed
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: Any) -> BlendModel:
        if self.encoder is None or self.trees is None or self.linear is None:
            raise ValueError("BlendModel needs an encoder, a trees model and a linear model")
        if not 0 < self.blend_fraction <= 0.5:
            raise ValueError(f"blend_fraction must be in (0, 0.5]; got {self.blend_fraction}")
        y = np.asarray(y).astype(np.int8).reshape(-1)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        cut = round(len(y) * (1 - self.blend_fraction))
        if self.timed:
            learn, blend = np.arange(cut), np.arange(cut, len(y))
        else:
            chosen = np.zeros(len(y), dtype=bool)
            chosen[np.random.default_rng(self.random_state).choice(len(y), len(y) - cut, replace=False)] = True
            learn, blend = np.flatnonzero(~chosen), np.flatnonzero(chosen)
        for part, labels in (("training", y[learn]), ("blending", y[blend])):
            if len(np.unique(labels)) < 2:
                raise ValueError(f"the {part} part needs both converted and not converted leads")
        self.encoder_ = clone(self.encoder).fit(X.iloc[learn])
        matrix = self.encoder_.transform(X)
        self.linear_ = clone(self.linear)
        self.linear_.encoder_ = self.encoder_
        self.linear_.fit_matrix(matrix[learn], y[learn])
        self.trees_ = clone(self.trees)
        self.trees_.encoder_ = self.encoder_
        self.booster_ = self.trees_._train(matrix[learn], y[learn])
        parts = np.column_stack(
            [self.booster_.predict(matrix[blend], raw_score=True), self.linear_.terms_.margin(matrix[blend])]
        )
        stack = LogisticRegression(C=1e6).fit(parts, y[blend])
        self.weights_ = (float(stack.coef_[0, 0]), float(stack.coef_[0, 1]))
        self.calibrator_ = fixed_calibrator(1.0, float(stack.intercept_[0]))
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = self.encoder_.n_features_in_
        return self

    def lgb_params(self) -> dict[str, Any]:
        return self.trees.lgb_params()

    def serving_parts(self) -> tuple[CompiledTrees, LinearTerms, tuple[float, float]]:
        """(trees, linear terms, their weights) of the serving form."""
        check_is_fitted(self, "weights_")
        return CompiledTrees.from_booster(self.booster_), self.linear_.terms_, self.weights_

    def margin_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """``a * trees + b * linear`` (the calibrator adds the intercept)."""
        check_is_fitted(self, "weights_")
        a, b = self.weights_
        return a * self.booster_.predict(matrix, raw_score=True) + b * self.linear_.terms_.margin(matrix)

    def proba_matrix(self, matrix: np.ndarray) -> np.ndarray:
        return self.calibrator_.predict(self.margin_matrix(matrix))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "weights_")
        p = self.proba_matrix(self.encoder_.transform(X))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)
