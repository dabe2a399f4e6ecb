"""Training and batch scoring on Dask (``leadscore train|score --engine dask``), for histories past one machine.

Training: the point-in-time frame is built per partition of leads (:mod:`features.distributed`) and kept
in the workers' memory. The holdout is the newest period, cut at exactly the local engine's row
(:func:`training.split.split_frame`); within the training period the trees learn on the oldest rows and
the calibrator on the newest ``calibration_fraction``, cut at exactly :class:`models.lead_model.LeadScoringModel`'s
row. The encoder learns its category codes from counts over every tree row (so it equals the local
engine's), and ``lightgbm.dask`` trains the trees on the distributed matrix. What needs the rows in one
process works on a bounded, seeded uniform sample of at most ``sample_rows`` rows of each part, collected
to the client (all rows when a part is smaller): the calibrator (calibration rows), the logistic and
manual baselines (training rows), and the holdout metrics, score scale, routing cut-offs and report
(holdout rows). The artifact and its registration are the local engine's (:func:`training.train.register_fit`);
the run's metadata gives the full counts and windows and the sample sizes.

Batch scoring on Dask is :mod:`training.distributed_scoring`.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from dataclasses import replace
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from lightgbm.dask import DaskLGBMClassifier

from leadscore.features.build import LABEL, TrainingFrame, data_digest
from leadscore.features.distributed import (
    build_distributed_frame,
    connect,
    read_dask_tables,
)
from leadscore.features.encoder import FeatureEncoder
from leadscore.features.mapping import DataError, Mapping, load_mapping
from leadscore.models.artifact import ScoringArtifact
from leadscore.models.calibration import MarginCalibrator
from leadscore.models.lead_model import LeadScoringModel, _safe_name
from leadscore.models.routing import fit_routing, load_routing
from leadscore.models.settings import MlflowSettings
from leadscore.training.metrics import binary_metrics
from leadscore.training.split import Split
from leadscore.training.train import (
    FitResult,
    TrainOptions,
    TrainResult,
    _metadata,
    describe_fit,
    fit_baselines,
    importance_shares,
    make_encoder,
    register_fit,
)

SAMPLE_ROWS = 500_000  # rows of each part (calibration, training, holdout) collected to the client at most


def build_frame(options: TrainOptions, mapping: Mapping, partitions: int | None = None) -> TrainingFrame:
    """The distributed point-in-time frame of ``options.data`` (a Dask frame kept on the workers)."""
    tf = build_distributed_frame(
        read_dask_tables(options.data, mapping),
        mapping,
        target=options.target,
        horizon_days=options.horizon_days,
        observation_days=options.observation_days,
        as_of=options.as_of,
        partitions=partitions,
        source=str(options.data),
    )
    return replace(tf, digest=data_digest(options.data))


def order_statistic(values: dd.Series, k: int) -> pd.Timestamp:
    """The ``k``-th smallest (0-based) of a timestamp column, exactly: counts per day, then the one day's values."""
    days = values.dt.floor("D")
    counts = days.value_counts().compute().sort_index()
    cumulative = counts.cumsum().to_numpy()
    at = int(np.searchsorted(cumulative, k, side="right"))
    before = int(cumulative[at - 1]) if at else 0
    within = np.sort(values[days == counts.index[at]].compute().to_numpy())
    return pd.Timestamp(within[k - before])


def first_rows(frame: dd.DataFrame, created: str, id_column: str, k: int) -> dd.Series:
    """Whether each row is among the first ``k`` in (creation time, id) order: the local frame's row order."""
    if k <= 0:
        return frame[created].isna() & frame[created].notna()  # no row
    moment = order_statistic(frame[created], k - 1)
    earlier = int((frame[created] < moment).sum().compute())
    tied = frame.loc[frame[created] == moment, id_column].compute().sort_values(kind="stable")
    return (frame[created] < moment) | ((frame[created] == moment) & frame[id_column].isin(list(tied[: k - earlier])))


