"""The point-in-time training frame: one row per lead, features as of its scoring moment, label within a horizon.

CRM form: the scoring moment is ``created_at + observation_days``; engagement counts only activities at
or before it; the label is the target event within ``horizon_days`` of creation. Leads whose horizon
has not ended by ``as_of`` are left out (censored, not negative), and so are leads that had already
converted at their scoring moment (nothing left to predict). Flat form (built in ``features.flat``): one
table with lookups joined, a 0/1 label from a column or a conversions table (with a horizon and censoring
when the conversions have times), rows time-ordered when the mapping names a timestamp column.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.features import schema
from leadscore.features.dates import refuse_future
from leadscore.features.engagement import (
    aggregate_engagement,
    engagement_feature_names,
    monotone_engagement,
    positions,
    type_codes,
)
from leadscore.features.mapping import DataError, Mapping, find_table, parse_datetimes, read_table, require_columns
from leadscore.features.values import refuse_non_finite

LABEL = "label"
SCORING_AT = "scoring_at"
SIZE_BAND = "company_size_band"


@dataclass(frozen=True)
class CrmTables:
    """The three CRM tables (columns as in ``features.schema``)."""

    leads: pd.DataFrame
    activities: pd.DataFrame
    outcomes: pd.DataFrame


@dataclass(frozen=True)
class TrainingFrame:
    """Model-ready rows with what it took to build them."""

    frame: pd.DataFrame
    mapping: Mapping
    categorical: list[str]
    numeric: list[str]
    boolean: list[str]
    timed: bool
    target: str
    horizon_days: int | None = None
    observation_days: int | None = None
    as_of: pd.Timestamp | None = None
    excluded: dict[str, int] = field(default_factory=dict)
    source: str = ""
    monotone: dict[str, int] = field(default_factory=dict)
    digest: str = ""
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    split_rule: str | None = None

    @property
    def feature_columns(self) -> list[str]:
        return [*self.categorical, *self.numeric, *self.boolean]


def size_band(employees: pd.Series | np.ndarray) -> np.ndarray:
    """Company size band by employees (SMB < 100 <= mid-market < 1000 <= enterprise); missing -> None."""
    values = np.asarray(employees, dtype=np.float64)
    bands = np.asarray(schema.SIZE_BANDS, dtype=object)[np.searchsorted(schema.SIZE_BAND_EDGES, values, side="right")]
    bands[np.isnan(values)] = None
    return bands


def table_path(folder: Path, stem: str) -> Path:
    """Where a CRM table is: ``stem.parquet`` / ``stem.csv`` (or ``stem`` as given), or a folder ``stem/`` of
    Parquet part files (what ``leadscore generate`` writes for large runs); both at once is ambiguous."""
    parts = folder / stem
    if parts.is_dir():
        files = [p for p in (folder / f"{stem}.parquet", folder / f"{stem}.csv") if p.is_file()]
        if files:
            raise DataError(f"{folder}: both a folder {stem}/ and {files[0].name}; keep one form of the {stem} table")
        if not any(parts.glob("*.parquet")):
            raise DataError(f"{parts}: a table folder must hold .parquet part files")
        return parts
    return find_table(folder, stem)


def read_any_table(path: Path) -> pd.DataFrame:
    """:func:`features.mapping.read_table`, or every part of a folder of Parquet files, in file-name order."""
    if not Path(path).is_dir():
        return read_table(path)
    try:
        frame = pd.concat([pd.read_parquet(part) for part in sorted(Path(path).glob("*.parquet"))], ignore_index=True)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read: {exc}") from None
    if frame.empty:
        raise DataError(f"{path}: table has no rows")
    return frame


def read_crm_tables(folder: Path, mapping: Mapping) -> CrmTables:
    """Read the three tables of a CRM-form data folder and check the columns the mapping needs."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: a CRM-form data path must be a folder with leads, activities and outcomes files")
    paths = {name: table_path(folder, getattr(mapping.tables, name)) for name in ("leads", "activities", "outcomes")}
    with ThreadPoolExecutor(max_workers=1) as pool:  # the event tables are read while the leads are checked
        events = pool.submit(_read_crm_events, paths, mapping)
        leads = _read_crm_leads(paths["leads"], mapping)
        activities, outcomes = events.result()
    return CrmTables(leads=leads, activities=activities, outcomes=outcomes)


