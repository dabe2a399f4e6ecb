"""The Dask engine on a real local cluster of 2 worker processes: the local engine's features, model quality,
scores and registry entries, and no half-written output when a job fails on a worker."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.features.build import build_crm_frame, load_training_frame, read_crm_tables
from leadscore.features.distributed import build_distributed_frame, read_dask_tables
from leadscore.features.mapping import DataError, Mapping, default_crm_mapping
from leadscore.features.parts import aligned_parts
from leadscore.models.settings import get_mlflow_settings
from leadscore.training.batch import load_leads, score_leads
from leadscore.training.distributed import build_frame, fit_distributed
from leadscore.training.distributed_scoring import score_distributed
from leadscore.training.synthetic import write_crm_parts
from leadscore.training.train import FitResult, TrainOptions, fit

pytestmark = pytest.mark.slow
MAPPING = default_crm_mapping()


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """2 worker processes of one thread each on 127.0.0.1, for the whole session."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as local:
        yield local


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster, timeout="60s") as connected:
        yield connected


@pytest.fixture(scope="session")
def crm_parts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20k synthetic leads in parts of 5k (the layout `leadscore generate` writes at scale)."""
    out = tmp_path_factory.mktemp("crm-parts")
    write_crm_parts(20_000, out, seed=5, chunk_leads=5_000)
    return out


def by_id(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values("lead_id").reset_index(drop=True)


@pytest.mark.parametrize("target", ["opportunity", "closed_won"])
def test_the_distributed_frame_is_the_local_frame_exactly(client: Client, crm_parts: Path, target: str) -> None:
    local = build_crm_frame(read_crm_tables(crm_parts, MAPPING), MAPPING, target=target)
    tf = build_distributed_frame(read_dask_tables(crm_parts, MAPPING), MAPPING, target=target, partitions=5)
    assert tf.frame.npartitions == 5
    pd.testing.assert_frame_equal(by_id(tf.frame.compute()), by_id(local.frame))
    assert tf.excluded == local.excluded and tf.as_of == local.as_of
    assert (tf.categorical, tf.numeric, tf.monotone) == (local.categorical, local.numeric, local.monotone)


def test_every_partition_holds_whole_leads(client: Client, crm_parts: Path) -> None:
    tables = read_dask_tables(crm_parts, MAPPING)
    tf = build_distributed_frame(tables, MAPPING, partitions=3)
    ids = [set(part["lead_id"]) for part in (tf.frame.get_partition(i).compute() for i in range(3))]
    assert all(ids) and not (ids[0] & ids[1]) and not (ids[1] & ids[2]) and not (ids[0] & ids[2])


@pytest.fixture(scope="module")
def both_engines(cluster: LocalCluster, crm_parts: Path) -> tuple[FitResult, FitResult]:
    options = TrainOptions(data=crm_parts, n_estimators=60, min_conversions=40)
    local = fit(load_training_frame(crm_parts, MAPPING), options)
    with Client(cluster, timeout="60s"):
        distributed = fit_distributed(build_frame(options, MAPPING, partitions=4), options)
    return local, distributed


def test_the_dask_model_is_as_good_as_the_local_one_on_the_same_holdout(
    both_engines: tuple[FitResult, FitResult],
) -> None:
    local, distributed = both_engines
    assert distributed.split.cutoff == local.split.cutoff
    pd.testing.assert_frame_equal(by_id(distributed.holdout), by_id(local.holdout))
    assert abs(distributed.metrics["model"]["roc_auc"] - local.metrics["model"]["roc_auc"]) <= 0.005
    assert distributed.metrics["model"]["roc_auc"] > distributed.metrics["manual:BANT"]["roc_auc"]


def test_the_dask_model_encodes_and_samples_as_documented(both_engines: tuple[FitResult, FitResult]) -> None:
    local, distributed = both_engines
    assert distributed.artifact.model.encoder_.categories_ == local.artifact.model.encoder_.categories_
    meta, local_meta = distributed.artifact.metadata, local.artifact.metadata
    assert (meta["n_train"], meta["n_holdout"]) == (local_meta["n_train"], local_meta["n_holdout"])
    assert meta["training_window"] == local_meta["training_window"]
    assert meta["engine"]["holdout_sample"] == local_meta["n_holdout"]  # below sample_rows: every row
    assert set(local_meta) <= set(meta)


def test_a_bounded_sample_is_collected_when_the_data_is_larger(cluster: LocalCluster, crm_parts: Path) -> None:
    options = TrainOptions(data=crm_parts, n_estimators=20, min_conversions=40)
    with Client(cluster, timeout="60s"):
        result = fit_distributed(build_frame(options, MAPPING, partitions=2), options, sample_rows=1_000)
    engine = result.artifact.metadata["engine"]
    assert all(500 < engine[k] < 1_500 for k in ("train_sample", "calibration_sample", "holdout_sample"))
    assert len(result.holdout) == engine["holdout_sample"] < result.artifact.metadata["n_holdout"]
    assert 0.7 < result.metrics["model"]["roc_auc"] < 1


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.stderr)
    return result.stdout


def test_cli_dask_engine_registers_like_local_and_scores_equal_local(
    home: Path, cluster: LocalCluster, crm_parts: Path, tmp_path: Path
) -> None:
    address = cluster.scheduler_address
    common = ("train", "--data", str(crm_parts), "--min-conversions", "40", "--no-report", "--json")
    local = json.loads(invoke(*common))
    dask = json.loads(invoke(*common, "--engine", "dask", "--scheduler", address))
    assert (local["version"], dask["version"]) == ("1", "2") and dask["alias"] == "challenger"
    # Not the same model: the local engine chooses among candidates (and may blend), the Dask engine trains
    # LightGBM alone, on partitions the workers take as the cluster runs them. Both learn the same signal.
    assert abs(dask["metrics"]["model"]["roc_auc"] - local["metrics"]["model"]["roc_auc"]) <= 0.01

    client = MlflowClient(get_mlflow_settings().resolved_tracking_uri)
    runs = [client.get_run(r["run_id"]) for r in (local, dask)]
    artifacts = [sorted(a.path for a in client.list_artifacts(r["run_id"])) for r in (local, dask)]
    # The Dask engine trains LightGBM alone: no candidate selection, so no selection.json.
    assert [a for a in artifacts[0] if a != "selection.json"] == artifacts[1]
    assert dask["model_kind"] == "lightgbm"
    assert set(runs[0].data.params) | {"engine", "sample_rows"} == set(runs[1].data.params)
    local_metrics = {m for m in runs[0].data.metrics if not m.startswith("cv.")}  # the selection's CV figures
    assert set(runs[0].data.tags) <= set(runs[1].data.tags) and local_metrics == set(runs[1].data.metrics)

    uri = "models:/lead-scoring/2"
    invoke("score", "--input", str(crm_parts), "--output", str(tmp_path / "local.parquet"), "--model-uri", uri)
    out = invoke(
        "score", "--input", str(crm_parts), "--output", str(tmp_path / "scores"), "--model-uri", uri,
        "--engine", "dask", "--scheduler", address,
    )  # fmt: skip
    assert "scored 20,000 leads" in out
    parts = sorted((tmp_path / "scores").glob("*.parquet"))
    assert len(parts) > 1
    pd.testing.assert_frame_equal(
        by_id(pd.concat([pd.read_parquet(p) for p in parts])), by_id(pd.read_parquet(tmp_path / "local.parquet"))
    )

    thin = tmp_path / "thin.parquet"  # lead rows without their activities: no engagement features
    pd.read_parquet(crm_parts / "leads").to_parquet(thin, index=False)
    args = ["score", "--input", str(thin), "--output", str(tmp_path / "thin"), "--model-uri", uri, "--engine", "dask"]
    refused = CliRunner().invoke(app, [*args, "--scheduler", address])
    assert (
        refused.exit_code == 2 and "features missing" in refused.stderr and "--allow-missing-features" in refused.stderr
    )
    assert not (tmp_path / "thin").exists()
    allowed = CliRunner().invoke(app, [*args, "--scheduler", address, "--allow-missing-features"])
    assert allowed.exit_code == 0 and allowed.stderr.startswith("warning: ") and (tmp_path / "thin").is_dir()


def test_scores_equal_the_local_engines_for_a_single_file_folder(
    cluster: LocalCluster, crm_folder: Path, fitted: FitResult, tmp_path: Path
) -> None:
    scorer = fitted.artifact.scorer()
    expected = score_leads(load_leads(crm_folder, MAPPING, None), scorer, MAPPING, "m", "3")
    done = score_distributed(
        crm_folder, tmp_path / "out", scorer, MAPPING, "m", "3", scheduler=cluster.scheduler_address
    )
    got = pd.read_parquet(tmp_path / "out")
    assert done["rows"] == len(expected) and done["tiers"] == expected["tier"].value_counts().sort_index().to_dict()
    pd.testing.assert_frame_equal(by_id(got), by_id(expected))

    flat = tmp_path / "leads.parquet"  # a flat file of lead rows is scored as it is
    load_leads(crm_folder, MAPPING, None).to_parquet(flat, index=False)
    score_distributed(flat, tmp_path / "flat", scorer, MAPPING, "m", "3", scheduler=cluster.scheduler_address)
    pd.testing.assert_frame_equal(by_id(pd.read_parquet(tmp_path / "flat")), by_id(expected))


def test_an_infinite_number_in_a_later_part_names_the_part_and_its_row(
    cluster: LocalCluster, crm_folder: Path, fitted: FitResult, tmp_path: Path
) -> None:
    """A flat Parquet folder is scored part by part: the error names the part and the row within it."""
    leads = load_leads(crm_folder, MAPPING, None).head(200).reset_index(drop=True)
    folder = tmp_path / "flat"
    folder.mkdir()
    leads.iloc[:100].to_parquet(folder / "a.parquet", index=False)
    second = leads.iloc[100:].reset_index(drop=True)
    second.loc[2, "employees"] = np.inf
    second.to_parquet(folder / "b.parquet", index=False)
    flat = Mapping(form="flat", label={"column": "converted"}, numeric=["employees"])
    with pytest.raises(DataError, match=r"part 2 of 2.*column 'employees' row 3: value 'inf'"):
        score_distributed(
            folder, tmp_path / "out", fitted.artifact.scorer(), flat, "m", "3", scheduler=cluster.scheduler_address
        )
    assert not (tmp_path / "out").exists()


def copy_parts(source: Path, target: Path) -> Path:
    for table in ("leads", "activities", "outcomes"):
        (target / table).mkdir(parents=True)
        for part in (source / table).glob("*.parquet"):
            (target / table / part.name).write_bytes(part.read_bytes())
    return target


def test_parts_that_hold_whole_leads_are_scored_as_they_are_and_others_after_a_shuffle(
    cluster: LocalCluster, crm_parts: Path, fitted: FitResult, tmp_path: Path
) -> None:
    """`generate`'s parts hold whole leads and are paired as they are; one activity moved to another part (or a
    lead id inside another part's range) makes the pairing unprovable, and the shuffle gives the same scores."""
    pairs = aligned_parts(crm_parts, MAPPING)
    assert pairs is not None and [(a.name, b.name) for a, b in pairs] == [
        (f"part-0000{i}.parquet",) * 2 for i in range(4)
    ]
    moved = copy_parts(crm_parts, tmp_path / "moved")
    first, second = (moved / "activities" / f"part-0000{i}.parquet" for i in (0, 1))
    activities = pd.read_parquet(first)
    pd.concat([pd.read_parquet(second), activities.iloc[[0]]]).to_parquet(second, index=False)
    activities.iloc[1:].to_parquet(first, index=False)
    overlapping = copy_parts(crm_parts, tmp_path / "overlapping")
    leads = pd.read_parquet(overlapping / "leads" / "part-00003.parquet")
    leads.loc[0, "lead_id"] = "L00000000"  # before part 0's first id: the ranges overlap
    leads.to_parquet(overlapping / "leads" / "part-00003.parquet", index=False)
    assert aligned_parts(moved, MAPPING) is None and aligned_parts(overlapping, MAPPING) is None

    scorer = fitted.artifact.scorer()
    for data in (crm_parts, moved, overlapping):
        expected = score_leads(load_leads(data, MAPPING, None), scorer, MAPPING, "m", "1")
        out = tmp_path / f"scores-{data.name}"
        done = score_distributed(data, out, scorer, MAPPING, "m", "1", scheduler=cluster.scheduler_address)
        assert done["rows"] == len(expected) and done["warning"] is None
        pd.testing.assert_frame_equal(by_id(pd.read_parquet(out)), by_id(expected))


