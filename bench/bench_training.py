"""Training and batch-scoring speed, measured side by side in one run.

    .venv/bin/python bench/bench_training.py [--sizes 100000 1000000] [--repeats 3]

For each size: our whole training job (read files, point-in-time features, encoding, model selection
by time-ordered cross-validation on a sample of at most ``SELECTION_ROWS`` training rows, the winner
fitted on the whole training period with calibration, the logistic and manual baselines, the run's
findings) against plain ``lightgbm.train`` with the default parameters (150 rounds) on the already-built
matrix; the goal at 1M leads is at most 3x; and ``leadscore score`` on a CRM folder (read, engagement as
of now, encoding, prediction, routing, writing) against plain ``Booster.predict`` on the built matrix,
and, beside it, the compiled trees' margins (the prediction ``leadscore score`` makes) on the same matrix.
Training times are medians of ``--repeats`` runs per side, after one small warm-up job (so neither
side pays one-time lazy imports). Prints seconds and ratios; the machine is noisy, so compare ratios
within one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightgbm as lgb

from leadscore.features.build import LABEL, load_training_frame
from leadscore.features.mapping import default_crm_mapping
from leadscore.models.compiled_trees import CompiledTrees
from leadscore.models.lead_model import LeadScoringModel
from leadscore.models.threads import lightgbm_threads
from leadscore.training.resources import training_resources
from leadscore.training.split import split_frame
from leadscore.training.synthetic import generate_crm, write_crm
from leadscore.training.train import TrainOptions, fit, make_encoder


def timed(func, *args, **kwargs):
    began = time.perf_counter()
    out = func(*args, **kwargs)
    return out, time.perf_counter() - began


def median_time(repeats: int, func):
    """The last result and the median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        out, seconds = timed(func)
        times.append(seconds)
    return out, statistics.median(times)


def warm_up(root: Path) -> None:
    """A small job and a plain train first, so neither side's timing pays one-time lazy imports and set-up."""
    data = root / "crm-warm-up"
    write_crm(generate_crm(20_000, seed=2), data)
    result = fit(load_training_frame(data, default_crm_mapping()), TrainOptions(data=data))
    model = result.artifact.model
    matrix = model.encoder_.transform(result.holdout)
    lgb.train({**model.lgb_params(), "num_threads": 1}, lgb.Dataset(matrix, label=result.holdout[LABEL].to_numpy()), 5)


def bench(n: int, root: Path, repeats: int) -> dict[str, float]:
    data = root / f"crm-{n}"
    write_crm(generate_crm(n, seed=1), data)
    mapping = default_crm_mapping()
    options = TrainOptions(data=data)

    def whole_job():  # as `leadscore train` runs it
        with training_resources():
            return fit(load_training_frame(data, mapping), options)

    result, ours = median_time(repeats, whole_job)
    tf = result.frame
    split = split_frame(tf, options.holdout_fraction, options.seed)
    train_rows = tf.frame.iloc[split.train]
    encoder = make_encoder(tf).fit(train_rows)
    matrix, y = encoder.transform(train_rows), train_rows[LABEL].to_numpy()
    # the reference: plain LightGBM with the default settings, as training fitted before model selection
    model = LeadScoringModel(
        n_estimators=options.n_estimators,
        learning_rate=options.learning_rate,
        num_leaves=options.num_leaves,
        random_state=options.seed,
    )
    params = {**model.lgb_params(), "num_threads": lightgbm_threads(len(y))}

    def plain_train():
        dataset = lgb.Dataset(matrix, label=y, categorical_feature=encoder.categorical_indices_)
        return lgb.train(params, dataset, num_boost_round=model.n_estimators)

    booster, plain = median_time(repeats, plain_train)
    chosen = result.artifact.metadata.get("model_kind")
    print(
        f"training {n:,} leads: our job (model selection chose {chosen}) {ours:.1f}s, plain lightgbm.train {plain:.1f}s, ratio {ours / plain:.1f}x",
        flush=True,
    )

    # Batch scoring: the CLI on the CRM folder vs Booster.predict on the built matrix of every lead.
    home = root / f"home-{n}"
    env = {**os.environ, "LEADSCORE_HOME": str(home)}
    env.pop("LEADSCORE_TRACKING_URI", None)
    cli = str(Path(sys.executable).parent / "leadscore")
    subprocess.run([cli, "train", "--data", str(data), "--no-report"], env=env, check=True, capture_output=True)
    subprocess.run([cli, "promote"], env=env, check=True, capture_output=True)
    out = root / f"scores-{n}.parquet"
    began = time.perf_counter()
    subprocess.run(
        [cli, "score", "--input", str(data), "--output", str(out), "--model-uri", "models:/lead-scoring@champion"],
        env=env,
        check=True,
        capture_output=True,
    )
    score_cli = time.perf_counter() - began
    everyone = encoder.transform(tf.frame)
    margin, predict = timed(booster.predict, everyone, raw_score=True, num_threads=lightgbm_threads(len(everyone)))
    compiled = CompiledTrees.from_booster(booster)
    compiled.margin(everyone[:1])  # bind the kernel outside the timing, as a loaded model has
    walked, walk = timed(compiled.margin, everyone)
    if not (walked == margin).all():
        raise AssertionError("the compiled trees' margins differ from Booster.predict's")
    scored_rows = n
    return {
        "leads": n,
        "train_rows": len(y),
        "ours_train_s": ours,
        "plain_train_s": plain,
        "score_rows": scored_rows,
        "ours_score_s": score_cli,
        "plain_predict_s": predict * scored_rows / len(everyone),
        "walk_s": walk * scored_rows / len(everyone),
        "walk": "C" if compiled.native else "LightGBM",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3, help="training runs per side and size; the median is shown")
    args = parser.parse_args()
    print(
        f"{'leads':>10} {'train rows':>11} {'our job s':>10} {'lgb.train s':>12} {'ratio':>6} | "
        f"{'score s':>8} {'predict s':>10} {'ratio':>6} {'rows/s ours':>12} {'rows/s plain':>13} | {'walk s':>7}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        warm_up(Path(tmp))
        for n in args.sizes:
            r = bench(n, Path(tmp), args.repeats)
            print(
                f"{r['leads']:>10,} {r['train_rows']:>11,} {r['ours_train_s']:>10.1f} {r['plain_train_s']:>12.1f} "
                f"{r['ours_train_s'] / r['plain_train_s']:>6.2f} | {r['ours_score_s']:>8.1f} {r['plain_predict_s']:>10.1f} "
                f"{r['ours_score_s'] / r['plain_predict_s']:>6.2f} {r['score_rows'] / r['ours_score_s']:>12,.0f} "
                f"{r['score_rows'] / r['plain_predict_s']:>13,.0f} | {r['walk_s']:>7.1f} ({r['walk']})",
                flush=True,
            )
    print(
        f"training: median of {args.repeats} runs per side, after one small warm-up job; "
        "our job = read + point-in-time features + encode + model selection + the winner with calibration + "
        "logistic and manual baselines + findings (no MLflow logging); score = `leadscore score` end to end incl. process start, registry fetch and file I/O; "
        "plain = the same LightGBM parameters on the already-built matrix; walk = the compiled trees' margins "
        "(what `leadscore score` predicts with) on that matrix, checked equal to Booster.predict's."
    )


if __name__ == "__main__":
    main()