def _read_crm_leads(path: Path, mapping: Mapping) -> pd.DataFrame:
    leads = read_any_table(path)
    require_columns(leads, [mapping.id, mapping.created_at, *mapping.feature_columns, *mapping.manual_columns], path)
    leads[mapping.created_at] = parse_datetimes(
        leads, mapping.created_at, path, required=True, format=mapping.date_formats.get(mapping.created_at)
    )
    refuse_future(leads[mapping.created_at], mapping.created_at, path)
    refuse_non_finite(leads, mapping.numeric, path, mapping.missing_values)
    if leads[mapping.id].duplicated().any():
        dup = leads.loc[leads[mapping.id].duplicated(), mapping.id].iloc[0]
        raise DataError(f"{path}: column {mapping.id!r} has duplicate id {dup!r}")
    return leads


def _read_crm_events(paths: dict[str, Path], mapping: Mapping) -> tuple[pd.DataFrame, pd.DataFrame]:
    activities = _read_events(paths["activities"], mapping, {"occurred_at": True}, ["type"])
    outcomes = _read_events(
        paths["outcomes"], mapping, {"opportunity_created_at": False, "closed_at": False}, ["stage"]
    )
    return activities, outcomes


def _read_events(path: Path, mapping: Mapping, dates: dict[str, bool], others: list[str]) -> pd.DataFrame:
    """An activities or outcomes table; one with no rows is valid (no events yet)."""
    try:
        table = read_any_table(path)
    except DataError as exc:
        if "no rows" not in str(exc):
            raise
        table = pd.read_parquet(path) if path.is_dir() or path.suffix == ".parquet" else pd.read_csv(path)
    require_columns(table, [mapping.id, *dates, *others], path)
    for column, required in dates.items():
        table[column] = parse_datetimes(table, column, path, required=required, format=mapping.date_formats.get(column))
        refuse_future(table[column], column, path)
    return table


EXCLUSIONS = ("created_after_as_of", "horizon_not_elapsed", "converted_before_scoring")
EXCLUDED = "excluded_code"  # in point_in_time_rows: 0 kept, else 1 + the index of the reason in EXCLUSIONS


def check_crm_options(target: str, horizon_days: int, observation_days: int) -> None:
    """Refuse a target or windows the point-in-time frame cannot be built with."""
    if target not in schema.TARGETS:
        raise DataError(f"target {target!r} is not one of {list(schema.TARGETS)}")
    if not 0 <= observation_days < horizon_days:
        raise DataError(f"observation_days ({observation_days}) must be >= 0 and below horizon_days ({horizon_days})")


def creation_order(leads: pd.DataFrame, created_at: str, id_column: str) -> np.ndarray:
    """Row positions of ``leads`` in the order of ``sort_values([created_at, id_column], kind="stable")``.

    The rows are ordered by creation time alone, then each run of equal creation times by id: only the
    tied rows' ids are compared (by the same pandas sort), which gives the same order.
    """
    created = leads[created_at].to_numpy("datetime64[ns]")
    if np.isnat(created).any():
        return np.asarray(leads.reset_index(drop=True).sort_values([created_at, id_column], kind="stable").index)
    order = np.argsort(created, kind="stable")
    moments = created[order]
    tied = np.zeros(len(order), dtype=bool)
    tied[1:] = moments[1:] == moments[:-1]
    tied[:-1] |= tied[1:]
    if tied.any():
        rows = order[tied]
        runs = pd.DataFrame({"created": moments[tied], "id": leads[id_column].iloc[rows].to_numpy()})
        order[tied] = rows[np.asarray(runs.sort_values(["created", "id"], kind="stable").index)]
    return order


