"""The point-in-time frame on Dask, for histories larger than one machine's memory.

The CRM tables are read as Dask DataFrames and every row is moved to its lead's partition (a hash of
the lead id's text picks one of ``partitions`` buckets; leads, activities and outcomes are shuffled by
the same bucket, so partition ``i`` of each table holds the same leads). Each partition is then built by
the local engine's own functions (:func:`features.build.point_in_time_rows` for training,
:func:`features.build.scoring_frame` for scoring): a lead's row depends only on its own rows and on
``as_of``, so the rows are exactly the local engine's. No step holds the whole history in one process;
``as_of`` (when not given, the newest timestamp of the tables) is the one global reduction.

Scoring needs no outcomes (they only count towards the default ``as_of``), and needs no shuffle when the
part files already hold whole leads, as ``leadscore generate`` writes them: :func:`aligned_parts` shows it
from the Parquet footers' lead-id bounds alone (each leads part's bounds apart from every other's, each
activities part's within its leads part's), and each pair of part files is then built as it is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from dask.delayed import Delayed
from distributed import Client, LocalCluster

from leadscore.features.build import (
    EXCLUDED,
    EXCLUSIONS,
    CrmTables,
    TrainingFrame,
    check_crm_options,
    crm_training_frame,
    latest_of,
    point_in_time_rows,
    scoring_frame,
    table_path,
)
from leadscore.features.mapping import DataError, Mapping, require_columns
from leadscore.features.parts import aligned_parts, newest_in_footers, parsed, part_scoring_rows

BUCKET = "_bucket"  # the partition a row belongs to
ORDER = "_order"  # a row's place in its table's files (outcomes: the first row of a lead counts, as locally)


@contextlib.contextmanager
def connect(address: str | None = None, **cluster: Any) -> Iterator[Client]:
    """A Dask client of the scheduler at ``address``, or of a local cluster of worker processes (one thread
    each, no dashboard) that lives for the block; ``cluster`` passes ``LocalCluster`` options (``n_workers``,
    ``memory_limit``, ...)."""
    if address:
        with Client(address) as client:
            yield client
        return
    options = {
        "processes": True,
        "threads_per_worker": 1,
        "dashboard_address": None,
        "silence_logs": logging.ERROR,
        **cluster,
    }
    with LocalCluster(**options) as local, Client(local) as client:
        client.run(_stdout_to_stderr)
        yield client


def _stdout_to_stderr() -> None:
    """Point a local worker's standard output at its standard error: the workers share the command's terminal,
    and what libraries print there (e.g. LightGBM's network set-up) must not mix into the command's answer."""
    sys.stdout.flush()
    os.dup2(2, 1)


@dataclass(frozen=True)
class DaskTables:
    """The three CRM tables as Dask DataFrames, timestamps parsed, columns checked (not yet partitioned by lead)."""

    leads: dd.DataFrame
    activities: dd.DataFrame
    outcomes: dd.DataFrame


def read_dask_tables(folder: Path, mapping: Mapping) -> DaskTables:
    """Read a CRM-form folder (Parquet files or folders of Parquet parts) lazily, checking the mapping's columns."""
    folder = Path(folder)
    if mapping.form != "crm":
        raise DataError("the Dask engine builds CRM-form data (leads, activities, outcomes); this mapping is flat")
    if not folder.is_dir():
        raise DataError(f"{folder}: a CRM-form data path must be a folder with leads, activities and outcomes files")
    paths = {name: table_path(folder, getattr(mapping.tables, name)) for name in ("leads", "activities", "outcomes")}
    leads = _read(paths["leads"], [mapping.id, mapping.created_at, *mapping.feature_columns, *mapping.manual_columns])
    leads = _parse_dates(leads, {mapping.created_at: True}, paths["leads"], mapping)
    activities = _read(paths["activities"], [mapping.id, "occurred_at", "type"])
    activities = _parse_dates(activities, {"occurred_at": True}, paths["activities"], mapping)
    outcomes = _read(paths["outcomes"], [mapping.id, "opportunity_created_at", "closed_at", "stage"])
    outcomes = _parse_dates(outcomes, {"opportunity_created_at": False, "closed_at": False}, paths["outcomes"], mapping)
    return DaskTables(leads, activities, _numbered(outcomes))


def read_parquet(path: Path) -> dd.DataFrame:
    """A Parquet file or a folder of Parquet parts as a Dask DataFrame; anything else is refused clearly."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not (path.is_dir() or path.suffix == ".parquet"):
        raise DataError(f"{path}: the Dask engine reads Parquet (a .parquet file or a folder of parts)")
    try:
        with dask.config.set({"dataframe.convert-string": False}):  # text columns as pandas reads them locally
            return dd.read_parquet(str(path))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read: {exc}") from None


def _read(path: Path, columns: list[str]) -> dd.DataFrame:
    frame = read_parquet(path)
    require_columns(frame._meta, list(dict.fromkeys(columns)), path)
    return frame


def _parse_dates(frame: dd.DataFrame, columns: dict[str, bool], path: Path, mapping: Mapping) -> dd.DataFrame:
    """Timestamps parsed and checked per partition as the local reader does (:func:`features.parts.parsed`)."""

    def parse(part: pd.DataFrame) -> pd.DataFrame:
        return part.assign(**{c: parsed(part, c, path, mapping, required=r) for c, r in columns.items()})

    meta = frame._meta.assign(**{c: pd.Series(dtype="datetime64[ns]") for c in columns})
    return frame.map_partitions(parse, meta=meta)


def _numbered(frame: dd.DataFrame) -> dd.DataFrame:
    """``frame`` with :data:`ORDER`: its partition number and row position, increasing in file order."""

    def number(part: pd.DataFrame, partition_info: dict[str, Any] | None = None) -> pd.DataFrame:
        first = (partition_info or {}).get("number", 0) << 32
        return part.assign(**{ORDER: np.arange(first, first + len(part), dtype=np.int64)})

    return frame.map_partitions(number, meta=frame._meta.assign(**{ORDER: pd.Series(dtype=np.int64)}))


def bucket_of(ids: pd.Series, partitions: int) -> np.ndarray:
    """The bucket of each lead id: a fixed hash of its text modulo ``partitions`` (the same in every process)."""
    text = ids.astype(str)
    return (pd.util.hash_pandas_object(text, index=False).to_numpy() % np.uint64(partitions)).astype(np.int64)


def _by_lead(frame: dd.DataFrame, id_column: str, partitions: int) -> dd.DataFrame:
    """``frame`` shuffled so that partition ``i`` holds exactly the rows of bucket ``i`` (indexed by bucket)."""

    def tag(part: pd.DataFrame) -> pd.DataFrame:
        return part.assign(**{BUCKET: bucket_of(part[id_column], partitions)})

    tagged = frame.map_partitions(tag, meta=frame._meta.assign(**{BUCKET: pd.Series(dtype=np.int64)}))
    return tagged.set_index(BUCKET, divisions=list(range(partitions + 1)))


def _bucket_tables(
    leads: pd.DataFrame, activities: pd.DataFrame, outcomes: pd.DataFrame, mapping: Mapping
) -> CrmTables:
    """One partition's tables as the local engine reads them; a lead id twice is refused as locally."""
    leads = leads.reset_index(drop=True)
    if leads[mapping.id].duplicated().any():
        dup = leads.loc[leads[mapping.id].duplicated(), mapping.id].iloc[0]
        raise DataError(f"leads: column {mapping.id!r} has duplicate id {dup!r}")
    outcomes = outcomes.sort_values(ORDER, kind="stable").drop(columns=ORDER).reset_index(drop=True)
    return CrmTables(leads=leads, activities=activities.reset_index(drop=True), outcomes=outcomes)


def _training_rows(
    leads: pd.DataFrame, activities: pd.DataFrame, outcomes: pd.DataFrame, mapping: Mapping, **options: Any
) -> pd.DataFrame:
    return point_in_time_rows(_bucket_tables(leads, activities, outcomes, mapping), mapping, **options)


def _scoring_rows(leads: pd.DataFrame, activities: pd.DataFrame, mapping: Mapping, as_of: pd.Timestamp) -> pd.DataFrame:
    outcomes = pd.DataFrame({ORDER: pd.Series(dtype=np.int64)})  # scoring reads no outcomes once as_of is set
    return scoring_frame(_bucket_tables(leads, activities, outcomes, mapping), mapping, as_of)


def latest_timestamp(tables: DaskTables, mapping: Mapping) -> pd.Timestamp:
    """The newest timestamp of the three tables (the default ``as_of``), as the local engine takes it."""
    return latest_of(
        list(
            dask.compute(
                tables.leads[mapping.created_at].max(),
                tables.activities["occurred_at"].max(),
                tables.outcomes["opportunity_created_at"].max(),
                tables.outcomes["closed_at"].max(),
            )
        )
    )


def per_lead(
    tables: DaskTables,
    mapping: Mapping,
    build: Callable[..., pd.DataFrame],
    partitions: int | None,
    names: tuple[str, ...] = ("leads", "activities", "outcomes"),
    **kwargs: Any,
) -> dd.DataFrame:
    """``build(*tables, mapping, **kwargs)`` on each partition of leads with all their rows of the tables
    ``names`` (in that order)."""
    n = partitions or max(tables.leads.npartitions, 2)
    if n < 1:
        raise DataError(f"partitions must be >= 1, got {n}")
    parts = [_by_lead(getattr(tables, name), mapping.id, n) for name in names]
    empty = [p._meta.reset_index(drop=True) for p in parts]
    meta = build(*empty, mapping, **kwargs)
    return dd.map_partitions(build, *parts, mapping, **kwargs, meta=meta, clear_divisions=True)


def build_distributed_frame(
    tables: DaskTables,
    mapping: Mapping,
    *,
    target: str = "opportunity",
    horizon_days: int = 90,
    observation_days: int = 7,
    as_of: pd.Timestamp | str | None = None,
    partitions: int | None = None,
    source: str = "",
) -> TrainingFrame:
    """The training frame of :func:`features.build.build_crm_frame`, its ``frame`` a Dask DataFrame kept in the
    workers' memory (built once; later passes read it there, and workers spill to disk under pressure)."""
    check_crm_options(target, horizon_days, observation_days)
    as_of = pd.Timestamp(as_of) if as_of is not None else latest_timestamp(tables, mapping)
    rows = per_lead(
        tables,
        mapping,
        _training_rows,
        partitions,
        target=target,
        horizon_days=horizon_days,
        observation_days=observation_days,
        as_of=as_of,
    ).persist()
    codes = rows[EXCLUDED].value_counts().compute()
    frame = rows[rows[EXCLUDED] == 0].drop(columns=EXCLUDED)
    return crm_training_frame(
        frame,
        mapping,
        target=target,
        horizon_days=horizon_days,
        observation_days=observation_days,
        as_of=as_of,
        excluded={reason: int(codes.get(i + 1, 0)) for i, reason in enumerate(EXCLUSIONS)},
        source=source,
    )


def distributed_scoring_frame(
    tables: DaskTables, mapping: Mapping, as_of: pd.Timestamp | str | None = None, partitions: int | None = None
) -> dd.DataFrame:
    """Leads to score as of ``as_of``, as :func:`features.build.scoring_frame` builds them, partitioned by lead
    (leads and activities shuffled by lead; outcomes only count towards the default ``as_of``)."""
    as_of = pd.Timestamp(as_of) if as_of is not None else latest_timestamp(tables, mapping)
    return per_lead(tables, mapping, _scoring_rows, partitions, ("leads", "activities"), as_of=as_of)


def scoring_parts(
    folder: Path, mapping: Mapping, as_of: pd.Timestamp | str | None = None, partitions: int | None = None
) -> list[Delayed]:
    """The leads of a CRM folder to score as of ``as_of``, one pandas frame per part, each holding whole leads:
    a pair of part files each when :func:`aligned_parts` shows they hold whole leads (and ``partitions`` is
    not given), else the partitions of :func:`distributed_scoring_frame`."""
    folder = Path(folder).absolute()  # the workers' working folder may not be the client's
    tables = read_dask_tables(folder, mapping)
    pairs = aligned_parts(folder, mapping) if partitions is None else None
    if pairs is None:
        return list(distributed_scoring_frame(tables, mapping, as_of, partitions).to_delayed())
    if as_of is None:
        as_of = newest_in_footers(folder, mapping)
    as_of = pd.Timestamp(as_of) if as_of is not None else latest_timestamp(tables, mapping)
    build = dask.delayed(part_scoring_rows, pure=True)
    return [build(leads, activities, mapping, as_of) for leads, activities in pairs]
