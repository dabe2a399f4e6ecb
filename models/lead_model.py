"""The lead-scoring model: feature encoder + LightGBM + calibration, fitted and used as one estimator."""

from __future__ import annotations

from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from leadscore.features.encoder import FeatureEncoder
from leadscore.models.calibration import MarginCalibrator
from leadscore.models.threads import lightgbm_threads

_threads = lightgbm_threads  # the name training.train imports


class LeadScoringModel(ClassifierMixin, BaseEstimator):
    """Gradient-boosted trees on encoded lead columns, with a calibrated probability.

    The calibrator always learns on margins of leads the trees did not see. With
    ``calibration_folds=0`` (timed data) ``fit`` expects rows in time order, oldest first: the trees
    learn on the first ``1 - calibration_fraction`` of them and the calibrator on the newest rest, as
    in production. With ``calibration_folds=k`` (untimed data) the calibrator learns on out-of-fold
    margins of ``k`` cross-fitted models and the final trees learn on every row.

    Parameters
    ----------
    encoder : FeatureEncoder
        Unfitted encoder naming the input columns by kind.
    n_estimators, learning_rate, num_leaves, min_child_samples, reg_lambda, colsample : LightGBM settings.
    calibration : "sigmoid" or "isotonic"
    calibration_fraction : float in (0, 0.5]
    calibration_folds : int, 0 or >= 2
    monotone : mapping of column name to +1 / -1, optional
        Features whose increase may never lower (+1) or raise (-1) the score.
    random_state : int
    n_jobs : int or None
        LightGBM threads. None: :func:`models.threads.lightgbm_threads` (one thread for small data,
        all cores for large).
    """

    def __init__(
        self,
        encoder: FeatureEncoder | None = None,
        n_estimators: int = 150,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        reg_lambda: float = 10.0,
        colsample: float = 0.5,
        calibration: str = "sigmoid",
        calibration_fraction: float = 0.2,
        calibration_folds: int = 0,
        monotone: dict[str, int] | None = None,
        random_state: int = 0,
        n_jobs: int | None = None,
    ):
        self.encoder = encoder
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.reg_lambda = reg_lambda
        self.colsample = colsample
        self.calibration = calibration
        self.calibration_fraction = calibration_fraction
        self.calibration_folds = calibration_folds
        self.monotone = monotone
        self.random_state = random_state
        self.n_jobs = n_jobs

    def lgb_params(self) -> dict[str, Any]:
        """The LightGBM parameters this model trains with."""
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "lambda_l2": self.reg_lambda,
            "feature_fraction": self.colsample,
            "cat_smooth": 50.0,
            "cat_l2": 10.0,
            "min_data_per_group": 200,
            "max_cat_threshold": 16,
            "seed": self.random_state,
            "deterministic": True,
            # column-wise histograms: on lead matrices (tens of columns, many rows) faster than the
            # row-wise ones LightGBM's own test picks, and the test itself is skipped
            "force_col_wise": True,
            "verbosity": -1,
        }

    def fit(self, X: pd.DataFrame, y: Any) -> LeadScoringModel:
        if self.encoder is None:
            raise ValueError("LeadScoringModel needs an encoder (a FeatureEncoder naming the input columns)")
        if not 0 < self.calibration_fraction <= 0.5:
            raise ValueError(f"calibration_fraction must be in (0, 0.5]; got {self.calibration_fraction}")
        y = np.asarray(y).astype(np.int8).reshape(-1)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        if self.calibration_folds == 1 or self.calibration_folds < 0:
            raise ValueError(f"calibration_folds must be 0 (time tail) or >= 2; got {self.calibration_folds}")
        if self.calibration_folds:
            self.encoder_ = clone(self.encoder).fit(X)
            matrix = self.encoder_.transform(X)
            margin = np.empty(len(y))
            folds = StratifiedKFold(self.calibration_folds, shuffle=True, random_state=self.random_state)
            for fit_rows, out_rows in folds.split(matrix, y):
                margin[out_rows] = self._train(matrix[fit_rows], y[fit_rows]).predict(matrix[out_rows], raw_score=True)
            self.booster_ = self._train(matrix, y)
            self.calibrator_ = MarginCalibrator(self.calibration).fit(margin, y)
        else:
            cut = round(len(y) * (1 - self.calibration_fraction))
            for part, labels in (("training", y[:cut]), ("calibration", y[cut:])):
                if len(np.unique(labels)) < 2:
                    raise ValueError(f"the {part} part needs both converted and not converted leads")
            self.encoder_ = clone(self.encoder).fit(X.iloc[:cut])
            matrix = self.encoder_.transform(X)
            self.booster_ = self._train(matrix[:cut], y[:cut])
            self.calibrator_ = MarginCalibrator(self.calibration).fit(
                self.booster_.predict(matrix[cut:], raw_score=True), y[cut:]
            )
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = self.encoder_.n_features_in_
        return self

    def _train(self, matrix: np.ndarray, y: np.ndarray) -> lgb.Booster:
        dataset = lgb.Dataset(
            matrix,
            label=y,
            feature_name=[_safe_name(n) for n in self.encoder_.feature_names_out_],
            categorical_feature=self.encoder_.categorical_indices_,
            free_raw_data=True,
        )
        params = {**self.lgb_params(), "num_threads": lightgbm_threads(len(y), self.n_jobs)}
        if self.monotone:
            params["monotone_constraints"] = [int(self.monotone.get(n, 0)) for n in self.encoder_.feature_names_out_]
        return lgb.train(params, dataset, num_boost_round=self.n_estimators)

    def margin_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Raw log-odds of an encoded matrix."""
        check_is_fitted(self, "booster_")
        return self.booster_.predict(matrix, raw_score=True, num_threads=lightgbm_threads(len(matrix), self.n_jobs))

    def proba_matrix(self, matrix: np.ndarray) -> np.ndarray:
        """Calibrated probability of conversion for an encoded matrix."""
        return self.calibrator_.predict(self.margin_matrix(matrix))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "booster_")
        p = self.proba_matrix(self.encoder_.transform(X))
        return np.column_stack([1 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def _safe_name(name: str) -> str:
    """LightGBM rejects some characters in feature names (JSON specials)."""
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in str(name))
