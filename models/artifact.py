"""The one fitted object that is the model: pipeline + trees + calibrator + routing + metadata, saved as one file."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd

from models.explain import reasons
from models.lead_model import LeadScoringModel
from models.routing import RoutingPolicy

ARTIFACT_FILE = "leadscore.joblib"


@dataclass
class ScoringArtifact:
    """Everything serving and batch scoring need, fitted together at training time.

    ``score_reference`` holds the 101 percentiles of the holdout's probabilities: a lead's 0-100
    score is the share of those recent leads it outranks, so a score of 90 means "top 10%".
    """

    model: LeadScoringModel
    routing: RoutingPolicy
    score_reference: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def input_columns(self) -> list[str]:
        return list(self.model.encoder_.feature_names_out_)

    @cached_property
    def feature_labels(self) -> dict[str, str]:
        return self.model.encoder_.feature_labels()

    def score_of(self, probability: np.ndarray) -> np.ndarray:
        """The 0-100 score of calibrated probabilities: the percentile among the holdout's leads."""
        return np.searchsorted(self.score_reference, probability, side="right").clip(1, 101) - 1

    def score_matrix(self, matrix: np.ndarray, margin: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Probability, score, tier and queue for an encoded matrix (or its already computed raw margin)."""
        if margin is None:
            margin = self.model.margin_matrix(matrix)
        probability = self.model.calibrator_.predict(margin)
        tier = self.routing.tier_index(probability)
        names = np.array([t.name for t in self.routing.tiers], dtype=object)
        queues = np.array([t.queue for t in self.routing.tiers], dtype=object)
        return {"probability": probability, "score": self.score_of(probability), "tier": names[tier], "queue": queues[tier]}

    def score_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Score a batch of lead rows (the same columns training used)."""
        return pd.DataFrame(self.score_matrix(self.model.encoder_.transform(frame)), index=frame.index)

    def score_records(self, records: list[dict[str, Any]], explain: bool = True, k: int = 3) -> list[dict[str, Any]]:
        """Score feature records (request path): no DataFrame is built."""
        matrix = self.model.encoder_.transform_records(records)
        margin, contributions = self.model.explain_matrix(matrix) if explain else (None, None)
        scored = self.score_matrix(matrix, margin)
        names, labels = self.input_columns, self.feature_labels
        tiers = {t.name: t for t in self.routing.tiers}
        out = []
        for i, record in enumerate(records):
            tier = tiers[scored["tier"][i]]
            item = {
                "probability": float(scored["probability"][i]),
                "score": int(scored["score"][i]),
                "tier": tier.name,
                "queue": tier.queue,
                "sla_hours": tier.sla_hours,
            }
            if contributions is not None:
                item["reasons"] = reasons(contributions[i], names, labels, record, k)
            out.append(item)
        return out

    def save(self, path: Path) -> Path:
        """Write atomically: a reader never sees a half-written file."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            joblib.dump(self, tmp)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: Path) -> ScoringArtifact:
        obj = joblib.load(path)
        if not isinstance(obj, cls):
            raise TypeError(f"{path}: not a leadscore artifact (found {type(obj).__name__})")
        return obj
