"""The one fitted object that is the model: pipeline + trees + calibrator + routing + metadata, saved as one file."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.models.compiled_trees import CompiledTrees
from leadscore.models.lead_model import LeadScoringModel
from leadscore.models.placement import Placement
from leadscore.models.routing import RoutingPolicy
from leadscore.models.scorer import ARTIFACT_FILE, Scorer, dump_atomic, load_checked, scored_columns

__all__ = ["ARTIFACT_FILE", "ScoringArtifact"]


@dataclass
class ScoringArtifact:
    """Everything batch scoring, promotion and reports need, fitted together at training time (serving loads :meth:`scorer`).

    ``score_reference`` holds the 101 percentiles of the holdout's probabilities: a lead's 0-100
    score is the share of those recent leads it outranks, so a score of 90 means "top 10%".
    """

    model: LeadScoringModel | Any  # or models.linear.SplineLogisticModel, models.blend.BlendModel
    routing: RoutingPolicy
    score_reference: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def placement(self) -> Placement:
        """The score scale and tier cut-offs: the scorer's placement (:mod:`models.placement`)."""
        return Placement(self.score_reference, self.routing.cutoffs)

    @cached_property
    def input_columns(self) -> list[str]:
        return list(self.model.encoder_.feature_names_out_)

    @cached_property
    def feature_labels(self) -> dict[str, str]:
        return self.model.encoder_.feature_labels()

    def score_of(self, probability: np.ndarray) -> np.ndarray:
        """The 0-100 score of calibrated probabilities: the percentile among the holdout's leads."""
        return self.placement.scores(probability)

    def score_matrix(self, matrix: np.ndarray, margin: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Probability, score, tier and queue for an encoded matrix (or its already computed raw margin)."""
        if margin is None:
            margin = self.model.margin_matrix(matrix)
        return scored_columns(self.model.calibrator_.predict(margin), self.placement, self.routing)

    def score_table(self, table: Any) -> dict[str, np.ndarray]:
        """Probability, score, tier and queue columns for a table of leads, as :meth:`Scorer.score_table`."""
        return self.score_matrix(self.model.encoder_.transform(table))

    def score_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Score a batch of lead rows (the same columns training used)."""
        return pd.DataFrame(self.score_table(frame), index=frame.index)

    def scorer(self) -> Scorer:
        """The serving form of this model (no scikit-learn): same encoding, trees and/or linear terms, calibration
        and routing."""
        if isinstance(self.model, LeadScoringModel):
            trees, linear, weights = CompiledTrees.from_booster(self.model.booster_), None, (1.0, 0.0)
        else:
            trees, linear, weights = self.model.serving_parts()
        return Scorer(
            columns=self.model.encoder_.columns_,
            trees=trees,
            calibration=self.model.calibrator_.curve_,
            score_reference=self.score_reference,
            routing=self.routing,
            labels=self.feature_labels,
            metadata=self.metadata,
            linear=linear,
            weights=weights,
        )

    def save(self, path: Path) -> Path:
        return dump_atomic(self, path)

    @classmethod
    def load(cls, path: Path) -> ScoringArtifact:
        return load_checked(path, cls, "artifact")
