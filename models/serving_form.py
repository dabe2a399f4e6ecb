"""The serving form on disk: one ``.npz`` file of plain arrays plus a JSON header, never a pickle.

A :class:`models.scorer.Scorer` is written as numeric arrays (the compiled trees' tables, the score
reference) and one ``uint8`` array holding a UTF-8 JSON header (column codes, calibration, routing,
labels, metadata, the trees' scalars and LightGBM model string). Reading uses
``numpy.load(..., allow_pickle=False)`` and builds every object from those numbers and JSON values, so
loading a file can never run code: an object array, an unknown format or a missing entry is refused
with a :class:`ServingFormError` naming the file.

Floats survive exactly: arrays keep their bytes, and JSON numbers are written with ``repr`` (the
shortest text that reads back as the same double).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from leadscore.features.columns import ColumnCodes
from leadscore.features.files import write_atomic
from leadscore.models.compiled_trees import CompiledTrees
from leadscore.models.curve import CalibrationCurve
from leadscore.models.linear_terms import LinearTerms
from leadscore.models.routing import RoutingPolicy

FORMAT = "leadscore-scorer/1"
_HEADER = "header"
_TREE_SCALARS = ("n_features", "expected_value", "n_trees", "width", "model_string")
_TREE_ARRAYS = tuple(f.name for f in fields(CompiledTrees) if f.name not in _TREE_SCALARS)
_LINEAR_SCALARS = ("intercept", "n_categorical", "n_numeric", "n_boolean")
_LINEAR_ARRAYS = tuple(f.name for f in fields(LinearTerms) if f.name not in _LINEAR_SCALARS)


class ServingFormError(ValueError):
    """A file is not a readable leadscore serving file (truncated, tampered, a pickle, another format)."""


def _plain(value: Any) -> Any:
    """JSON ``default``: numpy scalars as Python numbers; anything else is refused (no silent str())."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value) if isinstance(value, (set, frozenset)) else list(value)
    raise TypeError(f"the serving form cannot hold a {type(value).__name__} in its JSON header")


def scorer_arrays(scorer: Any) -> dict[str, np.ndarray]:
    """The named arrays of ``scorer``'s serving file (the header is the ``header`` entry)."""
    trees: CompiledTrees | None = scorer.trees
    linear: LinearTerms | None = scorer.linear
    columns: ColumnCodes = scorer.columns
    curve: CalibrationCurve = scorer.calibration
    header = {
        "format": FORMAT,
        "kind": scorer.kind,
        "weights": [float(w) for w in scorer.weights],
        "columns": {
            "categorical": list(columns.categorical),
            "numeric": list(columns.numeric),
            "boolean": list(columns.boolean),
            "codes": columns.codes,
            "missing": sorted(columns.missing),
        },
        "trees": {name: getattr(trees, name) for name in _TREE_SCALARS} if trees is not None else None,
        "linear": {name: getattr(linear, name) for name in _LINEAR_SCALARS} if linear is not None else None,
        "calibration": {
            "slope": float(curve.slope),
            "intercept": float(curve.intercept),
            "knots_x": [float(x) for x in curve.knots_x],
            "knots_y": [float(y) for y in curve.knots_y],
        },
        "routing": scorer.routing.model_dump(mode="json"),
        "labels": dict(scorer.labels),
        "metadata": scorer.metadata,
    }
    text = json.dumps(header, default=_plain, allow_nan=True, sort_keys=True)
    arrays = {_HEADER: np.frombuffer(text.encode("utf-8"), dtype=np.uint8)}
    arrays["score_reference"] = np.asarray(scorer.score_reference, dtype=np.float64)
    parts = [("trees", trees, _TREE_ARRAYS), ("linear", linear, _LINEAR_ARRAYS)]
    for part, obj, names in parts:
        for name in names if obj is not None else ():
            value = np.asarray(getattr(obj, name))
            if value.dtype == object:
                raise TypeError(f"{part} field {name!r} is an object array: it has no plain-array form")
            arrays[f"{part}.{name}"] = value
    return arrays


def save_scorer(scorer: Any, path: Path) -> Path:
    """Write ``scorer`` as an uncompressed ``.npz`` of plain arrays, atomically (a reader never sees half a file)."""
    arrays = scorer_arrays(scorer)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

    return write_atomic(Path(path), write)


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        raw = Path(path).read_bytes()
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ServingFormError(
            f"{path}: not a readable leadscore serving file ({type(exc).__name__}: {exc}); "
            "it holds only plain arrays when intact, so fetch it again from the registry"
        ) from None


def load_scorer(path: Path) -> Any:
    """Read a serving file written by :func:`save_scorer` into a :class:`models.scorer.Scorer` (no pickle)."""
    from leadscore.models.scorer import Scorer

    arrays = _read(path)
    try:
        header = json.loads(arrays.pop(_HEADER).tobytes().decode("utf-8"))
    except (KeyError, UnicodeDecodeError, ValueError) as exc:
        raise ServingFormError(f"{path}: no readable JSON header ({type(exc).__name__})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        found = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ServingFormError(f"{path}: serving format {found!r}; this leadscore reads {FORMAT!r}")
    try:
        c = header["columns"]
        columns = ColumnCodes(
            categorical=tuple(c["categorical"]),
            numeric=tuple(c["numeric"]),
            boolean=tuple(c["boolean"]),
            codes={k: {str(t): int(v) for t, v in codes.items()} for k, codes in c["codes"].items()},
            missing=frozenset(c["missing"]),
        )
        kind = header["kind"]
        if kind not in ("trees", "linear", "blend"):
            raise ValueError(f"unknown model kind {kind!r}")
        trees = linear = None
        if kind != "linear":
            t = header["trees"]
            trees = CompiledTrees(
                n_features=int(t["n_features"]),
                expected_value=float(t["expected_value"]),
                n_trees=int(t["n_trees"]),
                width=int(t["width"]),
                model_string=str(t["model_string"]),
                **{name: arrays[f"trees.{name}"] for name in _TREE_ARRAYS},
            )
        if kind != "trees":
            lin = header["linear"]
            linear = LinearTerms(
                intercept=float(lin["intercept"]),
                n_categorical=int(lin["n_categorical"]),
                n_numeric=int(lin["n_numeric"]),
                n_boolean=int(lin["n_boolean"]),
                **{name: arrays[f"linear.{name}"] for name in _LINEAR_ARRAYS},
            )
            if linear.n_features != len(columns.names):
                raise ValueError(f"linear terms read {linear.n_features} columns; the codes give {len(columns.names)}")
        weights = tuple(float(w) for w in header["weights"])
        if len(weights) != 2:
            raise ValueError(f"weights {weights} are not two numbers")
        k = header["calibration"]
        curve = CalibrationCurve(
            slope=float(k["slope"]),
            intercept=float(k["intercept"]),
            knots_x=tuple(float(x) for x in k["knots_x"]),
            knots_y=tuple(float(y) for y in k["knots_y"]),
        )
        return Scorer(
            columns=columns,
            trees=trees,
            calibration=curve,
            score_reference=arrays["score_reference"],
            routing=RoutingPolicy.model_validate(header["routing"]),
            labels={str(a): str(b) for a, b in header["labels"].items()},
            metadata=dict(header["metadata"] or {}),
            linear=linear,
            weights=weights,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ServingFormError(f"{path}: incomplete leadscore serving file ({type(exc).__name__}: {exc})") from None
