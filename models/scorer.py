"""The serving form of a model: encoding tables, compiled trees, calibration, score scale and routing.

A :class:`Scorer` is derived from a :class:`models.artifact.ScoringArtifact` when the model is
packaged (``ScoringArtifact.scorer()``) and saved beside it as plain arrays and JSON
(:mod:`models.serving_form`: no pickle, so loading it never runs code). It scores feature records with numpy
and the compiled-trees kernel, so the API process imports neither scikit-learn nor LightGBM (LightGBM
only where the kernel was not built: see :mod:`models.compiled_trees`). Tests hold its answers equal
to the artifact's.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from leadscore.features.columns import ColumnCodes
from leadscore.features.files import write_atomic
from leadscore.models.compiled_trees import CompiledTrees
from leadscore.models.curve import CalibrationCurve
from leadscore.models.explain import reasons
from leadscore.models.linear_terms import LinearTerms
from leadscore.models.placement import Placement
from leadscore.models.routing import RoutingPolicy

ARTIFACT_FILE = "leadscore.joblib"  # the whole fitted artifact: batch scoring, pyfunc, promotion gates
SCORER_FILE = "scorer.npz"  # its serving form: arrays + JSON, read with allow_pickle=False
LEGACY_SCORER_FILE = "scorer.joblib"  # the pickled serving form of older versions: never loaded by the API
T = TypeVar("T")
MODEL_FILES = (ARTIFACT_FILE, SCORER_FILE)  # the files of a packaged leadscore model version
SERVING_FILES = (SCORER_FILE,)  # the only file the API downloads and loads


def scored_columns(probability: np.ndarray, placement: Placement, routing: RoutingPolicy) -> dict[str, np.ndarray]:
    """The probability, 0-100 score, tier and queue columns of calibrated probabilities."""
    tier = placement.tiers(probability)
    names = np.array([t.name for t in routing.tiers], dtype=object)
    queues = np.array([t.queue for t in routing.tiers], dtype=object)
    return {
        "probability": probability,
        "score": placement.scores(probability),
        "tier": names[tier],
        "queue": queues[tier],
    }


def load_checked(path: Path, cls: type[T], what: str) -> T:
    """``joblib.load`` a file that must hold a ``cls`` (named ``what`` in the error); training side only."""
    import joblib

    obj = joblib.load(path)
    if not isinstance(obj, cls):
        raise TypeError(f"{path}: not a leadscore {what} (found {type(obj).__name__})")
    return obj


def dump_atomic(obj: Any, path: Path) -> Path:
    """``joblib.dump`` atomically (:func:`features.files.write_atomic`): a reader never sees a half-written file."""
    import joblib

    return write_atomic(path, lambda tmp: joblib.dump(obj, tmp))


@dataclass
class Scorer:
    """Scores feature records (the API's leads): probability, 0-100 score, tier, queue, SLA and reasons.

    The margin is the trees' (``linear`` None), the linear terms' (``trees`` None), or ``a * trees + b *
    linear`` with ``weights = (a, b)`` (a blend); a lead's reasons are the same combination of the trees'
    TreeSHAP values and the linear terms, scaled by the calibration's slope.
    """

    columns: ColumnCodes
    trees: CompiledTrees | None
    calibration: CalibrationCurve
    score_reference: np.ndarray
    routing: RoutingPolicy
    labels: dict[str, str]
    metadata: dict[str, Any] = field(default_factory=dict)
    linear: LinearTerms | None = None
    weights: tuple[float, float] = (1.0, 0.0)

    @property
    def kind(self) -> str:
        """``trees``, ``linear`` or ``blend``."""
        if self.linear is None:
            return "trees"
        return "linear" if self.trees is None else "blend"

    def margin(self, matrix: np.ndarray) -> np.ndarray:
        """Raw margin of an encoded matrix (before calibration)."""
        if self.linear is None:
            return self.trees.margin(matrix)
        if self.trees is None:
            return self.linear.margin(matrix)
        a, b = self.weights
        return a * self.trees.margin(matrix) + b * self.linear.margin(matrix)

    def explain(self, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw margin and each column's exact contribution to it (TreeSHAP, linear terms, or their blend)."""
        if self.linear is None:
            return self.trees.explain(matrix)
        if self.trees is None:
            return self.linear.explain(matrix)
        a, b = self.weights
        tree_margin, tree_terms = self.trees.explain(matrix)
        linear_margin, linear_terms = self.linear.explain(matrix)
        return a * tree_margin + b * linear_margin, a * tree_terms + b * linear_terms

    def __post_init__(self) -> None:
        self._names = self.columns.names
        self._placement = Placement(self.score_reference, self.routing.cutoffs)

    def __getstate__(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}  # the lookups above are rebuilt on loading

    def __setstate__(self, state: dict[str, Any]) -> None:
        # only the fields are read back (a file may hold other private lookups): the lookups are rebuilt
        self.__dict__.update({k: v for k, v in state.items() if not k.startswith("_")})
        self.__post_init__()

    @property
    def input_columns(self) -> list[str]:
        return list(self._names)

    def score_table(self, table: Any) -> dict[str, np.ndarray]:
        """Probability, score, tier and queue columns for a table of leads (a DataFrame or a mapping of
        column -> values; batch scoring)."""
        probability = self.calibration(self.margin(self.columns.transform(table)))
        return scored_columns(probability, self._placement, self.routing)

    def score_records(self, records: list[dict[str, Any]], explain: bool = True, k: int = 3) -> list[dict[str, Any]]:
        """One answer per record, in order; ``reasons`` (top ``k`` up and down) when ``explain``."""
        matrix = self.columns.transform_records(records)
        if explain:
            margin, contributions = self.explain(matrix)
            contributions = contributions * self.calibration.slope
        else:
            margin, contributions = self.margin(matrix), None
        out, placement = [], self._placement
        for i, (record, probability) in enumerate(zip(records, self.calibration(margin).tolist(), strict=True)):
            tier = self.routing.tiers[placement.tier(probability)]
            item = {
                "probability": probability,
                "score": placement.score(probability),
                "tier": tier.name,
                "queue": tier.queue,
                "sla_hours": tier.sla_hours,
            }
            if contributions is not None:
                item["reasons"] = reasons(contributions[i], self._names, self.labels, record, k)
            out.append(item)
        return out

    def save(self, path: Path) -> Path:
        """Write the serving file (:func:`models.serving_form.save_scorer`: arrays + JSON, atomically)."""
        from leadscore.models.serving_form import save_scorer

        return save_scorer(self, path)

    @classmethod
    def load(cls, path: Path) -> Scorer:
        """Read a serving file without unpickling anything (:func:`models.serving_form.load_scorer`)."""
        from leadscore.models.serving_form import load_scorer

        return load_scorer(path)
