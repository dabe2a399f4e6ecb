"""Holdout split: the newest period when rows have timestamps, the last rows for ``split: file_order`` (an export
sorted by time without one), else a seeded stratified random share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from leadscore.features.build import TrainingFrame
from leadscore.features.errors import DataError


@dataclass(frozen=True)
class Split:
    """Row positions of the training part and the holdout, and the rule that chose them (recorded with the model)."""

    train: np.ndarray
    holdout: np.ndarray
    method: str  # "time", "file_order" or "random"
    holdout_fraction: float
    seed: int
    cutoff: str | None = None  # first timestamp of the holdout (time split)

    def describe(self) -> dict[str, object]:
        return {
            "method": self.method,
            "holdout_fraction": self.holdout_fraction,
            "seed": self.seed,
            "cutoff": self.cutoff,
        }


def split_frame(tf: TrainingFrame, holdout_fraction: float = 0.2, seed: int = 0) -> Split:
    """Split rows into training and holdout positions; training positions stay in time order."""
    if not 0 < holdout_fraction < 1:
        raise ValueError(f"holdout_fraction must be between 0 and 1; got {holdout_fraction}")
    n = len(tf.frame)
    if n == 0:
        counts = ", ".join(f"{k}: {v}" for k, v in tf.excluded.items()) or "none"
        raise DataError(
            f"{tf.source or 'the data'}: no lead is eligible for training; left out: {counts} "
            "(horizon_not_elapsed: created less than --horizon-days before --as-of, so censored, not negative)"
        )
    if tf.split_rule == "file_order":
        holdout = np.zeros(n, dtype=bool)
        holdout[int(np.floor(n * (1 - holdout_fraction))) :] = True
        return Split(np.flatnonzero(~holdout), np.flatnonzero(holdout), "file_order", holdout_fraction, seed)
    if tf.timed:
        moments = pd.to_datetime(tf.frame[tf.mapping.created_at]).to_numpy()
        cutoff = np.sort(moments)[int(np.floor(n * (1 - holdout_fraction)))]
        holdout = moments >= cutoff
        return Split(
            np.flatnonzero(~holdout), np.flatnonzero(holdout), "time", holdout_fraction, seed, str(pd.Timestamp(cutoff))
        )
    rng = np.random.default_rng(seed)
    y = tf.frame["label"].to_numpy()
    holdout = np.zeros(n, dtype=bool)
    for cls in (0, 1):
        idx = np.flatnonzero(y == cls)
        holdout[rng.choice(idx, size=round(len(idx) * holdout_fraction), replace=False)] = True
    return Split(np.flatnonzero(~holdout), np.flatnonzero(holdout), "random", holdout_fraction, seed)
