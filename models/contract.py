"""The input contract of a model: what a caller sends and what the model predicts, as one fingerprint.

Two versions share a contract when they read the same lead layout (the mapping's form and id column,
the feature columns and their kinds) and predict the same thing (target and horizon). Promotion
refuses to replace a champion by a model of another contract unless told to, because the API's
callers send the champion's lead shape.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any


def contract(
    form: str | None,
    id_column: str | None,
    categorical: Sequence[str],
    numeric: Sequence[str],
    boolean: Sequence[str],
    target: str | None,
    horizon_days: int | None,
) -> dict[str, Any]:
    """The contract's fields in a canonical form (column lists sorted: their order is not part of it)."""
    return {
        "form": form,
        "id": id_column,
        "features": {"categorical": sorted(categorical), "numeric": sorted(numeric), "boolean": sorted(boolean)},
        "target": target,
        "horizon_days": int(horizon_days) if horizon_days is not None else None,
    }


def fingerprint(fields: dict[str, Any]) -> str:
    """The SHA-256 (hex, first 16 characters) of a contract's canonical JSON."""
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def contract_of(metadata: dict[str, Any], columns: Any) -> dict[str, Any]:
    """The contract of a packaged model, from its metadata and its fitted column codes
    (:class:`features.columns.ColumnCodes`)."""
    mapping = metadata.get("mapping") or {}
    return contract(
        mapping.get("form"),
        mapping.get("id"),
        columns.categorical,
        columns.numeric,
        columns.boolean,
        metadata.get("target"),
        metadata.get("horizon_days"),
    )


def describe_difference(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Which fields of two contracts differ, in words (e.g. ``horizon_days 90 -> 60``)."""
    keys = ("form", "id", "target", "horizon_days")
    parts = [f"{key} {a.get(key)} -> {b.get(key)}" for key in keys if a.get(key) != b.get(key)]
    for kind in ("categorical", "numeric", "boolean"):
        old, new = set(a["features"][kind]), set(b["features"][kind])
        if old - new:
            parts.append(f"{kind} features dropped: {', '.join(sorted(old - new)[:5])}")
        if new - old:
            parts.append(f"{kind} features added: {', '.join(sorted(new - old)[:5])}")
    return "; ".join(parts) or "no difference"
