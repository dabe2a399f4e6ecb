"""The evaluate job: a registered model and its manual rivals, judged on the leads it never trained on.

The model's artifact carries how it was trained (mapping, target, horizon, observation window, ``as_of``,
split rule, data digest). :func:`evaluate` rebuilds the frame from the data the same way, re-applies the
same split rule (a time split: every lead created at or after the recorded cutoff; a random split: the same
seeded share), scores only those holdout leads, fits each manual process (and, optionally, a points rules
file) on the training part exactly as ``fit`` does, and writes the report of :mod:`training.report`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.features.build import LABEL, TrainingFrame, load_training_frame
from leadscore.features.mapping import DataError, Mapping, load_mapping
from leadscore.models import packaging, registry
from leadscore.models.artifact import ScoringArtifact
from leadscore.models.point_rules import PointRulesClassifier, load_point_rules
from leadscore.models.settings import MlflowSettings
from leadscore.training.report import ManualResult, ReportInput, build_report, split_rule_text
from leadscore.training.split import Split, split_frame
from leadscore.training.train import fit_baselines, leads_per_week, make_encoder


def reapply_split(tf: TrainingFrame, recorded: dict[str, Any]) -> Split:
    """The training run's split rule on (possibly newer) data: time -> created at/after the cutoff; file_order ->
    the last rows; random -> same seed."""
    method = recorded.get("method")
    fraction = float(recorded.get("holdout_fraction") or 0.2)
    seed = int(recorded.get("seed") or 0)
    where = tf.source or "the data"
    if method == "time":
        if not tf.timed:
            raise DataError(f"{where}: the model was trained with a time split, but this data has no timestamp column")
        cutoff = pd.Timestamp(recorded["cutoff"])
        moments = pd.to_datetime(tf.frame[tf.mapping.created_at]).to_numpy()
        holdout = moments >= np.datetime64(cutoff, "ns")
        return Split(np.flatnonzero(~holdout), np.flatnonzero(holdout), "time", fraction, seed, str(cutoff))
    if method in ("random", "file_order"):
        if method == "file_order" and tf.split_rule != "file_order":
            raise DataError(f"{where}: the model was trained with a file-order split; the mapping must say so too")
        return split_frame(tf, fraction, seed)
    raise DataError(
        f"the model's metadata has an unknown split method {method!r} (expected 'time', 'file_order' or 'random')"
    )


def evaluate(
    settings: MlflowSettings,
    model_uri: str,
    data: Path,
    config: Path | None = None,
    out: Path = Path("report"),
    leads_per_rep_week: float | None = None,
    reps: int | None = None,
    rules: Path | None = None,
) -> dict[str, Any]:
    """Fetch the registered model and write the model-vs-manual report of its holdout on ``data`` to ``out``."""
    client = registry.configure(settings)
    artifact, name, version = packaging.fetch_artifact(client, model_uri, settings.home / "cache")
    return evaluate_artifact(
        artifact,
        data,
        config,
        out,
        leads_per_rep_week=leads_per_rep_week,
        reps=reps,
        rules=rules,
        model_label=f"{name} v{version}",
        model_uri=model_uri,
    )


def evaluate_artifact(
    artifact: ScoringArtifact,
    data: Path,
    config: Path | None,
    out: Path,
    *,
    leads_per_rep_week: float | None = None,
    reps: int | None = None,
    rules: Path | None = None,
    model_label: str = "model",
    model_uri: str | None = None,
) -> dict[str, Any]:
    """:func:`evaluate` once the artifact is in hand (tests call this without a registry)."""
    md = artifact.metadata
    if "split" not in md or "mapping" not in md:
        raise DataError(
            f"{model_uri or 'the model'}: its metadata lacks the split rule or mapping; retrain it with this leadscore"
        )
    rules_spec = load_point_rules(rules) if rules is not None else None  # a bad rules file fails before any work
    notes: list[str] = []
    trained_mapping = Mapping.model_validate(md["mapping"])
    mapping = load_mapping(config) if config is not None else trained_mapping
    if config is not None and mapping.feature_columns != trained_mapping.feature_columns:
        notes.append(
            f"Warning: the mapping {config} names other feature columns than the model was trained with; "
            "the model scores the columns it was trained on."
        )
    tf = load_training_frame(
        data,
        mapping,
        target=md.get("target") or "opportunity",
        horizon_days=md.get("horizon_days") or 90,
        observation_days=md.get("observation_days") if md.get("observation_days") is not None else 7,
        as_of=md.get("as_of"),
    )
    split = reapply_split(tf, md["split"])
    digest = tf.digest
    if md.get("data_digest") and digest != md["data_digest"]:
        if split.method == "time":
            notes.append(
                f"Data differs from the training data (sha256 {digest[:12]}… vs {str(md['data_digest'])[:12]}… at training). "
                f"The holdout is still safe: every lead created at or after the cutoff {split.cutoff}; the model "
                "trained only on leads created before it."
            )
        else:
            notes.append(
                f"Warning: data differs from the training data (sha256 {digest[:12]}… vs {str(md['data_digest'])[:12]}… "
                "at training) and the split is random: the re-drawn holdout may include leads the model trained on, "
                "which would flatter it. Evaluate on the training data, or train with timestamps."
            )
    train, holdout = tf.frame.iloc[split.train], tf.frame.iloc[split.holdout]
    y_train, y_holdout = train[LABEL].to_numpy(), holdout[LABEL].to_numpy()
    where = tf.source or str(data)
    if len(holdout) == 0:
        raise DataError(f"{where}: no lead falls in the holdout ({split.method} split {split.describe()})")
    for part, yy in (("training", y_train), ("holdout", y_holdout)):
        if len(np.unique(yy)) < 2:
            raise DataError(
                f"{where}: the {part} part has {int(yy.sum())} conversions among {len(yy)} leads; need both outcomes"
            )

    scored = artifact.score_frame(holdout)
    probability, fitted = fit_baselines(tf, make_encoder(tf), train, y_train, holdout)
    if rules_spec is not None:
        fitted[rules_spec.name] = PointRulesClassifier(
            rules_spec, tuple(mapping.missing_values), source=str(rules)
        ).fit(train, y_train)
        probability[f"manual:{rules_spec.name}"] = fitted[rules_spec.name].predict_proba(holdout)[:, 1]
    manual = {
        name: ManualResult(probability[f"manual:{name}"], np.asarray(clf.passed(holdout), dtype=bool))
        for name, clf in fitted.items()
    }
    baseline = probability["logistic_regression"]

    metadata = {
        **md,
        "title": "Lead scoring evaluation: model vs manual qualification",
        "mapping": mapping.model_dump(mode="json"),
        "segments": mapping.segments,
        "data_source": str(data),
    }
    inp = ReportInput(
        holdout=holdout,
        y=y_holdout,
        model_probability=scored["probability"].to_numpy(),
        model_score=scored["score"].to_numpy(),
        manual=manual,
        metadata=metadata,
        baselines={"logistic regression (refit on the training part)": baseline},
        leads_per_week=leads_per_week(tf, split),
        notes=notes,
        split_rule=split_rule_text(split.describe(), tf.mapping.created_at if tf.timed else None),
        model_label=model_label,
    )
    summary = build_report(inp, Path(out), leads_per_rep_week=leads_per_rep_week, reps=reps)
    summary["out"] = str(out)
    summary["model_uri"] = model_uri
    return summary
