"""The train job: data by its mapping -> point-in-time frame -> time split -> model and baselines -> MLflow.

:func:`fit` is pure (no MLflow); :func:`train` logs and registers what it fitted. Every check on the
input runs before anything is logged, so bad input leaves no run and no model version behind.
"""

from __future__ import annotations

import subprocess
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from leadscore.features.build import LABEL, TrainingFrame, load_training_frame
from leadscore.features.encoder import FeatureEncoder
from leadscore.features.mapping import DataError, load_mapping
from leadscore.models import packaging, registry
from leadscore.models.artifact import ScoringArtifact
from leadscore.models.baselines import ManualProcessClassifier, logistic_baseline
from leadscore.models.contract import contract_of, fingerprint
from leadscore.models.drift import reference_of
from leadscore.models.lead_model import LeadScoringModel
from leadscore.models.routing import fit_routing, load_routing
from leadscore.models.selection import Selection, select_model
from leadscore.models.settings import MlflowSettings
from leadscore.training import tracking
from leadscore.training.honesty import frame_findings, run_findings
from leadscore.training.metrics import binary_metrics
from leadscore.training.progress import Stages
from leadscore.training.resources import training_resources
from leadscore.training.split import Split, split_frame

HOLDOUT_FILE = "holdout.parquet"
HOLDOUT_SCORES_FILE = "holdout_scores.parquet"  # each model's and baseline's holdout probability, row for row
CHALLENGER = "challenger"
IMPORTANCE_ROWS = 100_000  # rows a linear model's feature importance is averaged over


class TrainOptions(BaseModel):
    """What one training run is asked to do (the ``leadscore train`` options)."""

    model_config = ConfigDict(extra="forbid")

    data: Path
    config: Path | None = None
    target: str = "opportunity"
    horizon_days: int = Field(default=90, gt=0)
    observation_days: int = Field(default=7, ge=0)
    as_of: str | None = None
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)
    seed: int = 0
    min_conversions: int = Field(default=120, ge=1)
    routing: Path | None = None
    n_estimators: int = Field(default=150, gt=0)
    learning_rate: float = Field(default=0.05, gt=0)
    num_leaves: int = Field(default=15, gt=1)
    n_jobs: int | None = None
    select: bool = True  # choose among LightGBM, spline logistic and their blend by time-ordered CV


@dataclass
class FitResult:
    """What :func:`fit` produced: the artifact, holdout metrics of model and baselines, and the data behind them."""

    artifact: ScoringArtifact
    metrics: dict[str, dict[str, float]]
    frame: TrainingFrame
    split: Split
    holdout_probability: dict[str, np.ndarray]
    manual: dict[str, ManualProcessClassifier]
    selection: Selection | None = None
    # drift risks and time-like columns (:func:`training.honesty.frame_findings`); None: found from the model's encoder
    frame_findings: tuple[list[tuple[str, float]], list[str]] | None = None

    @property
    def holdout(self) -> pd.DataFrame:
        return self.frame.frame.iloc[self.split.holdout]


def check_conversions(tf: TrainingFrame, split: Split, minimum: int) -> None:
    """Refuse data with too few conversions to learn from or to judge a model on."""
    y = tf.frame[LABEL].to_numpy()
    where = tf.source or "the data"
    if len(y) == 0:
        raise DataError(f"{where}: no lead is eligible for training (all censored or excluded: {tf.excluded})")
    positives = int(y.sum())
    if positives == 0:
        raise DataError(f"{where}: no positive labels ({tf.target}); nothing to learn")
    if positives < minimum:
        raise DataError(
            f"{where}: only {positives} conversions ({tf.target}) among {len(y)} eligible leads; at least {minimum} "
            "are needed (--min-conversions) for a model worth trusting"
        )
    for part, idx in (("training", split.train), ("holdout", split.holdout)):
        counts = np.bincount(y[idx], minlength=2)
        if counts.min() == 0:
            raise DataError(
                f"{where}: the {part} period has {counts[1]} conversions and {counts[0]} non-conversions; need both"
            )