def _counts(frame: dd.DataFrame) -> np.ndarray:
    """(non-conversions, conversions) of a distributed frame."""
    labels = frame[LABEL].value_counts().compute()
    return np.array([int(labels.get(0, 0)), int(labels.get(1, 0))])


def check_conversions(tf: TrainingFrame, train: np.ndarray, holdout: np.ndarray, minimum: int) -> None:
    """:func:`training.train.check_conversions` on label counts: the same refusals with the same words."""
    where, total = tf.source or "the data", train + holdout
    if total.sum() == 0:
        raise DataError(f"{where}: no lead is eligible for training (all censored or excluded: {tf.excluded})")
    if total[1] == 0:
        raise DataError(f"{where}: no positive labels ({tf.target}); nothing to learn")
    if total[1] < minimum:
        raise DataError(
            f"{where}: only {total[1]} conversions ({tf.target}) among {total.sum()} eligible leads; at least "
            f"{minimum} are needed (--min-conversions) for a model worth trusting"
        )
    for part, counts in (("training", train), ("holdout", holdout)):
        if counts.min() == 0:
            raise DataError(
                f"{where}: the {part} period has {counts[1]} conversions and {counts[0]} non-conversions; need both"
            )


def sample(frame: dd.DataFrame, rows: int, size: int, seed: int, order: list[str]) -> pd.DataFrame:
    """All ``rows`` of ``frame`` when at most ``size``, else a seeded uniform sample of about ``size``; in ``order``."""
    part = frame if rows <= size else frame.sample(frac=size / rows, random_state=seed)
    return part.compute().sort_values(order, kind="stable").reset_index(drop=True)


def _encode(part: pd.DataFrame, encoder: FeatureEncoder, names: list[str]) -> pd.DataFrame:
    return pd.DataFrame(encoder.transform(part), columns=names, index=part.index)