def test_dask_scoring_checks_the_inputs_coverage_as_the_local_engine_does(
    cluster: LocalCluster, crm_parts: Path, fitted: FitResult, tmp_path: Path
) -> None:
    """A feature empty in every part is missing: refused above the local engine's share of importance, with
    nothing written, scored with a warning under --allow-missing-features; a flat file without the
    engagement columns is refused the same way."""
    scorer = fitted.artifact.scorer()
    importance = scorer.metadata["feature_importance"]
    column = max(MAPPING.feature_columns, key=lambda c: importance.get(c, 0.0))
    data = copy_parts(crm_parts, tmp_path / "data")
    for part in (data / "leads").glob("*.parquet"):
        pd.read_parquet(part).assign(**{column: None}).to_parquet(part, index=False)
    expected = score_leads(load_leads(data, MAPPING, None), scorer, MAPPING, "m", "1")
    address = cluster.scheduler_address
    with pytest.raises(DataError, match=rf"of its importance\): \['{column}'\].*--allow-missing-features"):
        score_distributed(data, tmp_path / "scores", scorer, MAPPING, "m", "1", scheduler=address)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    done = score_distributed(
        data, tmp_path / "scores", scorer, MAPPING, "m", "1", scheduler=address, allow_missing_features=True
    )
    assert f"'{column}'" in done["warning"] and "of its importance" in done["warning"]
    pd.testing.assert_frame_equal(by_id(pd.read_parquet(tmp_path / "scores")), by_id(expected))

    flat = tmp_path / "flat.parquet"  # lead rows without the engagement their activities would give
    pd.read_parquet(crm_parts / "leads").to_parquet(flat, index=False)
    with pytest.raises(DataError, match="features missing"):
        score_distributed(flat, tmp_path / "flat", scorer, MAPPING, "m", "1", scheduler=address)
    assert not (tmp_path / "flat").exists()


