"""What a training run must say plainly: the model does not beat chance or a baseline, features drift, the split is random.

Each finding is one sentence starting with ``Warning:``; ``train`` prints them after its metrics, stores
them in the model's metadata (``findings``) and the report shows them in its first lines.

- chance: the lower end of DeLong's 95% interval of the model's holdout ROC AUC is at or below 0.5 (promotion's
  gate reads the bootstrap interval of :mod:`training.gates`; on a holdout of thousands of leads the two
  agree to about 0.001);
- baselines: the model's holdout AUC is not above the logistic baseline's or a manual process's;
- drift: a feature whose values alone tell training rows from holdout rows with an AUC of at least
  ``DRIFT_AUC`` (its adversarial AUC: numbers by their rank, categories and flags by the holdout share
  of each value, missing as a value of its own);
- random split: the holdout was drawn at random although a column looks like time (a datetime column, a
  name such as ``date`` / ``month`` / ``created`` / ``_at``, or a number that rises or falls with the row order), so
  the holdout's figures are optimistic about the future.

The drift and time-like checks read at most ``SAMPLE_ROWS`` rows (a seeded sample, training and holdout in
their proportion, in row order): an adversarial AUC from 200,000 rows is within about 0.003 of the whole
table's, far inside the distance to ``DRIFT_AUC`` that matters.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from leadscore.training.gates import delong_interval, roc_auc

DRIFT_AUC = 0.75
SAMPLE_ROWS = 200_000  # rows the drift and time-like checks read at most (a seeded sample, in row order)
ORDER_CORRELATION = 0.8
_TIME_NAME = re.compile(
    r"(date|timestamp|month|year|week|quarter|created|_at$|^at_|(^|_)time$|(^|_)day$)", re.IGNORECASE
)


def adversarial_auc(values: np.ndarray, is_holdout: np.ndarray, categorical: bool) -> float:
    """How well one encoded column alone tells holdout rows from training rows (0.5 .. 1)."""
    values = np.asarray(values, dtype=np.float64)
    if len(np.unique(is_holdout)) < 2:
        return 0.5
    if categorical:
        keys = np.where(np.isnan(values), -1.0, values)
        share = pd.Series(is_holdout).groupby(keys).transform("mean").to_numpy()
        score = share
    else:
        missing = np.isnan(values)
        score = np.where(missing, np.nanmin(values) - 1 if (~missing).any() else 0.0, values)
    auc = roc_auc(is_holdout, score)
    return max(auc, 1 - auc)


def _sample_rows(train: np.ndarray, holdout: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``size`` rows in all, training and holdout in their proportion, each part in row order
    (seeded: the same run gives the same sample)."""
    total = len(train) + len(holdout)
    if total <= size:
        return train, holdout
    rng = np.random.default_rng(0)
    parts = []
    for part in (train, holdout):
        keep = max(1, round(len(part) * size / total)) if len(part) else 0
        parts.append(np.sort(rng.choice(np.asarray(part), keep, replace=False)))
    return parts[0], parts[1]


def drift_risks(
    matrix: np.ndarray, names: list[str], n_numeric_start: int, n_numeric: int, holdout_rows: np.ndarray
) -> list[tuple[str, float]]:
    """Features with an adversarial AUC of at least ``DRIFT_AUC``, highest first."""
    is_holdout = np.zeros(len(matrix), dtype=int)
    is_holdout[holdout_rows] = 1
    found = []
    for j, name in enumerate(names):
        numeric = n_numeric_start <= j < n_numeric_start + n_numeric
        auc = adversarial_auc(matrix[:, j], is_holdout, categorical=not numeric)
        if auc >= DRIFT_AUC:
            found.append((name, auc))
    return sorted(found, key=lambda item: -item[1])


def time_like_columns(frame: pd.DataFrame, columns: list[str]) -> list[str]:
    """Columns that look like time: datetime typed, a time-like name, or numbers tied to the row order."""
    found = []
    order = np.arange(len(frame))
    for name in columns:
        column = frame[name]
        if pd.api.types.is_datetime64_any_dtype(column) or _TIME_NAME.search(str(name)):
            found.append(name)
            continue
        if pd.api.types.is_numeric_dtype(column) and column.notna().sum() > 10 and column.nunique() > 5:
            ranks = column.rank().to_numpy()
            keep = ~np.isnan(ranks)
            corr = np.corrcoef(ranks[keep], order[keep])[0, 1]
            if abs(corr) >= ORDER_CORRELATION:
                found.append(name)
    return found


def findings(
    metrics: dict[str, dict[str, float]],
    chance: tuple[float, float, float],
    drift: list[tuple[str, float]],
    split_method: str,
    time_like: list[str],
) -> list[str]:
    """The run's warnings in words (see the module's note); empty when there is nothing to warn about."""
    out = []
    auc, low, high = chance
    if low <= 0.5:
        out.append(
            f"Warning: the model is not better than chance on the holdout: ROC AUC {auc:.3f} "
            f"(95% interval {low:.3f}-{high:.3f} includes 0.5). Do not promote it."
        )
    model = metrics["model"]["roc_auc"]
    for name, values in metrics.items():
        if name != "model" and values["roc_auc"] >= model:
            out.append(
                f"Warning: the model does not beat {name} on the holdout: ROC AUC {model:.3f} vs {values['roc_auc']:.3f}."
            )
    if drift:
        listed = ", ".join(f"{name} (adversarial AUC {auc:.2f})" for name, auc in drift[:8])
        out.append(
            f"Warning: drift risk: these features' values alone tell the training period from the holdout: {listed}. "
            "Where they act as a clock, the model meets values it never saw; consider excluding them."
        )
    if split_method == "random" and time_like:
        out.append(
            f"Warning: the holdout is a random split, but {', '.join(time_like[:8])} look(s) like time: the holdout "
            "mixes past and future leads, so its figures are optimistic. Give the mapping a created_at column for "
            "a time split."
        )
    return out


def frame_findings(
    tf: Any, split: Any, encoder: Any, train: pd.DataFrame | None = None
) -> tuple[list[tuple[str, float]], list[str]]:
    """The findings that read the data alone, not the model: drift risks and time-like columns.

    ``tf`` is the :class:`features.build.TrainingFrame`, ``split`` its training/holdout split and ``encoder``
    an unfitted :class:`features.encoder.FeatureEncoder` of its columns, fitted here on every training row
    (``train``: those rows, when the caller has them already).
    """
    frame = tf.frame
    columns = clone(encoder).fit(frame.iloc[split.train] if train is None else train).columns_
    train, holdout = _sample_rows(split.train, split.holdout, SAMPLE_ROWS)
    rows = np.concatenate([train, holdout])
    matrix = columns.transform(frame.iloc[rows])
    drift = drift_risks(
        matrix, columns.names, len(columns.categorical), len(columns.numeric), np.arange(len(train), len(rows))
    )
    time_like = time_like_columns(frame.iloc[np.sort(rows)], list(tf.feature_columns))
    return drift, time_like


def run_findings(result: Any, found: tuple[list[tuple[str, float]], list[str]] | None = None) -> list[str]:
    """The findings of a :func:`training.train.fit` result; ``found``, when given, is what
    :func:`frame_findings` returned for its frame and split (else it is computed here, with the model's encoder)."""
    y = result.holdout["label"].to_numpy()
    chance = delong_interval(y, result.holdout_probability["model"])
    if found is None:
        found = frame_findings(result.frame, result.split, result.artifact.model.encoder)
    drift, time_like = found
    return findings(result.metrics, chance, drift, result.split.method, time_like)
