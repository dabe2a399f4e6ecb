"""Where a calibrated probability lands: its 0-100 score and its routing tier.

The one home of both placements. Each has a vectorised form (``np.searchsorted``, for tables) and a
scalar form (``bisect`` on lists, for a request's few leads) that give the same answer for every
probability; tests hold them equal on the edges (exact cut-offs and percentiles, 0, 1, ties).

- score: the number of the score reference's values (the holdout's 101 percentiles) at or below the
  probability, minus one, within 0 .. 100; a score of 90 means "at or above 90% of recent leads".
- tier: the first tier whose ``min_probability`` the probability reaches (``p >= cut-off``); the last
  tier takes every lead left.

A NaN probability is refused (ValueError): it has no place on either scale.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

import numpy as np


def _refuse_nan(probability: np.ndarray) -> None:
    if np.isnan(probability).any():
        raise ValueError("a probability is NaN: it cannot be placed on the score scale or in a tier")


def scores(score_reference: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """The 0-100 score of each probability (vectorised form)."""
    reference = np.asarray(score_reference, dtype=np.float64)
    probability = np.asarray(probability, dtype=np.float64)
    _refuse_nan(probability)
    return np.searchsorted(reference, probability, side="right").clip(1, len(reference)) - 1


def tiers(cutoffs: Sequence[float] | np.ndarray, probability: np.ndarray) -> np.ndarray:
    """The tier index of each probability, given the cut-offs of every tier but the last, best first
    (vectorised form): the number of cut-offs above it."""
    negated = -np.asarray(cutoffs, dtype=np.float64)
    probability = np.asarray(probability, dtype=np.float64)
    _refuse_nan(probability)
    return np.searchsorted(negated, -probability, side="left")


class Placement:
    """One model's score reference and tier cut-offs, placing probabilities one at a time or as arrays.

    ``score_reference``: non-decreasing (the holdout's percentiles); ``cutoffs``: the ``min_probability``
    of every tier but the last, best tier first, non-increasing.
    """

    def __init__(self, score_reference: Sequence[float] | np.ndarray, cutoffs: Sequence[float] | np.ndarray):
        self.reference = np.asarray(score_reference, dtype=np.float64).reshape(-1)
        self.cutoffs = np.asarray(cutoffs, dtype=np.float64).reshape(-1)
        if not len(self.reference) or np.isnan(self.reference).any() or (np.diff(self.reference) < 0).any():
            raise ValueError(f"the score reference must be non-decreasing numbers; got {self.reference.tolist()}")
        if np.isnan(self.cutoffs).any() or (np.diff(self.cutoffs) > 0).any():
            raise ValueError(
                f"tier cut-offs must be non-increasing numbers, best tier first; got {self.cutoffs.tolist()}"
            )
        self._reference = self.reference.tolist()
        self._negated = (-self.cutoffs).tolist()
        self._top = len(self._reference)

    def scores(self, probability: np.ndarray) -> np.ndarray:
        """The 0-100 score of each probability."""
        return scores(self.reference, probability)

    def tiers(self, probability: np.ndarray) -> np.ndarray:
        """The tier index of each probability."""
        return tiers(self.cutoffs, probability)

    def score(self, probability: float) -> int:
        """The 0-100 score of one probability (the same as :meth:`scores`)."""
        if probability != probability:
            _refuse_nan(np.array([probability]))
        return min(max(bisect_right(self._reference, probability), 1), self._top) - 1

    def tier(self, probability: float) -> int:
        """The tier index of one probability (the same as :meth:`tiers`)."""
        if probability != probability:
            _refuse_nan(np.array([probability]))
        return bisect_left(self._negated, -probability)
