"""The report of one holdout, from figures to folder, and its feed from a training run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from leadscore.training.report import render, write
from leadscore.training.report.figures import ManualResult, ReportInput, compute, split_rule_text

if TYPE_CHECKING:
    from leadscore.training.train import FitResult


def build_report(
    inp: ReportInput,
    folder: Path,
    *,
    leads_per_rep_week: float | None = None,
    reps: int | None = None,
) -> dict[str, Any]:
    """Compute every figure, draw the charts, render the page and write the report folder; returns the summary.

    Without ``leads_per_rep_week`` / ``reps`` the capacity view assumes them and a note says so
    (:func:`figures.assumed_capacity`).
    """
    fig = compute(inp, leads_per_rep_week=leads_per_rep_week, reps=reps)
    images = render.charts_of(fig)
    write.write_report(Path(folder), fig, images, render.page(fig, images))
    return fig.summary


def write_fit_report(
    result: FitResult,
    folder: Path,
    *,
    leads_per_rep_week: float | None = None,
    reps: int | None = None,
) -> dict[str, Any]:
    """The report of a :func:`training.train.fit` result (what ``leadscore train`` logs as ``report/``)."""
    from leadscore.training.train import leads_per_week

    holdout = result.holdout
    manual = {
        name: ManualResult(result.holdout_probability[f"manual:{name}"], np.asarray(clf.passed(holdout), dtype=bool))
        for name, clf in result.manual.items()
    }
    baselines = (
        {"logistic regression (baseline)": result.holdout_probability["logistic_regression"]}
        if "logistic_regression" in result.holdout_probability
        else {}
    )
    metadata = {**result.artifact.metadata, "title": "Lead scoring: model vs manual qualification (training run)"}
    inp = ReportInput(
        holdout=holdout,
        y=holdout["label"].to_numpy(),
        model_probability=result.holdout_probability["model"],
        manual=manual,
        metadata=metadata,
        model_score=result.artifact.score_of(result.holdout_probability["model"]),
        baselines=baselines,
        leads_per_week=leads_per_week(result.frame, result.split),
        split_rule=split_rule_text(
            result.split.describe(), result.frame.mapping.created_at if result.frame.timed else None
        ),
        model_label="model (this run)",
        notes=list(result.artifact.metadata.get("findings") or []),  # first lines: chance, baselines, drift, split
    )
    return build_report(inp, folder, leads_per_rep_week=leads_per_rep_week, reps=reps)
