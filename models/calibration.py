"""Probability calibration of a classifier's raw margin (log-odds)."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from leadscore.models.curve import CalibrationCurve


class MarginCalibrator(BaseEstimator):
    """Map a raw margin to a calibrated probability.

    ``method="sigmoid"`` (Platt scaling, the default): ``p = 1 / (1 + exp(-(slope * margin + intercept)))``;
    monotone, so ranking metrics are unchanged, and a margin contribution scales by ``slope_``.
    ``method="isotonic"``: a step function fitted by isotonic regression (needs more data).
    """

    def __init__(self, method: str = "sigmoid"):
        self.method = method

    def fit(self, margin: np.ndarray, y: np.ndarray) -> MarginCalibrator:
        margin = np.asarray(margin, dtype=np.float64).reshape(-1)
        y = np.asarray(y).reshape(-1)
        if self.method not in ("sigmoid", "isotonic"):
            raise ValueError(f"calibration method {self.method!r} is not 'sigmoid' or 'isotonic'")
        if len(np.unique(y)) < 2:
            raise ValueError("calibration needs both converted and not converted leads in its sample")
        platt = LogisticRegression(C=1e6).fit(margin.reshape(-1, 1), y)
        self.slope_ = float(platt.coef_[0, 0])
        self.intercept_ = float(platt.intercept_[0])
        knots: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
        if self.method == "isotonic":
            isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(margin, y)
            knots = (tuple(map(float, isotonic.X_thresholds_)), tuple(map(float, isotonic.y_thresholds_)))
        self.curve_ = CalibrationCurve(self.slope_, self.intercept_, *knots)
        return self

    def predict(self, margin: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "curve_")
        return self.curve_(margin)