def fit_distributed(tf: TrainingFrame, options: TrainOptions, sample_rows: int = SAMPLE_ROWS) -> FitResult:
    """:func:`training.train.fit` on a distributed frame (see the module docstring for what is sampled)."""
    frame, created, id_column = tf.frame, tf.mapping.created_at, tf.mapping.id
    order = [created, id_column]
    n = int(frame.shape[0].compute())
    if n == 0:
        raise DataError(f"{tf.source or 'the data'}: no lead is eligible for training (all excluded: {tf.excluded})")
    cutoff = order_statistic(frame[created], int(np.floor(n * (1 - options.holdout_fraction))))
    in_holdout = frame[created] >= cutoff
    train, holdout = frame[~in_holdout], frame[in_holdout]
    train_counts, holdout_counts = _counts(train), _counts(holdout)
    check_conversions(tf, train_counts, holdout_counts, options.min_conversions)
    routing_spec = load_routing(options.routing)

    model = LeadScoringModel(
        make_encoder(tf),
        n_estimators=options.n_estimators,
        learning_rate=options.learning_rate,
        num_leaves=options.num_leaves,
        calibration_folds=0,
        monotone=tf.monotone,
        random_state=options.seed,
        n_jobs=options.n_jobs,
    )
    n_train = int(train_counts.sum())
    cut = round(n_train * (1 - model.calibration_fraction))
    in_trees = first_rows(train, created, id_column, cut)
    trees, calibration = train[in_trees], train[~in_trees]
    for part, counts in (("training", _counts(trees)), ("calibration", _counts(calibration))):
        if counts.min() == 0:
            raise DataError(f"{tf.source or 'the data'}: the {part} part needs both converted and not converted leads")

    train_sample = sample(train, n_train, sample_rows, options.seed, order)
    categorical = tf.categorical
    counts = dask.compute(*[trees[c].value_counts(dropna=True) for c in categorical])
    encoder = make_encoder(tf).fit(train_sample, category_counts=dict(zip(categorical, counts, strict=True)))
    names = [_safe_name(c) for c in encoder.feature_names_out_]
    matrix = trees.map_partitions(
        _encode, encoder, names, meta=pd.DataFrame({c: pd.Series(dtype=float) for c in names})
    )
    params = model.lgb_params()
    if tf.monotone:
        params["monotone_constraints"] = [int(tf.monotone.get(c, 0)) for c in encoder.feature_names_out_]
    # lightgbm.dask prints its set-up notes on stdout (stderr keeps them off a --json answer) and warns that it
    # sets each worker's threads itself
    with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Parameter n_jobs will be ignored")
        booster = (
            DaskLGBMClassifier(n_estimators=options.n_estimators, **params)
            .fit(matrix, trees[LABEL], feature_name=names, categorical_feature=encoder.categorical_indices_)
            .booster_
        )
    model.encoder_, model.booster_ = encoder, booster
    model.classes_, model.n_features_in_ = np.array([0, 1]), encoder.n_features_in_
    n_calibration = n_train - cut
    calibration_sample = sample(calibration, n_calibration, sample_rows, options.seed, order)
    model.calibrator_ = MarginCalibrator(model.calibration).fit(
        booster.predict(encoder.transform(calibration_sample), raw_score=True), calibration_sample[LABEL].to_numpy()
    )

    n_holdout = int(holdout_counts.sum())
    holdout_sample = sample(holdout, n_holdout, sample_rows, options.seed, order)
    rows = pd.concat([train_sample, holdout_sample], ignore_index=True)
    sampled = replace(tf, frame=rows)
    split = Split(
        np.arange(len(train_sample)),
        np.arange(len(train_sample), len(rows)),
        "time",
        options.holdout_fraction,
        options.seed,
        str(cutoff),
    )
    y_train, y_holdout = train_sample[LABEL].to_numpy(), holdout_sample[LABEL].to_numpy()
    probability = {"model": model.predict_proba(holdout_sample)[:, 1]}
    baselines, manual = fit_baselines(sampled, make_encoder(tf), train_sample, y_train, holdout_sample)
    probability.update(baselines)
    metrics = {name: binary_metrics(y_holdout, p) for name, p in probability.items()}

    first, last = dask.compute(holdout[created].min(), holdout[created].max())
    weeks = (last - first) / pd.Timedelta(days=7)
    rate = float(n_holdout / weeks) if weeks > 0 else None
    train_first, train_last = dask.compute(train[created].min(), train[created].max())
    metadata = {
        **_metadata(sampled, split, options, metrics),
        "feature_importance": importance_shares(model, sampled),
        "training_window": {"start": str(train_first), "end": str(train_last)},
        "holdout_window": {"start": str(first), "end": str(last)},
        "n_train": n_train,
        "n_holdout": n_holdout,
        "engine": {
            "name": "dask",
            "sample_rows": sample_rows,
            "train_sample": len(train_sample),
            "calibration_sample": len(calibration_sample),
            "holdout_sample": len(holdout_sample),
            "leads_per_week": rate,
        },
    }
    artifact = ScoringArtifact(
        model=model,
        routing=fit_routing(routing_spec, probability["model"], rate),
        score_reference=np.quantile(probability["model"], np.linspace(0, 1, 101)),
        metadata=metadata,
    )
    return describe_fit(FitResult(artifact, metrics, sampled, split, probability, manual))


def train_distributed(
    options: TrainOptions,
    settings: MlflowSettings,
    extra_artifacts: Any = None,
    *,
    scheduler: str | None = None,
    sample_rows: int = SAMPLE_ROWS,
    partitions: int | None = None,
    cluster: dict[str, Any] | None = None,
) -> TrainResult:
    """``leadscore train --engine dask``: fit on the cluster at ``scheduler`` (else a local one), then log and
    register as the local engine does."""
    if sample_rows < 1:
        raise DataError(f"sample_rows must be >= 1, got {sample_rows}")
    mapping = load_mapping(options.config)
    with connect(scheduler, **(cluster or {})):
        result = fit_distributed(build_frame(options, mapping, partitions), options, sample_rows)
    params = {"engine": "dask", "sample_rows": sample_rows}
    return register_fit(result, options, settings, extra_artifacts, params=params)