def make_encoder(tf: TrainingFrame) -> FeatureEncoder:
    """An unfitted encoder of the frame's feature columns, with the mapping's missing values and readable labels."""
    mapping = tf.mapping
    return FeatureEncoder(
        categorical=tf.categorical,
        numeric=tf.numeric,
        boolean=tf.boolean,
        missing_values=tuple(mapping.missing_values),
        labels=mapping.labels,
    )


def leads_per_week(tf: TrainingFrame, split: Split) -> float | None:
    """The recent lead rate: holdout leads per week of the holdout period (timed data only)."""
    if not tf.timed:
        return None
    moments = pd.to_datetime(tf.frame[tf.mapping.created_at].iloc[split.holdout])
    weeks = (moments.max() - moments.min()) / pd.Timedelta(days=7)
    return float(len(moments) / weeks) if weeks > 0 else None


def fit_logistic(
    encoder: FeatureEncoder, train: pd.DataFrame, y_train: np.ndarray, holdout: pd.DataFrame
) -> np.ndarray:
    """Holdout probabilities of the logistic baseline fitted on ``train``."""
    return logistic_baseline(encoder).fit(train, y_train).predict_proba(holdout)[:, 1]


def fit_manual(
    tf: TrainingFrame, train: pd.DataFrame, y_train: np.ndarray, holdout: pd.DataFrame
) -> tuple[dict[str, np.ndarray], dict[str, ManualProcessClassifier]]:
    """Holdout probabilities of each manual process (keyed ``manual:<name>``), fitted on ``train``."""
    probability, manual = {}, {}
    for process in tf.mapping.manual:
        clf = ManualProcessClassifier(process, tuple(tf.mapping.missing_values)).fit(train, y_train)
        manual[process.name] = clf
        probability[f"manual:{process.name}"] = clf.predict_proba(holdout)[:, 1]
    return probability, manual


def fit_baselines(
    tf: TrainingFrame, encoder: FeatureEncoder, train: pd.DataFrame, y_train: np.ndarray, holdout: pd.DataFrame
) -> tuple[dict[str, np.ndarray], dict[str, ManualProcessClassifier]]:
    """Holdout probabilities of the logistic baseline and of each manual process, fitted on ``train``."""
    probability, manual = fit_manual(tf, train, y_train, holdout)
    return {"logistic_regression": fit_logistic(encoder, train, y_train, holdout), **probability}, manual


def measure_baselines(
    tf: TrainingFrame,
    train: pd.DataFrame,
    y_train: np.ndarray,
    holdout: pd.DataFrame,
    y_holdout: np.ndarray,
    logistic: Future[np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, float]], dict[str, ManualProcessClassifier]]:
    """The holdout probabilities and metrics of the logistic baseline (``logistic``'s result) and of each
    manual process (fitted here on ``train``), and the fitted manual processes."""
    probability, manual = fit_manual(tf, train, y_train, holdout)
    probability = {"logistic_regression": logistic.result(), **probability}
    return probability, {name: binary_metrics(y_holdout, p) for name, p in probability.items()}, manual