def test_a_job_that_fails_on_a_worker_leaves_nothing_half_written(
    cluster: LocalCluster, crm_parts: Path, fitted: FitResult, tmp_path: Path
) -> None:
    """A lead id in two part files: the partition holding both refuses it on its worker, after other
    partitions may have been written; the earlier output stays whole and no temporary folder is left."""
    data = tmp_path / "data"
    for table in ("leads", "activities", "outcomes"):
        (data / table).mkdir(parents=True)
        for part in (crm_parts / table).glob("*.parquet"):
            (data / table / part.name).write_bytes(part.read_bytes())
    second = pd.read_parquet(data / "leads" / "part-00001.parquet")
    first = pd.read_parquet(data / "leads" / "part-00000.parquet")
    pd.concat([second, first.iloc[[7]]]).to_parquet(data / "leads" / "part-00001.parquet", index=False)

    scorer, output = fitted.artifact.scorer(), tmp_path / "scores"
    score_distributed(crm_parts, output, scorer, MAPPING, "m", "1", scheduler=cluster.scheduler_address)
    before = {p.name: p.read_bytes() for p in output.iterdir()}
    with pytest.raises(DataError, match=f"duplicate id {first['lead_id'].iloc[7]!r}"):
        score_distributed(data, output, scorer, MAPPING, "m", "2", scheduler=cluster.scheduler_address, partitions=8)
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "scores"]
    with pytest.raises(DataError, match="duplicate id"):
        score_distributed(data, tmp_path / "new", scorer, MAPPING, "m", "2", scheduler=cluster.scheduler_address)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "scores"]