def point_in_time_rows(
    tables: CrmTables,
    mapping: Mapping,
    *,
    target: str,
    horizon_days: int,
    observation_days: int,
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """Every lead of ``tables`` with its features, scoring moment, label and :data:`EXCLUDED` code, sorted by
    creation time then id.

    A lead's row depends only on its own lead, activity and outcome rows and on ``as_of``: any subset of
    leads with all of their activities and outcomes gives those leads' rows exactly (what the Dask engine
    relies on to build each partition of leads alone).
    """
    leads = tables.leads.take(creation_order(tables.leads, mapping.created_at, mapping.id)).reset_index(drop=True)
    created = leads[mapping.created_at].to_numpy("datetime64[ns]")
    scoring_at = created + np.timedelta64(observation_days, "D")
    horizon_end = created + np.timedelta64(horizon_days, "D")

    ids = leads[mapping.id]
    with ThreadPoolExecutor(max_workers=1) as pool:  # engagement is aggregated while the outcomes are matched
        engagement = pool.submit(_engagement, tables, mapping, ids, scoring_at)
        event_at, opportunity_at = _event_times(tables.outcomes, mapping, ids, target, as_of)
        frame = leads.assign(**engagement.result())

    as_of_ns = np.datetime64(as_of, "ns")
    created_late = created > as_of_ns
    censored = ~created_late & (horizon_end > as_of_ns)
    converted_early = ~created_late & ~censored & (opportunity_at <= scoring_at)

    frame[SCORING_AT] = scoring_at
    frame[LABEL] = (event_at <= horizon_end).astype(np.int8)
    if "employees" in frame.columns:
        frame[SIZE_BAND] = size_band(frame["employees"])
    frame[EXCLUDED] = np.select([created_late, censored, converted_early], [1, 2, 3], 0).astype(np.int8)
    return frame


def _event_times(
    outcomes: pd.DataFrame, mapping: Mapping, ids: pd.Series, target: str, as_of: pd.Timestamp
) -> tuple[np.ndarray, np.ndarray]:
    """Each lead's target event time (NaT: none, or not yet visible at ``as_of``) and opportunity time."""
    outcomes = outcomes.drop_duplicates(mapping.id, keep="first").set_index(mapping.id)
    opportunity_at = outcomes["opportunity_created_at"].reindex(ids).to_numpy("datetime64[ns]")
    if target == "opportunity":
        event_at = opportunity_at
    else:
        won = outcomes["stage"].reindex(ids).eq("closed_won").to_numpy()
        event_at = np.where(won, outcomes["closed_at"].reindex(ids).to_numpy("datetime64[ns]"), np.datetime64("NaT"))
    as_of_ns = np.datetime64(as_of, "ns")
    return np.where(event_at <= as_of_ns, event_at, np.datetime64("NaT")), opportunity_at  # not yet visible at as_of


def build_crm_frame(
    tables: CrmTables,
    mapping: Mapping,
    *,
    target: str = "opportunity",
    horizon_days: int = 90,
    observation_days: int = 7,
    as_of: pd.Timestamp | str | None = None,
    source: str = "",
) -> TrainingFrame:
    """The point-in-time frame of CRM tables (see the module docstring)."""
    check_crm_options(target, horizon_days, observation_days)
    as_of = pd.Timestamp(as_of) if as_of is not None else _latest_timestamp(tables, mapping)
    rows = point_in_time_rows(
        tables, mapping, target=target, horizon_days=horizon_days, observation_days=observation_days, as_of=as_of
    )
    code = rows.pop(EXCLUDED).to_numpy()
    return crm_training_frame(
        rows.loc[code == 0].reset_index(drop=True),
        mapping,
        target=target,
        horizon_days=horizon_days,
        observation_days=observation_days,
        as_of=as_of,
        excluded={reason: int((code == i + 1).sum()) for i, reason in enumerate(EXCLUSIONS)},
        source=source,
    )


def crm_training_frame(frame: Any, mapping: Mapping, **fields: Any) -> TrainingFrame:
    """A :class:`TrainingFrame` of point-in-time rows (a pandas frame, or a Dask one on that engine)."""
    return TrainingFrame(
        frame=frame,
        mapping=mapping,
        categorical=list(mapping.categorical),
        numeric=[*mapping.numeric, *engagement_feature_names()],
        boolean=list(mapping.boolean),
        timed=True,
        monotone={**monotone_engagement(), **mapping.monotone},
        **fields,
    )


def scoring_frame(tables: CrmTables, mapping: Mapping, as_of: pd.Timestamp | str | None = None) -> pd.DataFrame:
    """Leads to score now: every lead created by ``as_of`` (default: the data's latest timestamp), with engagement
    aggregated as of ``as_of`` by the same code as training."""
    as_of = pd.Timestamp(as_of) if as_of is not None else _latest_timestamp(tables, mapping)
    leads = tables.leads.loc[tables.leads[mapping.created_at] <= as_of].reset_index(drop=True)
    moments = np.full(len(leads), np.datetime64(as_of, "ns"))
    return leads.assign(**_engagement(tables, mapping, leads[mapping.id], moments), **{SCORING_AT: moments})


def _engagement(tables: CrmTables, mapping: Mapping, ids: pd.Series, scoring_at: np.ndarray) -> dict[str, np.ndarray]:
    activities = tables.activities
    with ThreadPoolExecutor(max_workers=1) as pool:  # two hash lookups over every activity, side by side
        types = pool.submit(type_codes, activities["type"])
        leads = positions(activities[mapping.id], ids)
        return aggregate_engagement(
            leads, types.result(), activities["occurred_at"].to_numpy("datetime64[ns]"), scoring_at
        )


def _latest_timestamp(tables: CrmTables, mapping: Mapping) -> pd.Timestamp:
    return latest_of(
        [
            tables.leads[mapping.created_at].max(),
            tables.activities["occurred_at"].max() if len(tables.activities) else pd.NaT,
            tables.outcomes["opportunity_created_at"].max() if len(tables.outcomes) else pd.NaT,
            tables.outcomes["closed_at"].max() if len(tables.outcomes) else pd.NaT,
        ]
    )


def latest_of(candidates: list[Any]) -> pd.Timestamp:
    """The latest of the tables' newest timestamps (the default ``as_of``); missing ones are skipped."""
    return max(pd.Timestamp(c) for c in candidates if pd.notna(c))


def build_flat_frame(
    path: Path, mapping: Mapping, *, horizon_days: int = 90, as_of: str | pd.Timestamp | None = None
) -> TrainingFrame:
    """A flat table with a label column or a conversions table; see :mod:`features.flat`."""
    from leadscore.features.flat import build_flat

    return build_flat(path, mapping, horizon_days=horizon_days, as_of=as_of)


def data_digest(path: Path) -> str:
    """sha256 over the bytes of a data file, or of every file in a data folder (sorted by name)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def load_training_frame(
    data: Path,
    mapping: Mapping,
    *,
    target: str = "opportunity",
    horizon_days: int = 90,
    observation_days: int = 7,
    as_of: str | None = None,
) -> TrainingFrame:
    """Read data by its mapping and build the training frame (CRM: point in time; flat: as is)."""
    if mapping.form == "flat":
        frame = build_flat_frame(data, mapping, horizon_days=horizon_days, as_of=as_of)
        return replace(frame, digest=frame.digest or data_digest(data))  # a flat frame digests its related files too
    with ThreadPoolExecutor(max_workers=1) as pool:  # the files are digested while the frame is built
        digest = pool.submit(data_digest, data)
        frame = build_crm_frame(
            read_crm_tables(data, mapping),
            mapping,
            target=target,
            horizon_days=horizon_days,
            observation_days=observation_days,
            as_of=as_of,
            source=str(data),
        )
        return replace(frame, digest=digest.result())
