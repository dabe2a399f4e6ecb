"""Does an input carry the model's features? A file scored without them would get confident-looking nonsense.

A feature counts as missing when its column is absent or holds nothing but missing values. Its weight is its
share of the model's importance (gain) recorded at training time, or an equal share for models without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from leadscore.features.errors import DataError

MAX_MISSING_SHARE = 0.05


@dataclass(frozen=True)
class Coverage:
    missing: list[str]
    share: float  # the missing features' share of the model's importance, 0..1

    def text(self) -> str:
        return (
            f"{len(self.missing)} of the model's features missing ({self.share:.0%} of its importance): {self.missing}"
        )


def coverage(
    leads: pd.DataFrame, features: Sequence[str], importance: dict[str, float] | None, missing_values: Sequence[str]
) -> Coverage:
    """The model's features absent from (or empty in) ``leads`` and the share of importance they carry."""
    tokens = {str(v) for v in missing_values}
    missing = []
    for name in features:
        if name not in leads.columns:
            missing.append(name)
            continue
        column = leads[name]
        if column.isna().all() or (
            not pd.api.types.is_numeric_dtype(column) and column.dropna().astype(str).isin(tokens).all()
        ):
            missing.append(name)
    return weigh(missing, features, importance)


def weigh(missing: list[str], features: Sequence[str], importance: dict[str, float] | None) -> Coverage:
    """The :class:`Coverage` of ``missing`` among ``features``: their share of the importance."""
    weights = importance or {name: 1 / len(features) for name in features}
    total = sum(weights.get(n, 0.0) for n in features) or 1.0
    return Coverage(missing, sum(weights.get(n, 0.0) for n in missing) / total)


def check_coverage(cov: Coverage, source: str, *, allow: bool, limit: float = MAX_MISSING_SHARE) -> str | None:
    """Refuse when the missing features carry more than ``limit`` of the importance (unless ``allow``);
    otherwise the warning to print, or ``None`` when nothing is missing."""
    if not cov.missing:
        return None
    if cov.share > limit and not allow:
        raise DataError(
            f"{source}: {cov.text()}; scores without them would be wrong. Add the columns (a CRM folder brings its "
            "activities), or pass --allow-missing-features to score anyway"
        )
    return cov.text()
