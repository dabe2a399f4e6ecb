"""A fitted calibration as plain numbers: raw margin -> calibrated probability, with no scikit-learn at scoring time."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CalibrationCurve:
    """Platt scaling ``1 / (1 + exp(-(slope * margin + intercept)))``, or, when ``knots_x`` are given, the
    isotonic step function through ``(knots_x, knots_y)`` (clipped at both ends, as scikit-learn's
    ``IsotonicRegression(out_of_bounds="clip")`` predicts).

    ``slope`` also converts a margin contribution into calibrated log-odds (reason codes).
    """

    slope: float
    intercept: float
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        margin = np.asarray(margin, dtype=np.float64).reshape(-1)
        if self.knots_x:
            return np.interp(margin, self.knots_x, self.knots_y)
        if len(margin) == 1:  # one lead: numpy's scalar arithmetic, the same floats as the array form
            return np.array([1.0 / (1.0 + np.exp(-(self.slope * margin[0] + self.intercept)))])
        return 1.0 / (1.0 + np.exp(-(self.slope * margin + self.intercept)))