def fit(tf: TrainingFrame, options: TrainOptions) -> FitResult:
    """Fit model and baselines on the training period; measure all on the holdout."""
    split = split_frame(tf, options.holdout_fraction, options.seed)
    check_conversions(tf, split, options.min_conversions)
    routing_spec = load_routing(options.routing)
    train, holdout = tf.frame.iloc[split.train], tf.frame.iloc[split.holdout]
    y_train, y_holdout = train[LABEL].to_numpy(), holdout[LABEL].to_numpy()
    encoder = make_encoder(tf)
    model = LeadScoringModel(
        encoder,
        n_estimators=options.n_estimators,
        learning_rate=options.learning_rate,
        num_leaves=options.num_leaves,
        calibration_folds=0 if tf.timed else 5,
        monotone=tf.monotone,
        random_state=options.seed,
        n_jobs=options.n_jobs,
    )
    # The work that does not need the model runs in order on a thread of its own, each piece asked for when
    # the model's steps leave a core idle, so that it keeps clear of the final fit's LightGBM (which takes
    # every core): the logistic baseline (the longest) beside model selection, whose folds leave part of
    # the cores idle; the findings read from the data alone once selection is over (beside the final fit's
    # encoding and linear fit); the manual baselines and the baselines' holdout metrics once the model is
    # fitted (beside its holdout predictions). Without selection the baseline and the findings run beside
    # the final fit.
    selection = None
    with ThreadPoolExecutor(max_workers=1) as pool:
        logistic = pool.submit(fit_logistic, encoder, train, y_train, holdout)
        try:
            if options.select:
                model, selection = select_model(train, y_train, encoder, model, timed=tf.timed, seed=options.seed)
            found = pool.submit(frame_findings, tf, split, encoder, train)
            model.fit(train, y_train)
        except ValueError as exc:
            raise DataError(f"{tf.source or 'the data'}: {exc}") from None
        baselines = pool.submit(measure_baselines, tf, train, y_train, holdout, y_holdout, logistic)
        probability = {"model": model.predict_proba(holdout)[:, 1]}
        metrics = {"model": binary_metrics(y_holdout, probability["model"])}
        baseline_probability, baseline_metrics, manual = baselines.result()
    probability.update(baseline_probability)
    metrics.update(baseline_metrics)

    rate = leads_per_week(tf, split)
    artifact = ScoringArtifact(
        model=model,
        routing=fit_routing(routing_spec, probability["model"], rate),
        score_reference=np.quantile(probability["model"], np.linspace(0, 1, 101)),
        metadata={**_metadata(tf, split, options, metrics), "feature_importance": importance_shares(model, tf)},
    )
    return describe_fit(FitResult(artifact, metrics, tf, split, probability, manual, selection, found.result()))


def importance_shares(model: Any, tf: TrainingFrame) -> dict[str, float]:
    """Each input feature's share of the model's importance (what ``score`` weighs missing features by).

    Trees (LightGBM, and a blend's trees): each feature's share of the total split gain. The spline
    logistic model: each feature's share of the mean absolute contribution of its terms to the margin,
    over the frame's rows (at most ``IMPORTANCE_ROWS`` of them, a seeded uniform sample).
    """
    names = [str(n) for n in model.encoder_.get_feature_names_out()]
    if hasattr(model, "booster_"):
        weight = np.asarray(model.booster_.feature_importance("gain"), dtype=float)
    else:
        frame = tf.frame[tf.feature_columns]
        if len(frame) > IMPORTANCE_ROWS:
            frame = frame.iloc[np.sort(np.random.default_rng(0).choice(len(frame), IMPORTANCE_ROWS, replace=False))]
        matrix = model.encoder_.transform(frame)
        weight = np.abs(model.terms_.contributions(matrix)).mean(axis=0)
    total = weight.sum()
    shares = {name: float(g / total) if total > 0 else 1 / len(names) for name, g in zip(names, weight, strict=True)}
    return {column: shares.get(column, 0.0) for column in tf.feature_columns}


def describe_fit(result: FitResult) -> FitResult:
    """Record in the artifact's metadata its input contract, the kind of model chosen, the selection,
    the run's findings (what ``train`` prints and promotion checks) and the holdout's drift reference
    (what the loop report measures drift against); both engines call it."""
    metadata, selection = result.artifact.metadata, result.selection
    metadata["contract"] = contract_of(metadata, result.artifact.model.encoder_.columns_)
    metadata["contract_fingerprint"] = fingerprint(metadata["contract"])
    metadata["model_kind"] = selection.winner if selection is not None else "lightgbm"
    metadata["selection"] = selection.summary() if selection is not None else None
    metadata["findings"] = run_findings(result, result.frame_findings)
    tf = result.frame
    metadata["drift_reference"] = reference_of(
        result.holdout, result.holdout_probability["model"], tf.numeric, tf.categorical, tf.boolean
    )
    return result