def test_input_the_dask_engine_cannot_read_gets_one_clear_error(crm_folder: Path, tmp_path: Path) -> None:
    flat = Mapping(form="flat", label={"column": "converted"}, numeric=["employees"])
    with pytest.raises(DataError, match="this mapping is flat"):
        read_dask_tables(crm_folder, flat)
    csv = tmp_path / "csv"
    csv.mkdir()
    for table in ("leads", "activities", "outcomes"):
        pd.read_parquet(crm_folder / f"{table}.parquet").head(50).to_csv(csv / f"{table}.csv", index=False)
    with pytest.raises(DataError, match="the Dask engine reads Parquet"):
        read_dask_tables(csv, MAPPING)
    (tmp_path / "scores.csv").write_text("")
    from leadscore.training.distributed_scoring import write_dataset

    with pytest.raises(DataError, match="name a folder"):
        write_dataset(tmp_path / "scores.csv", lambda folder: None)


def test_a_local_clusters_workers_print_to_stderr_not_into_the_commands_answer(tmp_path: Path) -> None:
    code = (
        "from leadscore.features.distributed import connect\n"
        "if __name__ == '__main__':\n"
        "    with connect(n_workers=1) as client:\n"
        "        client.run(lambda: print('worker noise', flush=True))\n"
        "    print('answer')\n"
    )
    (tmp_path / "job.py").write_text(code)
    done = subprocess.run([sys.executable, str(tmp_path / "job.py")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "answer\n" and "worker noise" in done.stderr
