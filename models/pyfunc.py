"""The MLflow pyfunc face of the artifact, so stock MLflow tools (``mlflow models serve``, ``spark_udf``) can score it."""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from leadscore.models.artifact import ARTIFACT_FILE, ScoringArtifact


class LeadScoringPyfunc(mlflow.pyfunc.PythonModel):
    """Loads the one joblib artifact; ``predict`` returns probability, score, tier and queue per row."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.artifact = ScoringArtifact.load(context.artifacts[ARTIFACT_FILE])

    def predict(
        self, context: mlflow.pyfunc.PythonModelContext, model_input: pd.DataFrame, params: dict | None = None
    ) -> pd.DataFrame:
        return self.artifact.score_frame(model_input).reset_index(drop=True)