def _metadata(tf: TrainingFrame, split: Split, options: TrainOptions, metrics: dict[str, Any]) -> dict[str, Any]:
    created = tf.mapping.created_at

    def window(idx: np.ndarray) -> dict[str, str] | None:
        if not tf.timed:
            return None
        moments = pd.to_datetime(tf.frame[created].iloc[idx])
        return {"start": str(moments.min()), "end": str(moments.max())}

    return {
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "form": tf.mapping.form,
        "mapping": tf.mapping.model_dump(mode="json"),
        "target": tf.target,
        "horizon_days": tf.horizon_days,
        "observation_days": tf.observation_days,
        "as_of": str(tf.as_of) if tf.as_of is not None else None,
        "split": split.describe(),
        "training_window": window(split.train),
        "holdout_window": window(split.holdout),
        "n_train": len(split.train),
        "n_holdout": len(split.holdout),
        "excluded": tf.excluded,
        "split_rule": tf.split_rule or split.method,
        "unused_columns": tf.unused,
        "notes": [*tf.warnings, *tf.notes],
        "data_source": tf.source,
        "data_digest": tf.digest,
        "feature_columns": tf.feature_columns,
        "manual_processes": [m.model_dump() for m in tf.mapping.manual],
        "segments": tf.mapping.segments,
        "metrics": metrics,
        "leadscore_version": package_version("leadscore"),
        "git_commit": git_commit(),
    }


