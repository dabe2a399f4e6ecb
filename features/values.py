"""Checks on the values of numeric feature columns before anything is fitted or scored.

A number too large for a float (a 400-digit id pasted into a numeric column) reads as infinity, and
infinity breaks every estimator; either is refused with the file, the column, the row and the value.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.features.errors import DataError


def _shown(value: object) -> str:
    text = str(value).strip()
    return repr(text) if len(text) <= 24 else f"{text[:12]!r}... ({len(text)} characters)"


def refuse_non_finite(
    frame: pd.DataFrame, columns: Sequence[str], source: Path | str, missing_values: Sequence[str] = ("",)
) -> None:
    """Every value of ``columns`` present in ``frame`` is missing or a finite number (else :class:`DataError`)."""
    tokens = {str(v) for v in missing_values}
    for column in columns:
        if column not in frame.columns:
            continue
        raw = frame[column]
        if pd.api.types.is_bool_dtype(raw):
            continue
        if pd.api.types.is_numeric_dtype(raw):
            numbers = raw.to_numpy(dtype=np.float64, na_value=np.nan)
        else:
            text = raw.astype("string").str.strip()
            text = text.mask(text.isin(tokens))
            numbers = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(numbers)
        if bad.any():
            row = int(bad.argmax())
            raise DataError(
                f"{source}: column {column!r} row {row + 1}: value {_shown(raw.iloc[row])} is too large or infinite "
                f"for a number ({int(bad.sum())} such value(s)); fix it, or mark the column categorical or excluded"
            )