def git_commit() -> str | None:
    """The commit of the leadscore source, when it runs from a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_name: str
    version: str
    metrics: dict[str, dict[str, float]]
    fit: FitResult
    experiment_url: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "model_name": self.model_name,
            "version": self.version,
            "alias": CHALLENGER,
            "experiment_url": self.experiment_url,
            "model_kind": self.fit.artifact.metadata.get("model_kind"),
            "selection": self.fit.artifact.metadata.get("selection"),
            "findings": self.fit.artifact.metadata.get("findings", []),
            "metrics": self.metrics,
            "notes": self.fit.frame.notes,
            "warnings": self.fit.frame.warnings,
            "unused_columns": self.fit.frame.unused,
            "timings": self.timings,
        }


def flat_metrics(metrics: dict[str, dict[str, float]]) -> dict[str, float]:
    """``{"model": {"roc_auc": ...}}`` -> ``{"model.roc_auc": ...}`` with MLflow-safe names."""

    def safe(text: str) -> str:
        return "".join(ch if ch.isalnum() or ch in "_-./ " else "_" for ch in text)

    return {f"{safe(name)}.{key}": value for name, values in metrics.items() for key, value in values.items()}


def train(
    options: TrainOptions, settings: MlflowSettings, extra_artifacts: Any = None, stages: Stages | None = None
) -> TrainResult:
    """Fit, then log the run, register a version and give it the ``challenger`` alias.

    ``extra_artifacts(result, folder)`` may write more files (e.g. the evaluation report) to log with the run.
    ``stages`` times (and may show) each step; its timings end in the result's summary.
    """
    stages = stages or Stages()
    with training_resources(), stages.stage("reading the data and building the frame"):
        mapping = load_mapping(options.config)
        tf = load_training_frame(
            options.data,
            mapping,
            target=options.target,
            horizon_days=options.horizon_days,
            observation_days=options.observation_days,
            as_of=options.as_of,
        )
    with training_resources(), stages.stage("fitting the model and its baselines"):
        result = fit(tf, options)
    with stages.stage("logging the run and registering the model"):
        return register_fit(result, options, settings, extra_artifacts, stages=stages)


def register_fit(
    result: FitResult,
    options: TrainOptions,
    settings: MlflowSettings,
    extra_artifacts: Any = None,
    params: dict[str, Any] | None = None,
    stages: Stages | None = None,
) -> TrainResult:
    """Log a fit as a run (``params`` added to the options), register a version and alias it ``challenger``."""
    stages = stages or Stages()
    tf = result.frame
    client = registry.configure(settings)
    metadata = result.artifact.metadata
    experiment = registry.experiment_id(
        client,
        settings.experiment or tracking.experiment_name(options.config, options.data, metadata),
        settings,
        tracking.experiment_tags(metadata),
    )
    columns = tf.feature_columns
    with mlflow.start_run(experiment_id=experiment, run_name=tracking.run_name(options.data, metadata)) as run:
        mlflow.log_params(
            {
                **options.model_dump(mode="json", exclude={"data", "config", "routing"}),
                "config": str(options.config or "default CRM mapping"),
                "split": result.split.method,
                "features": len(columns),
                "model_kind": result.artifact.metadata["model_kind"],
                "unused_columns": _param_list(tf.unused),
                **{f"lgb.{k}": v for k, v in _lgb_params(result.artifact.model).items()},
                **(params or {}),
            }
        )
        if result.selection is not None:
            mlflow.log_metrics(
                {f"cv.{name}.mean_auc": c["mean_auc"] for name, c in result.selection.candidates.items()}
            )
            mlflow.log_dict(_jsonable(result.selection.summary()), "selection.json")
        mlflow.log_metrics(flat_metrics(result.metrics))
        mlflow.set_tags(
            {
                "leadscore.data_digest": result.artifact.metadata["data_digest"],
                "leadscore.target": tf.target,
                "mlflow.source.git.commit": result.artifact.metadata["git_commit"] or "unknown",
                "leadscore.version": result.artifact.metadata["leadscore_version"],
                "leadscore.contract": result.artifact.metadata["contract_fingerprint"],
            }
        )
        holdout = result.holdout[[*columns, LABEL]]
        dataset = mlflow.data.from_pandas(
            tf.frame[[*columns, LABEL]],
            source=str(Path(options.data).resolve()),
            name=Path(options.data).name,
            targets=LABEL,
            digest=result.artifact.metadata["data_digest"][:16],
        )
        mlflow.log_input(dataset, context="training")
        mlflow.log_dict(_jsonable(result.artifact.metadata), "metadata.json")
        mlflow.log_dict(result.artifact.routing.model_dump(), "routing.json")
        with tempfile.TemporaryDirectory() as tmp:
            holdout.to_parquet(Path(tmp) / HOLDOUT_FILE)
            mlflow.log_artifact(str(Path(tmp) / HOLDOUT_FILE))
            pd.DataFrame(result.holdout_probability).to_parquet(Path(tmp) / HOLDOUT_SCORES_FILE)
            mlflow.log_artifact(str(Path(tmp) / HOLDOUT_SCORES_FILE))
            if extra_artifacts is not None:
                extra = Path(tmp) / "report"
                with stages.stage("writing the report"):
                    extra_artifacts(result, extra)
                mlflow.log_artifacts(str(extra), artifact_path="report")
        version = packaging.register_model(
            client,
            result.artifact,
            tf.frame[columns].head(5),
            settings.model_name,
            run.info.run_id,
            tracking.version_tags(options.data, metadata),
            tracking.version_description(options.data, metadata),
        )
        try:
            registry.move_alias(
                client, settings, settings.model_name, CHALLENGER, version, reason=f"trained in run {run.info.run_id}"
            )
        except Exception:
            client.delete_model_version(settings.model_name, version)
            raise
    return TrainResult(
        run.info.run_id,
        settings.model_name,
        version,
        result.metrics,
        result,
        tracking.experiment_url(settings.resolved_tracking_uri, experiment),
        stages.timings,
    )


def _lgb_params(model: Any) -> dict[str, Any]:
    """The LightGBM settings of a model with trees (none for the spline logistic model)."""
    return model.lgb_params() if hasattr(model, "lgb_params") else {}


def _param_list(values: list[str], limit: int = 6000) -> str:
    """A list as one MLflow parameter value (at most ``limit`` characters, the rest counted)."""
    text = ", ".join(values) or "-"
    if len(text) <= limit:
        return text
    cut = text[: limit - 40].rsplit(", ", 1)[0]
    return f"{cut}, ... ({len(values) - cut.count(', ') - 1} more)"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value
